//! End-to-end, running containers: ExecSync, resource limits (OOM, UpdateContainerResources)
//! and stats, through a real CRI client against a real berthd. This suite also runs on a pure
//! cgroup v2 kernel (`make test-cgroup2`, inside e2e/cg2vm), so it only uses what both
//! hierarchies offer and reads limits the way each one spells them.

use std::time::{Duration, Instant};

use berth_e2e::cri::*;
use berth_e2e::images::RuntimeEnv;
use berth_e2e::node::Node;
use k8s_cri::v1::*;
use tonic::Code;

/// What every test of the suite shares.
pub type Env = RuntimeEnv;

type TestFn = fn(&Env);

/// The suite's tests; the harness names them `resources::<name>`.
pub const TESTS: &[(&str, TestFn)] = &[
    ("exec_sync", exec_sync),
    ("oom_killed", oom_killed),
    ("update_resources", update_resources),
    ("stats", stats),
    ("container_events", container_events),
    ("mount_propagation", mount_propagation),
    ("user_namespaced_pod", user_namespaced_pod),
    ("supplemental_groups_policy", supplemental_groups_policy),
    ("recursive_read_only_binds", recursive_read_only_binds),
    ("target_pid_namespace", target_pid_namespace),
    ("device_rules", device_rules),
    ("mount_destination_race", mount_destination_race),
    ("shim_binary_not_writable", shim_binary_not_writable),
];

/// The suite's environment: a runtime, and a registry holding the runtime image set.
pub fn setup() -> Env {
    RuntimeEnv::start()
}

/// A node with busybox and user pulled and one pod (own PID namespace, host network).
async fn node_with_pod(env: &Env, name: &str) -> (Node, String) {
    let node = Node::start().await;
    pull_ok(&node, &env.set.busybox.reference()).await;
    pull_ok(&node, &env.set.user.reference()).await;
    let mut cfg = pod_config(name, NamespaceMode::Pod);
    cfg.log_directory = node.dir.path().join("logs").display().to_string();
    let pod = run_pod(&node, cfg).await.expect("RunPodSandbox");
    (node, pod)
}

/// Create and start a container running `sh -c script`.
async fn running(
    node: &Node,
    pod: &str,
    name: &str,
    image: &str,
    script: &str,
    tweak: impl FnOnce(&mut ContainerConfig),
) -> String {
    let mut cfg = container_config(name, image, &["sh", "-c", script]);
    tweak(&mut cfg);
    let id = create_container(node, pod, cfg)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer {name}: {e:?}\n{}", node.log_text()));
    start_container(node, &id).await;
    id
}

