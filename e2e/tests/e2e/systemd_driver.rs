//! End-to-end, the systemd cgroup driver (`[cgroup] driver = "systemd"`) against a real systemd
//! (PID 1 of `e2e/cg2vm --systemd`; `make test-systemd` runs this suite there). A pod with
//! kubelet's kind of cgroup parent (`kubepods-burstable-pod<uid>.slice`): its container must
//! become the scope `berth-<id>.scope` in that slice, with its resources as unit properties and
//! the exact values in cgroupfs, follow UpdateContainerResources, and be gone with the
//! container; an OOM kill in a scope is reported as OOMKilled. Where systemd does not run the machine the suite's tests say so and pass, unless
//! `BERTH_E2E_SYSTEMD=1` says systemd must be there.

use std::path::Path;
use std::process::Command;

use berth_e2e::cri::*;
use berth_e2e::images::RuntimeEnv;
use berth_e2e::node::Node;
use k8s_cri::v1::*;

pub type Env = RuntimeEnv;

type TestFn = fn(&Env);

pub const TESTS: &[(&str, TestFn)] =
    &[("container_scope_in_pod_slice", container_scope_in_pod_slice)];

pub fn setup() -> Env {
    RuntimeEnv::start()
}

/// Whether systemd runs this machine; panics if it must and does not.
fn systemd_here() -> bool {
    let booted = Path::new("/run/systemd/system").is_dir();
    if !booted {
        assert!(
            std::env::var("BERTH_E2E_SYSTEMD").as_deref() != Ok("1"),
            "BERTH_E2E_SYSTEMD=1 but systemd does not run this machine"
        );
        eprintln!(
            "skipped: needs systemd as PID 1 (make test-systemd runs it in e2e/cg2vm --systemd)"
        );
    }
    booted
}

