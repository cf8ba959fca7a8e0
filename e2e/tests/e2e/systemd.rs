//! berthd as a systemd service (issue 13 item 1): needs systemd as PID 1, so `make test-systemd`
//! runs it in `e2e/cg2vm --systemd` with `BERTH_E2E_SYSTEMD=1`; elsewhere its tests are
//! reported ignored ("skipped: needs systemd as PID 1"), or fail when that variable is set. On a
//! machine systemd runs it also needs that variable, as it installs and starts berthd.service.
//!
//! The test installs berth as an operator does, with the Makefile (`make install-files` from
//! this test binary's build: deploy/berthd.service, enabled), checks the installed unit with
//! `systemd-analyze verify`, `systemctl start`s it (Type=notify: it returns once berthd said
//! READY=1, so CRI answers at once), runs a pod (CNI) and a long-running container, and
//! restarts berthd twice: as installed (`KillMode=process`) and with a drop-in that makes it
//! `KillMode=control-group`, systemd's default. The container keeps running with the same init
//! process each time (same PID, same start time), the new berthd reports it RUNNING, and no
//! shim or container process is ever in berthd.service's cgroup. Then everything is removed and
//! `make uninstall` leaves nothing: binaries, unit, its cgroup, berth-shims cgroups, mounts,
//! netns, veths, IPs, processes.
//!
//! berthd runs in PID 1's network namespace, not in the harness's private one, so this suite's
//! setup moves the harness there first (in the VM it holds only loopback).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use berth_e2e::cri::*;
use berth_e2e::images::RuntimeEnv;
use berth_e2e::node::{Node, berthd_binary};
use k8s_cri::v1::*;

pub type Env = RuntimeEnv;

type TestFn = fn(&Env);

/// The suite's tests; the harness names them `systemd::<name>`.
pub const TESTS: &[(&str, TestFn)] = &[(
    "install_start_restart_uninstall",
    install_start_restart_uninstall,
)];

/// Set to `1` by `make test-systemd`: the suite must run (a missing systemd fails it).
pub const REQUIRED_BY: &str = "BERTH_E2E_SYSTEMD";

const UNIT: &str = "berthd.service";
const UNIT_FILE: &str = "/etc/systemd/system/berthd.service";
const DROP_IN_DIR: &str = "/etc/systemd/system/berthd.service.d";
const CONFIG: &str = "/etc/berth/berth.toml";
/// What `make install-files` may create besides the unit and the binaries (files first, then
/// the directories holding them); the test removes those that were not there before it.
const INSTALLED_ETC: [&str; 6] = [
    "/etc/berth/berth.toml",
    "/etc/crictl.yaml",
    "/etc/cni/net.d/10-berth.conflist",
    "/etc/berth",
    "/etc/cni/net.d",
    "/etc/cni",
];
/// The container's command: a marker the leak check looks for.
const SLEEP: [&str; 2] = ["sleep", "86377"];

/// Why the suite cannot run here: None when systemd is PID 1 and `BERTH_E2E_SYSTEMD=1` says
/// this machine is for it (the test installs and starts berthd.service, in PID 1's network
/// namespace: not on a workstation by accident).
pub fn unavailable() -> Option<String> {
    if !Path::new("/run/systemd/system").is_dir() {
        return Some(
            "needs systemd as PID 1 (`make test-systemd` runs it in e2e/cg2vm --systemd)".into(),
        );
    }
    (std::env::var(REQUIRED_BY).as_deref() != Ok("1")).then(|| {
        format!(
            "installs berthd.service on this machine: only with {REQUIRED_BY}=1 \
             (`make test-systemd` sets it in a throwaway VM)"
        )
    })
}

pub fn setup() -> Env {
    // Before the runtime's threads and the registry exist: they inherit this thread's namespace.
    let ns = std::fs::File::open("/proc/1/ns/net").expect("opening PID 1's network namespace");
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("joining PID 1's network namespace");
    let env = RuntimeEnv::start();
    assert_eq!(
        netns_of(env.reg.pid() as i32),
        netns_of(1),
        "the registry is not in PID 1's network namespace, where berthd pulls from: run the \
         systemd suite alone (`systemd::`)"
    );
    env
}

