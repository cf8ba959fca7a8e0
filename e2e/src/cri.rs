//! CRI helpers the e2e suites share: pods, containers, images and logs through a real CRI
//! client against a [`Node`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_cri::v1::ImageSpec as CriImageSpec;
use k8s_cri::v1::*;

use crate::node::{Node, pids_with_cmdline, shims_of};

/// Every test pod's cgroup parent; removed (when empty) at the end of a suite.
pub const E2E_CGROUP_PARENT: &str = "/berth-e2e";

pub fn spec(image: &str) -> Option<CriImageSpec> {
    Some(CriImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

pub async fn pull(
    node: &Node,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, tonic::Status> {
    node.images()
        .await
        .pull_image(PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

pub async fn pull_ok(node: &Node, image: &str) -> String {
    match pull(node, image, None).await {
        Ok(id) => id,
        Err(e) => panic!("pull {image}: {e:?}\n{}", node.log_text()),
    }
}

pub fn pod_config(name: &str, ipc: NamespaceMode) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: format!("/var/log/pods/e2e_{name}"),
        labels: [
            ("app".to_string(), name.to_string()),
            ("tier".into(), "test".into()),
        ]
        .into_iter()
        .collect(),
        annotations: [("note".to_string(), "e2e".to_string())]
            .into_iter()
            .collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: E2E_CGROUP_PARENT.into(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: ipc as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn run_pod(node: &Node, config: PodSandboxConfig) -> Result<String, tonic::Status> {
    node.runtime()
        .await
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

pub async fn pod_status(node: &Node, id: &str) -> Result<PodSandboxStatusResponse, tonic::Status> {
    node.runtime()
        .await
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn list_pods(node: &Node, filter: Option<PodSandboxFilter>) -> Vec<PodSandbox> {
    node.runtime()
        .await
        .list_pod_sandbox(ListPodSandboxRequest { filter })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

pub fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: spec(image),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

pub async fn create_container(
    node: &Node,
    pod: &str,
    config: ContainerConfig,
) -> Result<String, tonic::Status> {
    node.runtime()
        .await
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().container_id)
}

pub async fn start_container(node: &Node, id: &str) {
    node.runtime()
        .await
        .start_container(StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("StartContainer {id}: {e:?}\n{}", node.log_text()));
}

pub async fn container_status(node: &Node, id: &str) -> ContainerStatus {
    node.runtime()
        .await
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

pub async fn wait_exited(node: &Node, id: &str) -> ContainerStatus {
    for _ in 0..500 {
        let s = container_status(node, id).await;
        if s.state == ContainerState::ContainerExited as i32 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("container {id} did not exit");
}

/// Run `sh -c script` in a fresh container of `pod`; returns (status, log text).
pub async fn run_script(
    node: &Node,
    pod: &str,
    name: &str,
    image: &str,
    script: &str,
    tweak: impl FnOnce(&mut ContainerConfig),
) -> (ContainerStatus, String) {
    let mut cfg = container_config(name, image, &["sh", "-c", script]);
    tweak(&mut cfg);
    let id = create_container(node, pod, cfg)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer {name}: {e:?}\n{}", node.log_text()));
    start_container(node, &id).await;
    let st = wait_exited(node, &id).await;
    let log = std::fs::read_to_string(&st.log_path).unwrap_or_default();
    (st, log)
}

/// The content of each CRI log record, checking the format of every line.
pub fn log_contents(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let ts = parts.next().unwrap();
            assert!(
                ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
                "bad timestamp in {l:?}"
            );
            let stream = parts.next().unwrap().to_string();
            let tag = parts.next().unwrap().to_string();
            assert!(stream == "stdout" || stream == "stderr", "{l:?}");
            assert!(tag == "F" || tag == "P", "{l:?}");
            (stream, tag, parts.next().unwrap_or_default().to_string())
        })
        .collect()
}

/// rmdir the suite's cgroup parent in every hierarchy (only empty ones go).
pub fn remove_cgroup_parents() {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path().join(&E2E_CGROUP_PARENT[1..])))
        .collect();
    dirs.push(PathBuf::from("/sys/fs/cgroup").join(&E2E_CGROUP_PARENT[1..]));
    for d in dirs {
        if !d.is_dir() {
            continue;
        }
        // Containers of a failed test: their (empty) cgroups first.
        for child in dir_entries(&d).into_iter().filter(|c| c.is_dir()) {
            if let Err(e) = std::fs::remove_dir(&child) {
                eprintln!("cgroup {} left behind: {e}", child.display());
            }
        }
        if let Err(e) = std::fs::remove_dir(&d) {
            eprintln!("cgroup {} left behind: {e}", d.display());
        }
    }
}

pub fn dir_entries(p: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(p) {
        Ok(rd) => rd.map(|e| e.expect("dir entry").path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The cgroups (in any hierarchy, under the e2e parent) named by one of `ids`.
pub fn cgroups_of(ids: &HashSet<String>) -> Vec<String> {
    let parent = &E2E_CGROUP_PARENT[1..];
    let mut left = Vec::new();
    for h in dir_entries(Path::new("/sys/fs/cgroup")) {
        for d in dir_entries(&h.join(parent)) {
            let name = d.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| ids.contains(&n)) {
                left.push(d.display().to_string());
            }
        }
    }
    left
}

/// What a node still holds once every pod is gone: mounts, IPs, files under root and state,
/// shims, processes whose command line has every word of `marker`, cgroups of `ids` (every pod
/// and container id the test saw) and veths. Empty when nothing leaked.
pub async fn leaks(
    node: &Node,
    net: &TestNet,
    ids: &HashSet<String>,
    marker: &[&str],
) -> Vec<String> {
    let mut leaks: Vec<String> = Vec::new();
    leaks.extend(
        crate::node::mounts_under(node.dir.path())
            .into_iter()
            .map(|m| format!("mount {}", m.display())),
    );
    leaks.extend(net.reserved().into_iter().map(|ip| format!("IP {ip}")));
    for dir in [
        node.root.join("containers"),
        node.root.join("sandboxes"),
        node.root.join("cni"),
        node.state.join("ns"),
        node.state.join("shm"),
        node.state.join("shims"),
    ] {
        leaks.extend(
            dir_entries(&dir)
                .into_iter()
                .map(|p| format!("file {}", p.display())),
        );
    }
    leaks.extend(
        shims_of(node.dir.path())
            .into_iter()
            .map(|p| format!("shim pid {p}")),
    );
    leaks.extend(
        pids_with_cmdline(marker)
            .into_iter()
            .map(|p| format!("container process {p}")),
    );
    leaks.extend(cgroups_of(ids).into_iter().map(|c| format!("cgroup {c}")));
    // The kernel may finish removing a namespace's veth just after the call returns.
    let mut veths = Vec::new();
    for _ in 0..100 {
        veths = std::fs::read_to_string("/proc/self/net/dev")
            .unwrap_or_default()
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|n| n.trim().to_string())
            .filter(|n| n.starts_with("veth"))
            .collect();
        if veths.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    leaks.extend(veths.into_iter().map(|v| format!("veth {v}")));
    leaks
}

/// A distinct bridge and subnet per network of the suite.
static NEXT_NET: AtomicU32 = AtomicU32::new(1);

/// The test network a node uses: its bridge, subnet prefix and IPAM data dir.
pub struct TestNet {
    pub bridge: String,
    /// `10.<n>` — pods get 10.<n>.0.x/16, the bridge 10.<n>.0.1.
    pub prefix: String,
    pub ipam_dir: PathBuf,
}

impl TestNet {
    pub fn gateway(&self) -> String {
        format!("{}.0.1", self.prefix)
    }

    /// Addresses host-local still holds (its data dir has one file per reserved IP).
    pub fn reserved(&self) -> Vec<String> {
        let dir = self.ipam_dir.join("pods");
        std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&self.prefix))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Write the standard test conflist into the node's CNI config dir.
pub fn install_network(node: &Node) -> TestNet {
    let n = 100 + NEXT_NET.fetch_add(1, Ordering::Relaxed);
    let net = TestNet {
        bridge: format!("berth{n}"),
        prefix: format!("10.{n}"),
        ipam_dir: node.dir.path().join("ipam"),
    };
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": net.ipam_dir,
                    "ranges": [[{"subnet": format!("{}.0.0/16", net.prefix)}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    });
    std::fs::write(node.cni_conf.join("10-pods.conflist"), conf.to_string()).unwrap();
    net
}

/// A pod with its own network namespace (CNI), logs under the node's dir.
pub fn net_pod(name: &str, node: &Node) -> PodSandboxConfig {
    let mut cfg = pod_config(name, NamespaceMode::Pod);
    cfg.log_directory = node
        .dir
        .path()
        .join("logs")
        .join(name)
        .display()
        .to_string();
    if let Some(ns) = cfg
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.network = NamespaceMode::Pod as i32;
    }
    cfg
}

/// A shell script printing every process of the container's PID namespace, one
/// `/proc/<pid>/stat` line each (builtins only: the checking shell is the one extra process).
pub const PROC_STATS: &str =
    "for s in /proc/[0-9]*/stat; do read -r l < $s 2>/dev/null && echo \"$l\"; done";

/// From PROC_STATS output: every process besides PID 1, the checking shell and the exec
/// reaper that runs it (the shell's parent); and every zombie.
pub fn proc_leftovers(stats: &str) -> Vec<String> {
    // (pid, comm, state, ppid) of each line; comm may hold spaces and parentheses.
    let parse = |l: &str| {
        let pid = l.split_whitespace().next().unwrap_or_default().to_string();
        let open = l.find('(').unwrap_or(0);
        let close = l.rfind(')').unwrap_or(l.len());
        let comm = l.get(open + 1..close).unwrap_or_default().to_string();
        let mut rest = l.get(close + 1..).unwrap_or_default().split_whitespace();
        let state = rest.next().unwrap_or_default().to_string();
        let ppid = rest.next().unwrap_or_default().to_string();
        (pid, comm, state, ppid)
    };
    let procs: Vec<_> = stats.lines().map(|l| (l, parse(l))).collect();
    let checkers: Vec<&str> = procs
        .iter()
        .filter(|(_, (_, comm, state, _))| comm == "sh" && state != "Z")
        .map(|(_, (pid, ..))| pid.as_str())
        .collect();
    let reapers: Vec<&str> = procs
        .iter()
        .filter(|(_, (_, comm, ..))| comm == "sh")
        .map(|(_, (.., ppid))| ppid.as_str())
        .collect();
    procs
        .iter()
        .filter(|(_, (pid, _, state, _))| {
            state == "Z"
                || (pid != "1"
                    && !checkers.contains(&pid.as_str())
                    && !reapers.contains(&pid.as_str()))
        })
        .map(|(l, _)| l.to_string())
        .collect()
}

/// A CNI plugin of the test's own (Python): records each command in `marker`, sleeps `sleep`
/// seconds on ADD, fails ADD and DEL when `fail` (ADD only, at random, with probability
/// `add_fail_rate`), else passes its prevResult on.
pub const TEST_PLUGIN: &str = r#"#!/usr/bin/python3
import json, os, random, sys, time
conf = json.load(sys.stdin)
cmd = os.environ.get("CNI_COMMAND", "")
version = conf.get("cniVersion", "1.0.0")
if cmd == "VERSION":
    print(json.dumps({"cniVersion": version, "supportedVersions": ["0.4.0", "1.0.0"]}))
    sys.exit(0)
if conf.get("marker"):
    with open(conf["marker"], "a") as f:
        f.write(cmd + "\n")
if cmd == "ADD":
    time.sleep(conf.get("sleep", 0))
if (conf.get("fail") and cmd in ("ADD", "DEL")) or (
    cmd == "ADD" and random.random() < conf.get("add_fail_rate", 0)
):
    print(json.dumps({"cniVersion": version, "code": 999, "msg": "berth-test plugin fails " + cmd}))
    sys.exit(1)
if cmd == "ADD":
    print(json.dumps(conf.get("prevResult", {"cniVersion": version})))
"#;

/// Put the test plugin after the bridge in the node's network, with `params`; returns the
/// marker file it writes its commands to.
pub fn insert_test_plugin(node: &Node, params: serde_json::Value) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = node.dir.path().join("cni-bin").join("berth-test");
    std::fs::write(&bin, TEST_PLUGIN).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let marker = node.dir.path().join("berth-test.log");
    let conf_path = node.cni_conf.join("10-pods.conflist");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&conf_path).unwrap()).unwrap();
    let mut plugin = params;
    plugin["type"] = "berth-test".into();
    plugin["marker"] = marker.display().to_string().into();
    v["plugins"].as_array_mut().unwrap().insert(1, plugin);
    std::fs::write(&conf_path, v.to_string()).unwrap();
    marker
}

#[cfg(test)]
mod leftover_tests {
    use super::proc_leftovers;

    #[test]
    fn only_pid1_the_checker_and_its_reaper_are_expected() {
        let stats = "1 (sleep) S 0 1 1 0\n\
                     40 (berth-shim) S 0 0 0 0\n\
                     41 (sh) R 40 41 41 0\n";
        assert!(proc_leftovers(stats).is_empty());
        let stats = "1 (sleep) S 0 1 1 0\n\
                     7 (sleep) Z 1 7 7 0\n\
                     8 (my (odd) name) S 1 8 8 0\n\
                     40 (berth-shim) S 0 0 0 0\n\
                     41 (sh) R 40 41 41 0\n";
        let left = proc_leftovers(stats);
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left[0].starts_with("7 ") && left[1].starts_with("8 "));
    }
}