/// `systemctl show UNIT -p PROPS`: the properties asked for, in PROPS's order (systemctl prints
/// them in its own).
fn show(unit: &str, props: &str) -> Vec<String> {
    let out = Command::new("systemctl")
        .args(["show", unit, "-p", props])
        .output()
        .expect("running systemctl show");
    let text = String::from_utf8_lossy(&out.stdout);
    let values: std::collections::HashMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    props
        .split(',')
        .map(|p| values.get(p).copied().unwrap_or("<missing>").to_string())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn container_scope_in_pod_slice(env: &Env) {
    if !systemd_here() {
        return;
    }
    env.rt.block_on(async {
        let node = Node::start_with_config("[cgroup]\ndriver = \"systemd\"\n").await;
        let mut rt = node.runtime().await;
        let driver = rt
            .runtime_config(RuntimeConfigRequest {})
            .await
            .expect("RuntimeConfig")
            .into_inner()
            .linux
            .map(|l| l.cgroup_driver);
        assert_eq!(driver, Some(CgroupDriver::Systemd as i32));

        pull_ok(&node, &env.set.busybox.reference()).await;
        // kubelet's pod slice for a burstable pod (its uid's dashes become underscores).
        let slice = "kubepods-burstable-pod1b2c3d4e_0000_4000_8000_systemd0001.slice";
        let slice_dir = Path::new(
            "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_0000_4000_8000_systemd0001.slice",
        );
        let mut cfg = pod_config("sdriver", NamespaceMode::Pod);
        cfg.log_directory = node.dir.path().join("logs").display().to_string();
        if let Some(l) = cfg.linux.as_mut() {
            l.cgroup_parent = slice.into();
        }
        let pod = run_pod(&node, cfg).await.expect("RunPodSandbox");

        let mut c = container_config("main", &env.set.busybox.reference(), &["sleep", "3600"]);
        c.linux = Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                // 12.345 ms a 100 ms period: systemd rounds its property up to 10 ms steps;
                // cgroupfs must keep the exact quota.
                cpu_quota: 12_345,
                cpu_period: 100_000,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = create_container(&node, &pod, c)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e:?}\n{}", node.log_text()));
        start_container(&node, &id).await;
        let unit = format!("berth-{id}.scope");
        let scope_dir = slice_dir.join(&unit);

        // The unit: active, in the pod's slice, delegated, with the resources.
        let props = show(
            &unit,
            "ActiveState,Slice,ControlGroup,Delegate,MemoryMax,CPUWeight,CPUQuotaPerSecUSec",
        );
        assert_eq!(
            props,
            [
                "active".to_string(),
                slice.to_string(),
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/{slice}/{unit}"
                ),
                "yes".into(),
                "67108864".into(),
                "20".into(),
                "130ms".into(),
            ],
            "systemctl show {unit}\n{}",
            node.log_text()
        );
        // The container's init is in the scope, and cgroupfs has the spec's exact values.
        let info = rt
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: true,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .info;
        let pid = info
            .get("info")
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .and_then(|v| v.get("pid")?.as_u64())
            .unwrap_or_else(|| panic!("no pid in the verbose status: {info:?}"));
        let cg = read(&Path::new("/proc").join(pid.to_string()).join("cgroup"));
        assert!(
            cg.ends_with(&format!("{slice}/{unit}")),
            "init's cgroup: {cg}"
        );
        assert_eq!(read(&scope_dir.join("memory.max")), "67108864");
        assert_eq!(read(&scope_dir.join("cpu.max")), "12345 100000");
        assert_eq!(read(&scope_dir.join("cpu.weight")), "20");

        // Pod readings come from the slice.
        let stats = rt
            .pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .expect("PodSandboxStats")
            .into_inner()
            .stats
            .and_then(|s| s.linux);
        let mem = stats
            .as_ref()
            .and_then(|l| l.memory.as_ref())
            .and_then(|m| m.working_set_bytes.as_ref())
            .map(|v| v.value);
        assert!(
            mem.is_some_and(|m| m > 0),
            "pod memory from the slice: {stats:?}"
        );

        // An update reaches the unit and cgroupfs.
        rt.update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                cpu_quota: 50_000,
                cpu_period: 100_000,
                cpu_shares: 1024,
                ..Default::default()
            }),
            windows: None,
            annotations: Default::default(),
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateContainerResources: {e:?}\n{}", node.log_text()));
        assert_eq!(
            show(&unit, "MemoryMax,CPUWeight,CPUQuotaPerSecUSec"),
            ["134217728", "39", "500ms"]
        );
        assert_eq!(read(&scope_dir.join("memory.max")), "134217728");
        assert_eq!(read(&scope_dir.join("cpu.max")), "50000 100000");

        // An OOM kill is reported although systemd removes the scope's cgroup as soon as it is
        // empty (before the shim has reaped the init and could read the counter).
        let (st, _) = run_script(
            &node,
            &pod,
            "oom",
            &env.set.busybox.reference(),
            "tail /dev/zero",
            |c| {
                c.linux = Some(LinuxContainerConfig {
                    resources: Some(LinuxContainerResources {
                        memory_limit_in_bytes: 20 << 20,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            },
        )
        .await;
        assert_eq!(
            (st.exit_code, st.reason.as_str()),
            (137, "OOMKilled"),
            "{}",
            node.log_text()
        );

        // A bad slice name is the request's to fix, and leaves nothing.
        let mut bad = pod_config("sdriver-bad", NamespaceMode::Pod);
        if let Some(l) = bad.linux.as_mut() {
            l.cgroup_parent = "kubepods--x.slice".into();
        }
        let bad_pod = run_pod(&node, bad).await.expect("RunPodSandbox (bad slice)");
        let err = create_container(
            &node,
            &bad_pod,
            container_config("main", &env.set.busybox.reference(), &["true"]),
        )
        .await
        .expect_err("a container in slice kubepods--x.slice");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

        // Removed: the unit and its cgroup are gone.
        rt.stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .expect("StopContainer");
        rt.remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer");
        let state = show(&unit, "ActiveState,LoadState");
        assert!(
            state.first().map(String::as_str) == Some("inactive"),
            "{unit} after removal: {state:?}"
        );
        assert!(!scope_dir.exists(), "{} is left", scope_dir.display());
        for p in [&pod, &bad_pod] {
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: p.clone(),
            })
            .await
            .expect("StopPodSandbox");
            rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: p.clone(),
            })
            .await
            .expect("RemovePodSandbox");
        }
        // kubelet owns pod slices; the test plays kubelet and stops the one it named.
        let _ = Command::new("systemctl")
            .args(["stop", "kubepods.slice"])
            .status();
    });
}