fn netns_of(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("reading a process's netns link")
}

/// Run a command; its output (panics if it cannot be started).
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// Run a command that must succeed; its stdout.
fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One property of berthd.service (`systemctl show -p NAME --value`).
fn show(property: &str) -> String {
    run_ok("systemctl", &["show", "-p", property, "--value", UNIT])
        .trim()
        .to_string()
}

fn main_pid() -> i32 {
    show("MainPID").parse().expect("MainPID is a number")
}

/// The start time of a process (field 22 of /proc/PID/stat), None once it is gone.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: the fields after it start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A process's cgroup v2 path (`0::/...`).
fn cgroup_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
        .to_string()
}

/// Every process in the cgroup `dir` and below it.
fn procs_under(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    for child in dir_entries(dir).into_iter().filter(|d| d.is_dir()) {
        pids.extend(procs_under(&child));
    }
    pids
}

/// A file's identity (device, inode).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Processes running the executable file `id` (berthd runs shims from a detached read-only view
/// of their directory, so /proc/PID/exe names no path on the host; the inode is the installed
/// file's).
fn pids_of_exe(id: (u64, u64)) -> Vec<i32> {
    let mut pids: Vec<i32> = dir_entries(Path::new("/proc"))
        .into_iter()
        .filter_map(|p| {
            let pid: i32 = p.file_name()?.to_str()?.parse().ok()?;
            (file_id(&p.join("exe"))? == id).then_some(pid)
        })
        .collect();
    pids.sort();
    pids
}

async fn wait_gone(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while start_time(pid).is_some() {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) is still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The host pid of a running container's init (verbose ContainerStatus) and its state.
async fn container_pid_and_state(node: &Node, id: &str) -> (i32, i32) {
    let r = node
        .runtime()
        .await
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e:?}\n{}", node.log_text()))
        .into_inner();
    let state = r.status.as_ref().map_or(-1, |s| s.state);
    let info: serde_json::Value =
        serde_json::from_str(r.info.get("info").map_or("{}", String::as_str))
            .expect("the verbose info is JSON");
    let pid = info["pid"].as_i64().unwrap_or(-1) as i32;
    (pid, state)
}

/// What the test installed, taken away again even when it fails half-way.
struct Installed {
    repo: PathBuf,
    prefix: PathBuf,
    state: PathBuf,
    /// Of INSTALLED_ETC, what was not there before.
    created: Vec<&'static str>,
    uninstalled: bool,
}

