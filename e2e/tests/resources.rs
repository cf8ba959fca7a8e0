//! End-to-end, running containers: ExecSync, resource limits (OOM, UpdateContainerResources)
//! and stats, through a real CRI client against a real berthd. This suite also runs on a pure
//! cgroup v2 kernel (`make test-cgroup2`, inside e2e/cg2vm), so it only uses what both
//! hierarchies offer and reads limits the way each one spells them.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_e2e::cri::*;
use berth_e2e::images::{RuntimeSet, push_runtime_set};
use berth_e2e::netns;
use berth_e2e::node::Node;
use berth_e2e::registry::{Registry, RegistryOpts, install_crypto_provider};
use k8s_cri::v1::*;
use libtest_mimic::{Arguments, Trial};
use tonic::Code;

struct Env {
    rt: tokio::runtime::Runtime,
    // Keeps the registry running for the whole suite.
    _reg: Registry,
    set: RuntimeSet,
}

type TestFn = fn(&Env);

fn main() -> ExitCode {
    // Before any thread exists: the whole suite lives in its own network namespace.
    netns::enter_private_netns();
    install_crypto_provider();
    let args = Arguments::from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let reg = Registry::start(RegistryOpts::default());
    let set = rt.block_on(push_runtime_set(&reg));
    let env = Arc::new(Env { rt, _reg: reg, set });
    let tests: &[(&str, TestFn)] = &[("exec_sync", exec_sync), ("oom_killed", oom_killed)];
    let trials = tests
        .iter()
        .map(|&(name, f)| {
            let env = env.clone();
            Trial::test(name, move || {
                f(&env);
                Ok(())
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(env);
    remove_cgroup_parents();
    conclusion.exit_code()
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
    assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
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
        // Large output arrives whole.
        let r = exec(&node, &id, &["head", "-c", "3000000", "/dev/zero"], 30)
            .await
            .unwrap();
        assert_eq!((r.stdout.len(), r.exit_code), (3_000_000, 0));

        // The image's user, with its groups.
        let uid = running(&node, &pod, "user", &env.set.user.reference(), "sleep 3600", |_| {}).await;
        assert_eq!(sh(&node, &uid, "id -u; id -G; pwd").await, "1000\n1000 2000\n/home/app\n");

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