async fn exec(
    node: &Node,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<ExecSyncResponse, tonic::Status> {
    node.runtime()
        .await
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await
        .map(|r| r.into_inner())
}

/// `sh -c script` in the container; panics unless it exits 0; returns stdout.
async fn sh(node: &Node, id: &str, script: &str) -> String {
    let r = exec(node, id, &["sh", "-c", script], 30)
        .await
        .unwrap_or_else(|e| panic!("ExecSync {script:?}: {e:?}\n{}", node.log_text()));
    assert_eq!(
        r.exit_code,
        0,
        "{script}: stderr {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).into_owned()
}

async fn remove_pod(node: &Node, pod: &str) {
    let mut rt = node.runtime().await;
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("RemovePodSandbox");
    let left = berth_e2e::node::mounts_under(node.dir.path());
    assert!(left.is_empty(), "mounts left: {left:?}");
    assert!(dir_entries(&node.state.join("shims")).is_empty());
    for _ in 0..100 {
        if berth_e2e::node::shims_of(node.dir.path()).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(berth_e2e::node::shims_of(node.dir.path()).is_empty());
}

fn exec_sync(env: &Env) {
    env.rt.block_on(async {
        let (node, pod) = node_with_pod(env, "exec").await;
        let bb = env.set.busybox.reference();
        let id = running(&node, &pod, "main", &bb, "sleep 3600", |c| {
            c.linux = Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    seccomp: Some(SecurityProfile {
                        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            c.envs = vec![KeyValue {
                key: "GREETING".into(),
                value: "hi there".into(),
            }];
            c.working_dir = "/etc".into();
        })
        .await;

        // Output, both streams and the exit code.
        let r = exec(&node, &id, &["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
            .await
            .unwrap();
        assert_eq!(
            (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
            (&b"out\n"[..], &b"err\n"[..], 3)
        );
        // The container's environment and working directory.
        assert_eq!(sh(&node, &id, "echo $GREETING; pwd").await, "hi there\n/etc\n");
        // Every namespace and the cgroup of the container's own PID 1.
        let out = sh(
            &node,
            &id,
            "for n in mnt pid ipc uts net cgroup; do \
               [ \"$(readlink /proc/1/ns/$n)\" = \"$(readlink /proc/self/ns/$n)\" ] || echo $n differs; \
             done; \
             [ \"$(cat /proc/1/cgroup)\" = \"$(cat /proc/self/cgroup)\" ] || echo cgroup differs; \
             cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname",
        )
        .await;
        // A host-network pod keeps the node's UTS namespace (as containerd's do).
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        assert_eq!(out, format!("sleep 3600 \n{host}\n"), "namespaces/cgroup/hostname");
        // Privileges as the container's: default capabilities, seccomp filter.
        let out = sh(&node, &id, "grep -E '^(CapEff|Seccomp):' /proc/self/status | tr -d '\\t'").await;
        assert_eq!(out, "CapEff:00000000a80425fb\nSeccomp:2\n");
        // An argument execve cannot take: the request's to fix.
        let err = exec(&node, &id, &["echo", "nul\0byte"], 10)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        // Large output arrives whole.
        let r = exec(&node, &id, &["head", "-c", "3000000", "/dev/zero"], 30)
            .await
            .unwrap();
        assert_eq!((r.stdout.len(), r.exit_code), (3_000_000, 0));
        // Output beyond one 16 MiB gRPC message (kubelet's client limit) is truncated so the
        // reply fits: stdout and stderr together, never a transport error.
        let r = node
            .runtime()
            .await
            .max_decoding_message_size(16 << 20)
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: ["sh", "-c", "head -c 1000 /dev/zero >&2; head -c 20000000 /dev/zero"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                timeout: 60,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync of 20 MB: {e:?}"))
            .into_inner();
        assert_eq!(r.exit_code, 0);
        assert_eq!(r.stderr.len(), 1000);
        assert!(
            r.stdout.len() > 15 << 20 && r.stdout.len() + r.stderr.len() < 16 << 20,
            "{} bytes of stdout",
            r.stdout.len()
        );

        // The image's user, with its groups.
        let uid = running(&node, &pod, "user", &env.set.user.reference(), "sleep 3600", |_| {}).await;
        assert_eq!(sh(&node, &uid, "id -u; id -G; pwd").await, "1000\n1000 2000\n/home/app\n");
        // HOME from the user's passwd entry (runc's and containerd's), no TERM without a tty.
        assert_eq!(sh(&node, &uid, "echo $HOME; echo ${TERM:-none}").await, "/home/app\nnone\n");

        // Timeout: the call fails with DEADLINE_EXCEEDED and the command is gone.
        let t = Instant::now();
        let err = exec(&node, &id, &["sleep", "60"], 1).await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        let mut gone = false;
        for _ in 0..100 {
            let ps = sh(&node, &id, "ps -o args").await;
            if !ps.lines().any(|l| l.trim() == "sleep 60") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "the timed-out command still runs");
        // A command that forks, in a container whose PID 1 (`sleep`) never reaps: when the
        // call returns, the command and all it started are dead and reaped (no zombie either).
        let err = exec(
            &node,
            &id,
            &["sh", "-c", "sleep 4321 & sleep 4322 & sh -c 'sleep 4323 & wait' & wait"],
            1,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
        let left = proc_leftovers(&sh(&node, &id, PROC_STATS).await);
        assert!(left.is_empty(), "after the timeout: {left:?}");

        // Errors: unknown command, empty command, unknown container, stopped container.
        let err = exec(&node, &id, &["no-such-command"], 10).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("executable file not found"), "{err:?}");
        let err = exec(&node, &id, &[], 10).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        let err = exec(&node, "nonexistent", &["true"], 10).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        node.runtime()
            .await
            .stop_container(StopContainerRequest {
                container_id: uid.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
        let err = exec(&node, &uid, &["true"], 10).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

        // The berth CLI: exec passes the exit status through; stats lists the container.
        let cli = |args: &[&str]| {
            std::process::Command::new(berth_e2e::node::berth_cli_binary())
                .arg("--address")
                .arg(format!("unix://{}", node.socket.display()))
                .args(args)
                .output()
                .expect("running berth")
        };
        let out = cli(&["exec", &id[..12], "sh", "-c", "echo hi; exit 4"]);
        assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(4), &b"hi\n"[..]));
        let out = cli(&["stats", "--no-stream"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains(&id[..12]));

        // No exec leaves anything behind.
        assert!(dir_entries(&node.state.join("exec")).is_empty());
        remove_pod(&node, &pod).await;
    });
}

fn oom_killed(env: &Env) {
    env.rt.block_on(async {
        let (node, pod) = node_with_pod(env, "oom").await;
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
        assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"));
        remove_pod(&node, &pod).await;
    });
}

/// The memory limit and the CPU quota/period as the container sees them (v1 or v2).
const LIMITS_SCRIPT: &str = "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then \
      cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max; \
    else \
      cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
      echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); \
    fi";

fn limits(memory: i64, quota: i64, shares: i64) -> LinuxContainerResources {
    LinuxContainerResources {
        memory_limit_in_bytes: memory,
        cpu_quota: quota,
        cpu_period: 100_000,
        cpu_shares: shares,
        ..Default::default()
    }
}

async fn update(node: &Node, id: &str, r: LinuxContainerResources) -> Result<(), tonic::Status> {
    node.runtime()
        .await
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(r),
            windows: None,
            annotations: Default::default(),
        })
        .await
        .map(|_| ())
}

fn update_resources(env: &Env) {
    env.rt.block_on(async {
        let (node, pod) = node_with_pod(env, "update").await;
        let bb = env.set.busybox.reference();
        let id = running(&node, &pod, "main", &bb, "sleep 3600", |c| {
            c.linux = Some(LinuxContainerConfig {
                resources: Some(limits(64 << 20, 20_000, 512)),
                ..Default::default()
            });
        })
        .await;
        assert_eq!(
            sh(&node, &id, LIMITS_SCRIPT).await,
            "67108864\n20000 100000\n"
        );

        update(&node, &id, limits(128 << 20, 50_000, 1024))
            .await
            .unwrap_or_else(|e| panic!("UpdateContainerResources: {e:?}\n{}", node.log_text()));
        assert_eq!(
            sh(&node, &id, LIMITS_SCRIPT).await,
            "134217728\n50000 100000\n"
        );
        let st = container_status(&node, &id).await;
        let r = st
            .resources
            .and_then(|r| r.linux)
            .expect("status resources");
        assert_eq!((r.memory_limit_in_bytes, r.cpu_quota), (128 << 20, 50_000));

        // A lower limit is enforced too: 40 MiB of anonymous memory is too much for 24 MiB.
        update(&node, &id, limits(24 << 20, 50_000, 1024))
            .await
            .unwrap_or_else(|e| panic!("UpdateContainerResources: {e:?}"));
        let r = exec(
            &node,
            &id,
            &["sh", "-c", "head -c 41943040 /dev/zero | tail > /dev/null"],
            300,
        )
        .await
        .unwrap();
        assert_eq!(r.exit_code, 137, "OOM-killed under the new limit");

        // A value the kernel refuses (a CFS quota below its 1 ms minimum) is the request's to
        // fix, and the container keeps its limits.
        let err = update(&node, &id, limits(24 << 20, 1, 1024))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(
            sh(&node, &id, LIMITS_SCRIPT).await,
            "25165824\n50000 100000\n"
        );

        // A v1 memory limit below what the container uses: the kernel cannot apply it now
        // (EBUSY; v2 reclaims instead).
        if std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").is_file() {
            let err = update(&node, &id, limits(4096, 50_000, 1024))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        }

        // Errors: unknown container, missing resources, an exited container.
        let err = update(&node, "nonexistent", limits(64 << 20, 0, 0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        let err = node
            .runtime()
            .await
            .update_container_resources(UpdateContainerResourcesRequest {
                container_id: id.clone(),
                linux: None,
                windows: None,
                annotations: Default::default(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        node.runtime()
            .await
            .stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
        let err = update(&node, &id, limits(64 << 20, 0, 0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        remove_pod(&node, &pod).await;
    });
}

async fn container_stats(node: &Node, id: &str) -> ContainerStats {
    node.runtime()
        .await
        .container_stats(ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("ContainerStats {id}: {e:?}"))
        .into_inner()
        .stats
        .expect("stats")
}

async fn list_stats(node: &Node, filter: ContainerStatsFilter) -> Vec<ContainerStats> {
    node.runtime()
        .await
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .expect("ListContainerStats")
        .into_inner()
        .stats
}

fn stats(env: &Env) {
    env.rt.block_on(async {
        let (node, pod) = node_with_pod(env, "stats").await;
        let bb = env.set.busybox.reference();
        let id = running(&node, &pod, "busy", &bb, "sleep 3600", |c| {
            c.labels = [("role".to_string(), "busy".to_string())]
                .into_iter()
                .collect();
        })
        .await;
        let idle = running(&node, &pod, "idle", &bb, "sleep 3600", |_| {}).await;
        // CPU, memory and 5 MB in the writable layer, all inside the container.
        sh(
            &node,
            &id,
            "head -c 5000000 /dev/zero > /big; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done",
        )
        .await;

        let s = container_stats(&node, &id).await;
        let attrs = s.attributes.as_ref().unwrap();
        assert_eq!(attrs.id, id);
        assert_eq!(attrs.metadata.as_ref().unwrap().name, "busy");
        assert_eq!(attrs.labels.get("role").map(String::as_str), Some("busy"));
        let cpu = s.cpu.as_ref().unwrap();
        let cpu_ns = cpu.usage_core_nano_seconds.as_ref().unwrap().value;
        assert!(cpu_ns > 10_000_000, "cpu {cpu_ns} ns");
        let mem = s.memory.as_ref().unwrap();
        let ws = mem.working_set_bytes.as_ref().unwrap().value;
        assert!(ws > 0, "working set {ws}");
        assert!(mem.usage_bytes.as_ref().unwrap().value >= ws);
        let layer = s.writable_layer.as_ref().unwrap();
        let used = layer.used_bytes.as_ref().unwrap().value;
        assert!(
            (5_000_000..6_000_000).contains(&used),
            "writable layer {used}"
        );
        assert!(layer.inodes_used.as_ref().unwrap().value >= 2);
        assert!(!layer.fs_id.as_ref().unwrap().mountpoint.is_empty());

        // A second reading has a rate; CPU time only grows.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s2 = container_stats(&node, &id).await;
        let cpu2 = s2.cpu.unwrap();
        assert!(
            cpu2.usage_nano_cores.is_some(),
            "no usage_nano_cores on a second reading"
        );
        assert!(cpu2.usage_core_nano_seconds.unwrap().value >= cpu_ns);

        // Filters.
        let all = list_stats(
            &node,
            ContainerStatsFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            },
        )
        .await;
        let mut ids: Vec<String> = all
            .iter()
            .map(|s| s.attributes.as_ref().unwrap().id.clone())
            .collect();
        ids.sort();
        let mut want = vec![id.clone(), idle.clone()];
        want.sort();
        assert_eq!(ids, want);
        let one = list_stats(
            &node,
            ContainerStatsFilter {
                id: idle[..12].into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].attributes.as_ref().unwrap().id, idle);
        let labelled = list_stats(
            &node,
            ContainerStatsFilter {
                label_selector: [("role".to_string(), "busy".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(labelled.len(), 1);
        assert_eq!(labelled[0].attributes.as_ref().unwrap().id, id);
        let err = node
            .runtime()
            .await
            .container_stats(ContainerStatsRequest {
                container_id: "nonexistent".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        remove_pod(&node, &pod).await;
    });
}

fn container_events(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let mut events = node
            .runtime()
            .await
            .get_container_events(GetEventsRequest {})
            .await
            .expect("GetContainerEvents")
            .into_inner();
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(10), events.message())
                .await
                .expect("an event within 10s")
                .expect("event stream")
                .expect("stream open")
        };
        let kind = |e: &ContainerEventResponse| {
            ContainerEventType::try_from(e.container_event_type).unwrap()
        };

        let mut cfg = pod_config("events", NamespaceMode::Pod);
        cfg.log_directory = node.dir.path().join("logs").display().to_string();
        let pod = run_pod(&node, cfg).await.unwrap();
        for want in [
            ContainerEventType::ContainerCreatedEvent,
            ContainerEventType::ContainerStartedEvent,
        ] {
            let e = next().await;
            assert_eq!((e.container_id.as_str(), kind(&e)), (pod.as_str(), want));
            assert_eq!(e.pod_sandbox_status.as_ref().unwrap().id, pod);
        }

        // A container that exits on its own: the stop is seen without anyone asking.
        let id = create_container(&node, &pod, container_config("short", &bb, &["sleep", "1"]))
            .await
            .unwrap();
        let e = next().await;
        assert_eq!(
            (e.container_id.as_str(), kind(&e)),
            (id.as_str(), ContainerEventType::ContainerCreatedEvent)
        );
        start_container(&node, &id).await;
        let e = next().await;
        assert_eq!(
            (e.container_id.as_str(), kind(&e)),
            (id.as_str(), ContainerEventType::ContainerStartedEvent)
        );
        let e = next().await;
        assert_eq!(
            (e.container_id.as_str(), kind(&e)),
            (id.as_str(), ContainerEventType::ContainerStoppedEvent)
        );
        let st = e
            .containers_statuses
            .iter()
            .find(|s| s.id == id)
            .expect("status in the event");
        assert_eq!(st.state, ContainerState::ContainerExited as i32);
        assert_eq!(st.reason, "Completed");
        assert!(e.created_at > 0);

        node.runtime()
            .await
            .remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        let e = next().await;
        assert_eq!(
            (e.container_id.as_str(), kind(&e)),
            (id.as_str(), ContainerEventType::ContainerDeletedEvent)
        );
        assert!(e.containers_statuses.is_empty());

        let mut rt = node.runtime().await;
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        let e = next().await;
        assert_eq!(
            (e.container_id.as_str(), kind(&e)),
            (pod.as_str(), ContainerEventType::ContainerStoppedEvent)
        );
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        let e = next().await;
        assert_eq!(
            (e.container_id.as_str(), kind(&e)),
            (pod.as_str(), ContainerEventType::ContainerDeletedEvent)
        );
        assert!(e.pod_sandbox_status.is_none());
    });
}

/// `src` bind-mounted on `dir` (`dir` itself when src is None) then given the propagation
/// flags (MS_SHARED, MS_PRIVATE, MS_SLAVE); detached, with whatever got mounted inside, on drop.
struct OwnMount(std::path::PathBuf);

impl OwnMount {
    fn new(
        dir: &std::path::Path,
        src: Option<&OwnMount>,
        flags: &[nix::mount::MsFlags],
    ) -> OwnMount {
        use nix::mount::{MsFlags, mount};
        std::fs::create_dir_all(dir).unwrap();
        let from = src.map_or(dir, |s| s.0.as_path());
        mount(
            Some(from),
            dir,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind");
        let m = OwnMount(dir.to_path_buf());
        for f in flags {
            mount(None::<&str>, dir, None::<&str>, *f, None::<&str>).expect("propagation");
        }
        m
    }
}

impl Drop for OwnMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mount propagation as kubelet asks for it (and critest checks): a bidirectional bind of a
/// shared host mount carries mounts both ways; host-to-container only inwards; sources that
/// cannot propagate are refused with INVALID_ARGUMENT; privileged containers need a
/// privileged pod.
fn mount_propagation(env: &Env) {
    use nix::mount::{MsFlags, mount};
    env.rt.block_on(async {
        let node = Node::start().await;
        pull_ok(&node, &env.set.busybox.reference()).await;
        let bb = env.set.busybox.reference();
        let host = tempfile::Builder::new()
            .prefix("berth-e2e-prop-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let shared = OwnMount::new(&host.path().join("shared"), None, &[MsFlags::MS_SHARED]);
        let private = OwnMount::new(&host.path().join("private"), None, &[MsFlags::MS_PRIVATE]);
        // A slave needs a master: a second shared mount, bound again and made its slave.
        let master = OwnMount::new(&host.path().join("master"), None, &[MsFlags::MS_SHARED]);
        let slave = OwnMount::new(
            &host.path().join("slave"),
            Some(&master),
            &[MsFlags::MS_SLAVE],
        );
        let bind = |src: &OwnMount, dst: &str, p: MountPropagation| Mount {
            container_path: dst.into(),
            host_path: src.0.display().to_string(),
            propagation: p as i32,
            ..Default::default()
        };
        let privileged = |cfg: &mut ContainerConfig| {
            cfg.linux
                .get_or_insert_default()
                .security_context
                .get_or_insert_default()
                .privileged = true;
        };

        // Not privileged pod: no privileged container.
        let plain = run_pod(&node, pod_config("prop-plain", NamespaceMode::Pod))
            .await
            .unwrap();
        let mut cfg = container_config("priv", &bb, &["sleep", "60"]);
        privileged(&mut cfg);
        let e = create_container(&node, &plain, cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("privileged"), "{e:?}");
        remove_pod(&node, &plain).await;

        let mut pcfg = pod_config("prop", NamespaceMode::Pod);
        pcfg.log_directory = node.dir.path().join("logs").display().to_string();
        pcfg.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .privileged = true;
        let pod = run_pod(&node, pcfg).await.unwrap();

        // Sources that cannot propagate the way asked.
        for (src, p, what) in [
            (
                &private,
                MountPropagation::PropagationBidirectional,
                "shared",
            ),
            (
                &private,
                MountPropagation::PropagationHostToContainer,
                "shared or slave",
            ),
            (&slave, MountPropagation::PropagationBidirectional, "shared"),
        ] {
            let mut cfg = container_config("bad", &bb, &["sleep", "60"]);
            privileged(&mut cfg);
            cfg.mounts = vec![bind(src, "/mnt/x", p)];
            let e = create_container(&node, &pod, cfg).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
            assert!(
                e.message().contains(&format!("not a {what} mount")),
                "{e:?}"
            );
        }

        let mut cfg = container_config("prop", &bb, &["sleep", "600"]);
        privileged(&mut cfg);
        cfg.mounts = vec![
            bind(
                &shared,
                "/mnt/bi",
                MountPropagation::PropagationBidirectional,
            ),
            bind(
                &slave,
                "/mnt/in",
                MountPropagation::PropagationHostToContainer,
            ),
            bind(
                &shared,
                "/mnt/private",
                MountPropagation::PropagationPrivate,
            ),
        ];
        let id = create_container(&node, &pod, cfg)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", node.log_text()));
        start_container(&node, &id).await;

        // Host → container, through both propagating binds; not through the private one.
        for (src, sub) in [(&shared, "h1"), (&master, "h2")] {
            let d = src.0.join(sub);
            std::fs::create_dir(&d).unwrap();
            mount(
                Some("tmpfs"),
                &d,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .unwrap();
            std::fs::write(d.join("from-host"), "hi").unwrap();
        }
        assert_eq!(sh(&node, &id, "cat /mnt/bi/h1/from-host").await, "hi");
        assert_eq!(sh(&node, &id, "cat /mnt/in/h2/from-host").await, "hi");
        assert_eq!(
            sh(&node, &id, "ls /mnt/private/h1 | wc -l").await.trim(),
            "0"
        );

        // Container → host only through the bidirectional one.
        sh(
            &node,
            &id,
            "mkdir -p /mnt/bi/c1 /mnt/in/c2 && mount -t tmpfs none /mnt/bi/c1 && \
             mount -t tmpfs none /mnt/in/c2 && echo yo > /mnt/bi/c1/f && echo yo > /mnt/in/c2/f",
        )
        .await;
        assert_eq!(
            std::fs::read_to_string(shared.0.join("c1/f")).unwrap_or_default(),
            "yo\n"
        );
        assert!(!slave.0.join("c2/f").exists());

        let status = node
            .runtime()
            .await
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        let propagations: Vec<i32> = status.mounts.iter().map(|m| m.propagation).collect();
        assert!(propagations.contains(&(MountPropagation::PropagationBidirectional as i32)));

        remove_pod(&node, &pod).await;
        drop((shared, private, slave, master));
    });
}

/// KEP-127 (`hostUsers: false`): a pod with its own user namespace (0 → 200000, 65536 ids).
/// Its root is host uid 200000, yet it owns its image, its pod files and an idmapped volume
/// whose files are root's on the host; the namespaces it owns let it bind port 80; execs land
/// in it too. No chown copy of the image: its layers stay root's on disk.
fn user_namespaced_pod(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let st = node
            .runtime()
            .await
            .status(StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        let supported = st.runtime_handlers[0]
            .features
            .as_ref()
            .unwrap()
            .user_namespaces;
        assert!(
            supported || std::env::var_os("BERTH_E2E_NO_IDMAP").is_some(),
            "user namespaces not advertised: {}",
            node.log_text()
        );
        if !supported {
            eprintln!("user_namespaced_pod: idmapped mounts unavailable here (BERTH_E2E_NO_IDMAP)");
            return;
        }
        let _net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let map = IdMapping {
            host_id: 200_000,
            container_id: 0,
            length: 65536,
        };
        let userns = UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: vec![map],
            gids: vec![map],
        };
        let mut cfg = net_pod("userns", &node);
        let ns = cfg
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut())
            .unwrap();
        ns.userns_options = Some(userns.clone());
        let ns = ns.clone();
        let pod = run_pod(&node, cfg)
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}\n{}", node.log_text()));

        // A volume of root's files, seen through the pod's mapping.
        let vol = node.dir.path().join("volume");
        std::fs::create_dir(&vol).unwrap();
        std::fs::write(vol.join("from-host"), "x").unwrap();
        let id = running(
            &node,
            &pod,
            "main",
            &bb,
            "exec httpd -f -p 80 -h /etc",
            |c| {
                c.linux = Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        namespace_options: Some(ns.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                c.mounts = vec![Mount {
                    container_path: "/vol".into(),
                    host_path: vol.display().to_string(),
                    uid_mappings: vec![map],
                    gid_mappings: vec![map],
                    ..Default::default()
                }];
            },
        )
        .await;

        let words = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            words(sh(&node, &id, "cat /proc/self/uid_map /proc/1/gid_map").await),
            "0 200000 65536 0 200000 65536"
        );
        assert_eq!(
            sh(
                &node,
                &id,
                "id -u; stat -c %u:%g / /bin/busybox /etc/hostname /vol/from-host"
            )
            .await,
            "0\n0:0\n0:0\n0:0\n0:0\n"
        );
        // Port 80 (the network namespace is the pod's user namespace's).
        let page = sh(
            &node,
            &id,
            "for i in $(seq 50); do wget -qO- http://127.0.0.1/hostname && break; sleep 0.1; done",
        )
        .await;
        assert_eq!(page, "userns\n");
        // On the host: the process runs as 200000; what it writes in the volume is root's,
        // what it writes in its rootfs is 200000's (the upper layer); the image is untouched.
        // ContainerStatus.user: the ids as the container sees them.
        let user = container_status(&node, &id)
            .await
            .user
            .unwrap()
            .linux
            .unwrap();
        assert_eq!((user.uid, user.gid), (0, 0));
        let pid = container_pid(&node, &id).await;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert_eq!(
            words(uid_line.to_string()),
            "Uid: 200000 200000 200000 200000"
        );
        sh(&node, &id, "echo y > /vol/from-pod; echo z > /made-here").await;
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(vol.join("from-pod")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "written through the idmapped volume"
        );
        let root = std::fs::read_to_string(format!("/proc/{pid}/root/made-here")).unwrap();
        assert_eq!(root, "z\n");
        let meta = std::fs::metadata(format!("/proc/{pid}/root/made-here")).unwrap();
        assert_eq!(
            meta.uid(),
            200_000,
            "the upper layer stores the pod root's host uid"
        );
        let meta = std::fs::metadata(format!("/proc/{pid}/root/bin/busybox")).unwrap();
        assert_eq!(
            meta.uid(),
            200_000,
            "the image, seen through the idmapped layers"
        );

        // A container asking for another user namespace than its pod's is refused.
        let mut other = ns.clone();
        other.userns_options.as_mut().unwrap().uids[0].host_id = 300_000;
        other.userns_options.as_mut().unwrap().gids[0].host_id = 300_000;
        let mut cfg = container_config("other", &bb, &["true"]);
        cfg.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(other),
                ..Default::default()
            }),
            ..Default::default()
        });
        let err = create_container(&node, &pod, cfg).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

        remove_pod(&node, &pod).await;
        assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
        assert!(dir_entries(&node.state.join("ns")).is_empty(), "pins left");
    });
}

/// The host pid of a running container's init (verbose ContainerStatus).
async fn container_pid(node: &Node, id: &str) -> u32 {
    let r = node
        .runtime()
        .await
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&r.info["info"]).unwrap();
    info["pid"].as_u64().unwrap() as u32
}

/// SupplementalGroupsPolicy (advertised in Status): Merge adds the image's /etc/group
/// memberships of the user, Strict only the primary and the requested groups;
/// ContainerStatus.user reports what the process really has.
fn supplemental_groups_policy(env: &Env) {
    env.rt.block_on(async {
        let (node, pod) = node_with_pod(env, "groups").await;
        let img = env.set.user.reference(); // user app (1000), member of extra (2000)
        for (name, policy, groups) in [
            (
                "merge",
                SupplementalGroupsPolicy::Merge,
                vec![1000, 2000, 3000],
            ),
            ("strict", SupplementalGroupsPolicy::Strict, vec![1000, 3000]),
        ] {
            let id = running(&node, &pod, name, &img, "sleep 3600", |c| {
                c.linux = Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        supplemental_groups: vec![3000],
                        supplemental_groups_policy: policy as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            })
            .await;
            let want: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            assert_eq!(
                sh(&node, &id, "id -G").await,
                format!("{}\n", want.join(" ")),
                "{name}"
            );
            let user = container_status(&node, &id)
                .await
                .user
                .unwrap()
                .linux
                .unwrap();
            assert_eq!(
                (user.uid, user.gid, user.supplemental_groups),
                (1000, 1000, groups),
                "{name}"
            );
        }
        remove_pod(&node, &pod).await;
    });
}

/// `recursive_read_only`: a read-only bind whose submounts are read-only too
/// (mount_setattr(AT_RECURSIVE)); a plain read-only bind leaves a writable submount writable;
/// refused unless read-only and private, as containerd.
fn recursive_read_only_binds(env: &Env) {
    env.rt.block_on(async {
        let (node, pod) = node_with_pod(env, "rro").await;
        let bb = env.set.busybox.reference();
        let host = tempfile::Builder::new()
            .prefix("berth-e2e-rro-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let top = OwnMount::new(
            &host.path().join("top"),
            None,
            &[nix::mount::MsFlags::MS_PRIVATE],
        );
        let sub = host.path().join("top/sub");
        std::fs::create_dir_all(&sub).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &sub,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let _sub = OwnMount(sub.clone());
        let bind = |rro: bool, readonly: bool, p: MountPropagation| Mount {
            container_path: "/mnt".into(),
            host_path: top.0.display().to_string(),
            readonly,
            recursive_read_only: rro,
            propagation: p as i32,
            ..Default::default()
        };
        let touch = "touch /mnt/sub/x 2>&1 && echo written";
        for (name, rro, want) in [
            ("plain", false, "written"),
            ("rro", true, "Read-only file system"),
        ] {
            let id = running(&node, &pod, name, &bb, "sleep 3600", |c| {
                c.mounts = vec![bind(rro, true, MountPropagation::PropagationPrivate)];
            })
            .await;
            let r = exec(&node, &id, &["sh", "-c", touch], 10).await.unwrap();
            let out = String::from_utf8_lossy(&r.stdout).into_owned();
            assert!(out.contains(want), "{name}: {out:?}");
        }
        for (readonly, p) in [
            (false, MountPropagation::PropagationPrivate),
            (true, MountPropagation::PropagationHostToContainer),
        ] {
            let mut cfg = container_config("refused", &bb, &["true"]);
            cfg.mounts = vec![bind(true, readonly, p)];
            let err = create_container(&node, &pod, cfg).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        }
        remove_pod(&node, &pod).await;
    });
}

/// PID namespace mode TARGET (kubelet's ephemeral containers, `kubectl debug --target`): the
/// debug container joins the target container's PID namespace; a target that is not a running
/// container of the pod is refused.
fn target_pid_namespace(env: &Env) {
    env.rt.block_on(async {
        let (node, pod) = node_with_pod(env, "target").await;
        let bb = env.set.busybox.reference();
        let app = running(&node, &pod, "app", &bb, "exec sleep 3601", |_| {}).await;
        let target = |id: &str| {
            let id = id.to_string();
            move |c: &mut ContainerConfig| {
                c.linux = Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        namespace_options: Some(NamespaceOption {
                            pid: NamespaceMode::Target as i32,
                            target_id: id,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        };
        let debug = running(&node, &pod, "debug", &bb, "exec sleep 3602", target(&app)).await;
        let ps = sh(&node, &debug, "ps -o pid,args").await;
        assert!(
            ps.contains(" 1 sleep 3601") || ps.lines().any(|l| l.trim() == "1 sleep 3601"),
            "{ps}"
        );
        assert!(ps.contains("sleep 3602"), "{ps}");
        let mut cfg = container_config("bad", &bb, &["true"]);
        target("no-such-container")(&mut cfg);
        let err = create_container(&node, &pod, cfg).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        remove_pod(&node, &pod).await;
    });
}

/// A block device this test (root, outside any container) can open for reading, as (major,
/// minor, /dev path): a disk or partition, else a loop device (this machine's sandbox may
/// refuse its disk to everyone).
fn some_block_device() -> (u64, u64, String) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let partitions = std::fs::read_to_string("/proc/partitions").unwrap_or_default();
    let names = partitions
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .chain((0..8).map(|n| format!("loop{n}")));
    for name in names {
        let path = format!("/dev/{name}");
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.file_type().is_block_device() && std::fs::File::open(&path).is_ok() {
            let rdev = meta.rdev();
            return (
                nix::sys::stat::major(rdev),
                nix::sys::stat::minor(rdev),
                path,
            );
        }
    }
    panic!("no block device opens here");
}

/// Device rules hold on cgroup v1 and v2 (an eBPF program there). With the default security
/// context a container may mknod any device (CAP_MKNOD, containerd's `c *:* m` and `b *:* m`)
/// but opens only what the rules allow: not /dev/kmsg, not a block device of the node; the
/// defaults open, a requested device opens with its permissions only; a privileged container
/// opens anything.
fn device_rules(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        pull_ok(&node, &env.set.busybox.reference()).await;
        let bb = env.set.busybox.reference();
        let (major, minor, disk) = some_block_device();
        let mut pcfg = pod_config("devices", NamespaceMode::Pod);
        pcfg.log_directory = node.dir.path().join("logs").display().to_string();
        pcfg.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .privileged = true;
        let pod = run_pod(&node, pcfg).await.unwrap();
        let refused = |r: ExecSyncResponse, what: &str| {
            let err = String::from_utf8_lossy(&r.stderr).into_owned();
            assert!(
                r.exit_code != 0 && err.contains("Operation not permitted"),
                "{what}: exit {}, stderr {err}",
                r.exit_code
            );
        };

        let plain = running(&node, &pod, "plain", &bb, "sleep 3600", |_| {}).await;
        let r = exec(
            &node,
            &plain,
            &["sh", "-c", "mknod /dev/kmsg2 c 1 11 && head -c1 /dev/kmsg2"],
            30,
        )
        .await
        .unwrap();
        refused(r, "reading a new /dev/kmsg");
        let script = format!("mknod /dev/disk b {major} {minor} && : < /dev/disk");
        let r = exec(&node, &plain, &["sh", "-c", &script], 30)
            .await
            .unwrap();
        refused(r, &format!("reading {disk}"));
        // What the defaults allow: a new null, the zero the runtime made.
        let out = sh(
            &node,
            &plain,
            "mknod /dev/null2 c 1 3 && echo x > /dev/null2 && head -c 4 /dev/zero | wc -c",
        )
        .await;
        assert_eq!(out.trim(), "4");

        // A requested device, read-only.
        let granted = running(&node, &pod, "granted", &bb, "sleep 3600", |c| {
            c.devices = vec![Device {
                container_path: "/dev/disk".into(),
                host_path: disk.clone(),
                permissions: "r".into(),
            }];
        })
        .await;
        sh(&node, &granted, ": < /dev/disk").await;
        // Opened for writing (nothing is written): refused.
        let r = exec(&node, &granted, &["sh", "-c", ": >> /dev/disk"], 30)
            .await
            .unwrap();
        refused(r, &format!("opening {disk} for writing"));

        // Privileged: every device.
        let all = running(&node, &pod, "privileged", &bb, "sleep 3600", |c| {
            c.linux
                .get_or_insert_default()
                .security_context
                .get_or_insert_default()
                .privileged = true;
        })
        .await;
        let script = format!(
            "mknod /dev/disk b {major} {minor} && : < /dev/disk && \
             mknod /dev/kmsg2 c 1 11 && dd if=/dev/kmsg2 bs=8192 count=1 2>/dev/null | wc -c"
        );
        let out = sh(&node, &all, &script).await;
        assert!(out.trim().parse::<u64>().is_ok_and(|n| n > 0), "{out}");

        remove_pod(&node, &pod).await;
    });
}

/// CVE-2021-30465's class (runc's reproducer, with the host in the attacker's place): while
/// berth mounts volumes below a directory of a shared volume, that directory is swapped again and
/// again (renameat2 RENAME_EXCHANGE) with a symlink to a host directory. No mount point may be
/// created there, no mount may land there, and every container that was created has each of
/// its mounts inside its own root.
fn mount_destination_race(env: &Env) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const ATTEMPTS: usize = 8;
    const MOUNTS: usize = 32;
    env.rt.block_on(async {
        let (node, pod) = node_with_pod(env, "race").await;
        let bb = env.set.busybox.reference();
        let host = tempfile::Builder::new()
            .prefix("berth-e2e-race-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let (vol, canary, src) = (
            host.path().join("vol"),
            host.path().join("canary"),
            host.path().join("src"),
        );
        for d in [vol.join("d"), canary.clone(), src.clone()] {
            std::fs::create_dir_all(&d).unwrap();
        }
        std::os::unix::fs::symlink(&canary, vol.join("s")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicUsize::new(0));
        let swapper = {
            let (stop, swaps, vol) = (stop.clone(), swaps.clone(), vol.clone());
            std::thread::spawn(move || {
                let dir = std::fs::File::open(&vol).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if nix::fcntl::renameat2(
                        &dir,
                        "d",
                        &dir,
                        "s",
                        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                    )
                    .is_ok()
                    {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let mut created = 0;
        for attempt in 0..ATTEMPTS {
            let mut cfg = container_config(&format!("race-{attempt}"), &bb, &["sleep", "3600"]);
            cfg.mounts = std::iter::once(Mount {
                container_path: "/vol".into(),
                host_path: vol.display().to_string(),
                ..Default::default()
            })
            .chain((0..MOUNTS).map(|i| Mount {
                container_path: format!("/vol/d/m{attempt}-{i}"),
                host_path: src.display().to_string(),
                ..Default::default()
            }))
            .collect();
            // Losing the race may fail the creation: that is allowed, a mount outside is not.
            let created_id = create_container(&node, &pod, cfg).await;
            let outside = dir_entries(&canary);
            assert!(
                outside.is_empty(),
                "attempt {attempt}: mount points created outside the rootfs: {outside:?}"
            );
            let Ok(id) = created_id else {
                continue;
            };
            created += 1;
            start_container(&node, &id).await;
            let mountinfo = sh(&node, &id, "cat /proc/self/mountinfo").await;
            for i in 0..MOUNTS {
                let suffix = format!("/m{attempt}-{i}");
                assert!(
                    mountinfo
                        .lines()
                        .any(|l| l.split(' ').nth(4).is_some_and(|p| p.ends_with(&suffix))),
                    "attempt {attempt}: mount {suffix} is not in the container:\n{mountinfo}"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(swaps.load(Ordering::Relaxed) > 0, "the swapper never ran");
        assert!(
            created > 0,
            "no container could be created:\n{}",
            node.log_text()
        );
        let host_mounts = berth_e2e::node::mounts_under(host.path());
        assert!(host_mounts.is_empty(), "host mounts: {host_mounts:?}");
        assert!(dir_entries(&canary).is_empty());
        remove_pod(&node, &pod).await;
    });
}

/// CVE-2019-5736's class: a container reaches the runtime's binary through `/proc/<pid>/exe`,
/// by running it (an image whose /bin/sh is `#!/proc/self/exe`) or by finding a process of it in
/// a shared PID namespace (another container's init, created and not started, runs berth-shim),
/// and opens it for writing. What it reaches is a read-only view: EROFS (not the host file, which
/// only "Text file busy" would keep), and the host's berth-shim is unchanged.
fn shim_binary_not_writable(env: &Env) {
    use berth_e2e::images::{
        BuiltLayer, Compression, Entry, ImageConfig, ImageSpec, Pusher, busybox_layer,
        sha256_digest,
    };
    const ATTACK: &str = r#"found=0
for d in /proc/[0-9]*; do
  case "$(readlink $d/exe 2>/dev/null)" in
    *berth-shim) found=1; echo "target $d"; (echo pwned > $d/exe) 2>&1 ;;
  esac
done
echo "found=$found""#;
    env.rt.block_on(async {
        let installed = berth_e2e::node::berthd_binary().with_file_name("berth-shim");
        let hash = || sha256_digest(&std::fs::read(&installed).expect("reading berth-shim"));
        let before = hash();
        let evil = Pusher::for_registry(&env.reg)
            .push_image(
                "evil-exe:latest",
                &ImageSpec::new(
                    vec![
                        busybox_layer().clone(),
                        BuiltLayer::from_entries(
                            &[Entry::file("bin/sh", "#!/proc/self/exe\n", 0o755)],
                            Compression::Gzip,
                        ),
                    ],
                    ImageConfig::default(),
                ),
            )
            .await;
        let node = Node::start().await;
        pull_ok(&node, &env.set.busybox.reference()).await;
        pull_ok(&node, &evil.reference()).await;
        let mut cfg = pod_config("exe", NamespaceMode::Pod);
        cfg.log_directory = node.dir.path().join("logs").display().to_string();
        if let Some(ns) = cfg
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut())
        {
            ns.pid = NamespaceMode::Pod as i32;
        }
        let pod = run_pod(&node, cfg).await.expect("RunPodSandbox");
        let attacker = create_container(
            &node,
            &pod,
            container_config(
                "attacker",
                &evil.reference(),
                &["/bin/busybox", "sleep", "3600"],
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e:?}\n{}", node.log_text()));
        start_container(&node, &attacker).await;
        // Created, not started: its init waits in the pod's PID namespace, running berth-shim.
        create_container(
            &node,
            &pod,
            container_config("waiting", &env.set.busybox.reference(), &["true"]),
        )
        .await
        .expect("CreateContainer waiting");

        // /bin/sh runs berth-shim itself inside the container; it must not get anywhere.
        let r = exec(&node, &attacker, &["/bin/sh"], 10).await;
        assert!(
            r.as_ref().is_ok_and(|r| r.exit_code != 0) || r.is_err(),
            "{r:?}"
        );
        let r = exec(&node, &attacker, &["/bin/busybox", "sh", "-c", ATTACK], 30)
            .await
            .expect("ExecSync");
        let out = String::from_utf8_lossy(&r.stdout).into_owned();
        assert!(out.contains("found=1"), "no berth-shim process seen: {out}");
        assert!(out.contains("Read-only file system"), "{out}");
        assert!(
            !out.contains("Text file busy"),
            "the host's binary was reached: {out}"
        );
        assert_eq!(hash(), before, "berth-shim changed");
        remove_pod(&node, &pod).await;
    });
}