impl Installed {
    fn uninstall(&mut self) -> String {
        self.uninstalled = true;
        let prefix = format!("PREFIX={}", self.prefix.display());
        let repo = self.repo.display().to_string();
        run_ok("make", &["-s", "-C", &repo, "uninstall", &prefix])
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.uninstalled {
            let _ = std::fs::remove_dir_all(DROP_IN_DIR);
            let _ = run("systemctl", &["stop", UNIT]);
            let prefix = format!("PREFIX={}", self.prefix.display());
            let repo = self.repo.display().to_string();
            let _ = run("make", &["-s", "-C", &repo, "uninstall", &prefix]);
        }
        for p in &self.created {
            let p = Path::new(p);
            let _ = if p.is_dir() {
                std::fs::remove_dir(p)
            } else {
                std::fs::remove_file(p)
            };
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// The unit's state after a (re)start: active, ready, berthd from the install as its main
/// process, alone in the unit's cgroup. Returns berthd's pid.
async fn assert_started(node: &Node, prefix: &Path) -> i32 {
    // Type=notify: `systemctl start` returned after READY=1, which berthd sends once the CRI
    // socket is bound, so CRI answers now (no retry).
    let version = node
        .runtime()
        .await
        .version(VersionRequest::default())
        .await;
    assert!(
        version.is_ok(),
        "CRI did not answer right after systemctl returned: {version:?}\n{}",
        node.log_text()
    );
    assert_eq!(
        (show("ActiveState"), show("SubState")),
        ("active".to_string(), "running".to_string())
    );
    assert_eq!(show("Type"), "notify");
    assert_eq!(show("NotifyAccess"), "main");
    assert_eq!(
        show("StatusText"),
        format!("serving CRI on {}", node.socket.display()),
        "berthd's READY=1 status line"
    );
    let pid = main_pid();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
        Some(prefix.join("bin/berthd")),
        "the unit runs the installed berthd"
    );
    let unit_cgroup = show("ControlGroup");
    assert_eq!(
        cgroup_of(pid),
        unit_cgroup,
        "berthd is in its unit's cgroup"
    );
    assert_eq!(
        procs_under(&Path::new("/sys/fs/cgroup").join(unit_cgroup.trim_start_matches('/'))),
        vec![pid],
        "only berthd is in berthd.service's cgroup (no shim, no container)"
    );
    pid
}

fn install_start_restart_uninstall(env: &Env) {
    env.rt.block_on(async {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the e2e crate lives in the workspace")
            .to_path_buf();
        let bin_src = berthd_binary()
            .parent()
            .expect("berthd lives in a directory")
            .to_path_buf();
        for f in [CONFIG, UNIT_FILE] {
            assert!(
                !Path::new(f).exists(),
                "{f} exists: this test installs berth itself, on a machine without it \
                 (`make test-systemd` runs it in a throwaway VM)"
            );
        }
        let created: Vec<&str> = INSTALLED_ETC
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        let netns_before = dir_entries(Path::new("/run/netns"));
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-systemd-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        // As on a node: the root on disk, the state (and the CRI socket) in /run.
        let state = Path::new("/run").join(dir.path().file_name().expect("a tempdir's name"));
        let prefix = dir.path().join("prefix");
        std::fs::create_dir_all("/etc/berth").expect("mkdir /etc/berth");
        let node = Node::configure(dir, state.clone(), CONFIG.into(), "").under_systemd(UNIT);
        let net = install_network(&node);
        // Declared after the node: dropped (uninstalled) before it.
        let mut installed = Installed {
            repo: repo.clone(),
            prefix: prefix.clone(),
            state,
            created,
            uninstalled: false,
        };

        // Install from this build, as `make install` does from a release build.
        run_ok(
            "make",
            &[
                "-s",
                "-C",
                &repo.display().to_string(),
                "install-files",
                &format!("BIN_SRC={}", bin_src.display()),
                &format!("PREFIX={}", prefix.display()),
            ],
        );
        for b in ["berthd", "berth", "berth-shim"] {
            let p = prefix.join("bin").join(b);
            assert!(p.is_file(), "{} was not installed", p.display());
        }
        let unit_text = std::fs::read_to_string(UNIT_FILE).expect("the unit was installed");
        assert!(
            unit_text.contains(&format!("ExecStart={}/bin/berthd\n", prefix.display())),
            "ExecStart names the installed berthd:\n{unit_text}"
        );
        assert_eq!(run_ok("systemctl", &["is-enabled", UNIT]).trim(), "enabled");
        let verify = run("systemd-analyze", &["verify", UNIT_FILE]);
        let verify_err = String::from_utf8_lossy(&verify.stderr);
        assert!(
            verify.status.success() && !verify_err.contains("berthd"),
            "systemd-analyze verify {UNIT_FILE}: {}\n{verify_err}",
            verify.status
        );

        run_ok("systemctl", &["start", UNIT]);
        let first = assert_started(&node, &prefix).await;

        // A pod with its own network (the test's CNI config) and a long-running container.
        let bb = &env.set.busybox;
        pull_ok(&node, &bb.reference()).await;
        let pod = run_pod(&node, net_pod("sd", &node))
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}\n{}", node.log_text()));
        let id = create_container(
            &node,
            &pod,
            container_config("long", &bb.reference(), &SLEEP),
        )
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e:?}\n{}", node.log_text()));
        start_container(&node, &id).await;
        let (pid, state) = container_pid_and_state(&node, &id).await;
        assert_eq!(state, ContainerState::ContainerRunning as i32);
        assert!(pid > 1, "the container's pid: {pid}");
        let started = start_time(pid).expect("the container's init runs");
        let shim_exe = prefix.join("bin/berth-shim");
        let shim_id = file_id(&shim_exe).expect("berth-shim is installed");
        let shims = pids_of_exe(shim_id);
        assert!(!shims.is_empty(), "no process runs {}", shim_exe.display());
        let unit_cgroup = show("ControlGroup");
        for p in shims.iter().chain([&pid]) {
            let cg = cgroup_of(*p);
            assert!(
                !cg.is_empty() && !cg.starts_with(&unit_cgroup),
                "process {p} is in berthd.service's cgroup ({unit_cgroup}): {cg}"
            );
        }
        assert_eq!(
            procs_under(
                Path::new("/sys/fs/cgroup")
                    .join(unit_cgroup.trim_start_matches('/'))
                    .as_path()
            ),
            vec![first]
        );

        // Restart as installed (KillMode=process), then as systemd's default would
        // (KillMode=control-group: every process in the unit's cgroup is killed).
        let mut previous = first;
        for kill_mode in ["process", "control-group"] {
            if kill_mode != "process" {
                std::fs::create_dir_all(DROP_IN_DIR).expect("mkdir the drop-in dir");
                std::fs::write(
                    Path::new(DROP_IN_DIR).join("50-e2e-kill-mode.conf"),
                    format!("[Service]\nKillMode={kill_mode}\n"),
                )
                .expect("writing a drop-in");
                run_ok("systemctl", &["daemon-reload"]);
            }
            assert_eq!(show("KillMode"), kill_mode);
            run_ok("systemctl", &["restart", UNIT]);
            let now = assert_started(&node, &prefix).await;
            assert_ne!(now, previous, "systemctl restart ran a new berthd");
            wait_gone(previous, "the berthd before the restart").await;
            assert_eq!(
                start_time(pid),
                Some(started),
                "the container's init (pid {pid}) did not survive `systemctl restart` with \
                 KillMode={kill_mode}"
            );
            assert_eq!(
                container_pid_and_state(&node, &id).await,
                (pid, ContainerState::ContainerRunning as i32),
                "the new berthd reports the container RUNNING with the same pid \
                 (KillMode={kill_mode})"
            );
            assert_eq!(
                pids_of_exe(shim_id),
                shims,
                "the shims outlived the restart"
            );
            previous = now;
        }
        std::fs::remove_dir_all(DROP_IN_DIR).expect("removing the drop-in");
        run_ok("systemctl", &["daemon-reload"]);

        // Remove everything, then uninstall.
        let mut rt = node.runtime().await;
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
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("StopPodSandbox");
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("RemovePodSandbox");
        drop(rt);
        wait_gone(pid, "the container").await;
        installed.uninstall();
        wait_gone(previous, "berthd after make uninstall").await;
        for b in ["berthd", "berth", "berth-shim"] {
            let p = prefix.join("bin").join(b);
            assert!(!p.exists(), "make uninstall left {}", p.display());
        }
        assert!(
            !Path::new(UNIT_FILE).exists(),
            "make uninstall left the unit"
        );
        assert!(
            !Path::new("/etc/systemd/system/multi-user.target.wants/berthd.service").exists(),
            "make uninstall left the unit enabled"
        );
        assert_eq!(show("LoadState"), "not-found", "systemd still knows berthd");
        let unit_dir = Path::new("/sys/fs/cgroup").join(unit_cgroup.trim_start_matches('/'));
        assert!(!unit_dir.exists(), "{} is left", unit_dir.display());
        for h in [PathBuf::from("/sys/fs/cgroup")]
            .into_iter()
            .chain(dir_entries(Path::new("/sys/fs/cgroup")))
        {
            let d = h.join("berth-shims");
            assert!(!d.exists(), "{} is left", d.display());
        }
        let ids: HashSet<String> = [id.clone(), pod.clone()].into_iter().collect();
        let leaks = leaks(&node, &net, &ids, &SLEEP).await;
        assert!(leaks.is_empty(), "left behind: {leaks:?}");
        assert!(
            pids_of_exe(shim_id).is_empty(),
            "a shim outlived its container"
        );
        assert_eq!(
            dir_entries(Path::new("/run/netns")),
            netns_before,
            "a network namespace is left"
        );
    });
}
