//! The real `berth-shim` binary against a busybox rootfs, driven over its socket with the
//! generated client. Needs root (skipped otherwise) and /bin/busybox (Debian's busybox-static).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_proto::v1::shim_client::ShimClient;
use berth_proto::v1::{
    KillRequest, ReopenLogRequest, ShutdownRequest, StartRequest, StateRequest, StateResponse,
    Status as ContainerStatus, WaitRequest,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint, Uri};

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];
const WAIT: Duration = Duration::from_secs(20);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root() && Path::new("/bin/busybox").exists()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root and /bin/busybox");
            return;
        }
    };
}

/// One container's files: bundle (config.json + rootfs), state dir, log, exit file.
struct Bed {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    id: String,
    /// (shim pid, init pid) once spawned, for cleanup when a test fails half-way.
    pids: std::cell::Cell<Option<(i32, i32)>>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Not shut down cleanly (a failed assertion): kill what the test started, by pid.
        if let (Some(_), Some((shim, init))) = (&self.dir, self.pids.get()) {
            for pid in [init, shim] {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Bed {
    fn new(name: &str) -> Bed {
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-shim-{name}-"))
            .tempdir_in("/var/tmp")
            .unwrap();
        let root = dir.path().to_path_buf();
        let bed = Bed {
            dir: Some(dir),
            root,
            id: name.to_string(),
            pids: std::cell::Cell::new(None),
        };
        bed.build_rootfs();
        bed
    }

    fn bundle(&self) -> PathBuf {
        self.root.join("bundle")
    }
    fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }
    fn socket(&self) -> PathBuf {
        self.root.join("state/shim.sock")
    }
    fn log(&self) -> PathBuf {
        self.root.join("logs/c/0.log")
    }
    fn exit_file(&self) -> PathBuf {
        self.root.join("state/exit")
    }

    fn build_rootfs(&self) {
        let r = self.rootfs();
        for d in [
            "bin",
            "etc",
            "proc",
            "sys",
            "dev",
            "tmp",
            "root",
            "home/user",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            if applet != "busybox" {
                let _ = symlink("busybox", r.join("bin").join(applet));
            }
        }
        std::fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            r.join("etc/group"),
            "root:x:0:\nwheel:x:10:user\nuser:x:1000:\n",
        )
        .unwrap();
    }

    fn write_spec(&self, spec: &Value) {
        std::fs::write(
            self.bundle().join("config.json"),
            serde_json::to_vec_pretty(spec).unwrap(),
        )
        .unwrap();
    }

    /// Run the shim as berthd does; returns the handshake line and the first process's status.
    fn spawn(&self) -> (String, i32) {
        self.spawn_with(Stdio::null(), &[])
    }

    /// As `spawn`, with `stderr` as berthd's stderr and `extra` flags.
    fn spawn_with(&self, stderr: Stdio, extra: &[&str]) -> (String, i32) {
        // BERTH_SHIM_BIN: measure another build (the release binary) with the same tests.
        let bin = std::env::var_os("BERTH_SHIM_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth-shim")));
        let mut child = Command::new(bin)
            .arg("--id")
            .arg(&self.id)
            .arg("--bundle")
            .arg(self.bundle())
            .arg("--socket")
            .arg(self.socket())
            .arg("--log")
            .arg(self.log())
            .arg("--exit-file")
            .arg(self.exit_file())
            .arg("--shim-log")
            .arg(self.root.join("shim.log"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let status = child.wait().unwrap();
        // The handshake pipe reaches EOF only when the detached shim closes it.
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
            let _ = tx.send(out);
        });
        let out = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("no handshake EOF within 30s");
        (out, status.code().unwrap_or(-1))
    }

    /// Spawn and expect `ok <pid>`.
    fn spawn_ok(&self) -> u32 {
        let (line, code) = self.spawn();
        assert_eq!(code, 0, "first process exit status (handshake {line:?})");
        assert!(
            line.ends_with('\n') && line.lines().count() == 1,
            "{line:?}"
        );
        let pid = line
            .strip_prefix("ok ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("handshake {line:?}; shim.log: {}", self.shim_log()));
        let sock = std::os::unix::net::UnixStream::connect(self.socket()).unwrap();
        let cred = nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::PeerCredentials)
            .unwrap();
        self.pids.set(Some((cred.pid(), pid as i32)));
        pid
    }

    fn shim_log(&self) -> String {
        std::fs::read_to_string(self.root.join("shim.log")).unwrap_or_default()
    }

    async fn client(&self) -> ShimClient<Channel> {
        let path = self.socket();
        let channel = Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .unwrap();
        ShimClient::new(channel)
    }

    /// The shim's pid, from the peer credentials of its socket.
    async fn shim_pid(&self) -> i32 {
        let s = tokio::net::UnixStream::connect(self.socket())
            .await
            .unwrap();
        s.peer_cred().unwrap().pid().unwrap()
    }

    /// Parsed log records: (stream, tag, content), each line checked against the CRI format.
    fn records(&self) -> Vec<(String, String, String)> {
        records_of(&self.log())
    }

    /// Shutdown, then check that nothing is left: shim, socket, mounts.
    async fn shutdown(mut self, client: &mut ShimClient<Channel>) {
        let shim = self.shim_pid().await;
        assert_ne!(
            parent_of(shim),
            Some(std::process::id() as i32),
            "the shim is detached"
        );
        client
            .shutdown(ShutdownRequest { force: true })
            .await
            .unwrap();
        gone(shim).await;
        if let Some((_, init)) = self.pids.get() {
            assert!(!alive(init), "container init {init} left behind");
        }
        assert!(!self.socket().exists(), "socket removed");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.root.to_string_lossy().to_string();
        assert!(
            !mounts.contains(&root),
            "mounts left under {root}:\n{mounts}"
        );
        if let Some(dir) = self.dir.take() {
            dir.close().unwrap();
        }
    }
}

fn records_of(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let ts = parts.next().unwrap();
            let b = ts.as_bytes();
            assert_eq!(b.len(), 30, "timestamp {ts:?}");
            assert_eq!(&ts[4..5], "-");
            assert_eq!(&ts[10..11], "T");
            assert_eq!(&ts[19..20], ".");
            assert!(ts[20..29].bytes().all(|c| c.is_ascii_digit()), "{ts}");
            assert!(ts.ends_with('Z'));
            let stream = parts.next().unwrap().to_string();
            assert!(stream == "stdout" || stream == "stderr", "{line}");
            let tag = parts.next().unwrap().to_string();
            assert!(tag == "F" || tag == "P", "{line}");
            (stream, tag, parts.next().unwrap().to_string())
        })
        .collect()
}

fn rec(stream: &str, tag: &str, content: &str) -> (String, String, String) {
    (stream.to_string(), tag.to_string(), content.to_string())
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Running (or stopped), not exited. An exited shim is reparented to PID 1, which may take a
/// while to reap it: a zombie counts as gone.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .next();
    state != Some("Z") && state != Some("X")
}

async fn gone(pid: i32) {
    for _ in 0..200 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("process {pid} is still there");
}

/// A containerd-like spec: standard mounts, masked/readonly paths, new mount/pid/uts/ipc
/// namespaces, the host network.
fn spec(args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "berth-test",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [PATH_ENV, "HOME=/root"],
            "cwd": "/",
            "capabilities": {
                "bounding": DEFAULT_CAPS,
                "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS
            },
            "noNewPrivileges": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "oomScoreAdj": -998
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            "sysctl": {"kernel.shm_rmid_forced": "1"}
        }
    })
}

async fn state(client: &mut ShimClient<Channel>) -> StateResponse {
    client.state(StateRequest {}).await.unwrap().into_inner()
}

async fn wait(client: &mut ShimClient<Channel>) -> StateResponse {
    tokio::time::timeout(WAIT, client.wait(WaitRequest {}))
        .await
        .expect("Wait timed out")
        .unwrap()
        .into_inner()
}

fn exit_file(bed: &Bed) -> Value {
    serde_json::from_slice(&std::fs::read(bed.exit_file()).unwrap()).unwrap()
}

#[tokio::test]
async fn runs_a_command_to_its_exit_code_and_logs_both_streams() {
    require_root!();
    let bed = Bed::new("exit7");
    bed.write_spec(&spec(&["sh", "-c", "echo hello; echo err >&2; exit 7"]));
    let pid = bed.spawn_ok();
    let mut c = bed.client().await;

    let s = state(&mut c).await;
    assert_eq!(s.status, ContainerStatus::Created as i32);
    assert_eq!(s.pid, pid);
    assert_eq!(s.id, "exit7");
    assert!(s.created_at > 0 && s.started_at == 0);
    assert!(alive(pid as i32));

    let started = c.start(StartRequest {}).await.unwrap().into_inner();
    assert_eq!(started.pid, pid);
    let s = wait(&mut c).await;
    assert_eq!(s.status, ContainerStatus::Stopped as i32);
    assert_eq!(s.exit_code, 7);
    assert_eq!(s.pid, 0);
    assert!(s.started_at >= s.created_at && s.finished_at >= s.started_at);
    assert!(s.message.is_empty());

    let mut recs = bed.records();
    recs.sort();
    assert_eq!(
        recs,
        vec![rec("stderr", "F", "err"), rec("stdout", "F", "hello")]
    );
    let exit = exit_file(&bed);
    assert_eq!(exit["exit_code"], 7);
    assert_eq!(exit["finished_at"], s.finished_at);
    assert_eq!(exit["oom_killed"], false);

    // Still serving after the exit; a second Start is refused.
    assert_eq!(state(&mut c).await.status, ContainerStatus::Stopped as i32);
    let err = c.start(StartRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let err = c
        .kill(KillRequest {
            signal: 9,
            all: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // The oomScoreAdj this host refuses was clamped and logged, not fatal.
    assert!(
        bed.shim_log().contains("oom_score_adj -998"),
        "{}",
        bed.shim_log()
    );
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn splits_long_lines_and_keeps_a_trailing_partial() {
    require_root!();
    let bed = Bed::new("long");
    bed.write_spec(&spec(&[
        "sh",
        "-c",
        "head -c 20000 /dev/zero | tr '\\0' a; echo; echo; printf tail",
    ]));
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    assert_eq!(wait(&mut c).await.exit_code, 0);
    let recs = bed.records();
    assert_eq!(
        recs.len(),
        4,
        "{:?}",
        recs.iter().map(|r| (&r.1, r.2.len())).collect::<Vec<_>>()
    );
    assert_eq!(recs[0], rec("stdout", "P", &"a".repeat(16384)));
    assert_eq!(recs[1], rec("stdout", "F", &"a".repeat(20000 - 16384)));
    assert_eq!(recs[2], rec("stdout", "F", ""));
    // As containerd: an unterminated line at EOF is a partial record.
    assert_eq!(recs[3], rec("stdout", "P", "tail"));
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn kill_reports_signal_exit_codes() {
    require_root!();
    // Host PID namespace: `sleep` is not a namespace init, so SIGTERM's default action applies.
    let bed = Bed::new("sigterm");
    let mut s = spec(&["sleep", "100"]);
    s["linux"]["namespaces"] = json!([{"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
    bed.write_spec(&s);
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    assert_eq!(state(&mut c).await.status, ContainerStatus::Running as i32);
    let err = c
        .shutdown(ShutdownRequest { force: false })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    c.kill(KillRequest {
        signal: 15,
        all: false,
    })
    .await
    .unwrap();
    let st = wait(&mut c).await;
    assert_eq!(st.exit_code, 143);
    assert_eq!(exit_file(&bed)["exit_code"], 143);
    bed.shutdown(&mut c).await;

    // Own PID namespace: SIGKILL.
    let bed = Bed::new("sigkill");
    bed.write_spec(&spec(&["sleep", "100"]));
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    c.kill(KillRequest {
        signal: 9,
        all: false,
    })
    .await
    .unwrap();
    assert_eq!(wait(&mut c).await.exit_code, 137);
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn kill_all_reaches_every_process() {
    require_root!();
    // Shared (host) PID namespace: the init's descendants are found through /proc.
    let bed = Bed::new("killall");
    let mut s = spec(&["sh", "-c", "sleep 100 & echo $!; sleep 100"]);
    s["linux"]["namespaces"] = json!([{"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
    bed.write_spec(&s);
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    let mut bg = None;
    for _ in 0..200 {
        if let Some(r) = bed.records().first() {
            bg = r.2.parse::<i32>().ok();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let bg = bg.expect("background pid logged");
    assert!(alive(bg));
    c.kill(KillRequest {
        signal: 9,
        all: true,
    })
    .await
    .unwrap();
    assert_eq!(wait(&mut c).await.exit_code, 137);
    // The orphaned background sleep was killed and reaped by the shim (a subreaper): not even
    // a zombie is left.
    for _ in 0..200 {
        if !Path::new(&format!("/proc/{bg}")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !Path::new(&format!("/proc/{bg}")).exists(),
        "{bg} not reaped"
    );
    bed.shutdown(&mut c).await;

    // Own PID namespace: every process in it, although the init ignores SIGTERM.
    let bed = Bed::new("killallns");
    bed.write_spec(&spec(&[
        "sh",
        "-c",
        "sleep 100 & sleep 100 & wait; echo done",
    ]));
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.kill(KillRequest {
        signal: 15,
        all: true,
    })
    .await
    .unwrap();
    let st = wait(&mut c).await;
    assert_eq!(st.exit_code, 0);
    assert_eq!(bed.records(), vec![rec("stdout", "F", "done")]);
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn a_missing_executable_stops_with_127_and_a_message() {
    require_root!();
    let bed = Bed::new("noexec");
    bed.write_spec(&spec(&["no-such-command", "x"]));
    bed.spawn_ok();
    let mut c = bed.client().await;
    let err = c.start(StartRequest {}).await.unwrap_err();
    // The request's command cannot run: the request's to fix (as at create).
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("executable file not found in $PATH"),
        "{}",
        err.message()
    );
    let s = wait(&mut c).await;
    assert_eq!(s.status, ContainerStatus::Stopped as i32);
    assert_eq!(s.exit_code, 127);
    assert_eq!(
        s.message,
        "exec: \"no-such-command\": executable file not found in $PATH"
    );
    assert_eq!(exit_file(&bed)["exit_code"], 127);
    assert!(bed.records().is_empty());
    bed.shutdown(&mut c).await;

    // A path that is not executable: 126.
    let bed = Bed::new("noperm");
    bed.write_spec(&spec(&["/etc/passwd"]));
    bed.spawn_ok();
    let mut c = bed.client().await;
    let err = c.start(StartRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("permission denied"),
        "{}",
        err.message()
    );
    assert_eq!(wait(&mut c).await.exit_code, 126);
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn isolates_the_container() {
    require_root!();
    let bed = Bed::new("isolation");
    let mut s = spec(&[
        "sh",
        "-c",
        "hostname; echo $$; for f in /proc/kcore /proc/version; do [ -e $f ] && wc -c < $f; done; \
         ls -A /proc/acpi | wc -l; grep CapEff /proc/self/status; \
         cat /proc/sys/kernel/shm_rmid_forced; ls /dev/null /dev/zero /dev/urandom /dev/tty; \
         readlink /dev/ptmx; echo x > /proc/sys/kernel/shm_rmid_forced || echo sysro; \
         touch /newfile || echo rootro; ulimit -n",
    ]);
    s["root"]["readonly"] = json!(true);
    // This kernel may lack /proc/kcore: mask a file and a directory that exist too.
    let masked = s["linux"]["maskedPaths"].as_array_mut().unwrap();
    masked.push(json!("/proc/version"));
    assert!(
        Path::new("/proc/acpi").is_dir(),
        "the test expects /proc/acpi"
    );
    bed.write_spec(&s);
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    assert_eq!(wait(&mut c).await.exit_code, 0);
    let out: Vec<String> = bed
        .records()
        .into_iter()
        .filter(|r| r.0 == "stdout")
        .map(|r| r.2)
        .collect();
    let mut expected = vec!["berth-test", "1"];
    if Path::new("/proc/kcore").exists() {
        expected.push("0"); // /proc/kcore
    }
    expected.extend([
        "0", // /proc/version
        "0", // entries in /proc/acpi
        "CapEff:\t00000000a80425fb",
        "1",
        "/dev/null",
        "/dev/tty",
        "/dev/urandom",
        "/dev/zero",
        "pts/ptmx",
        "sysro",
        "rootro",
        "1024",
    ]);
    assert_eq!(out, expected);
    let errs: Vec<String> = bed
        .records()
        .into_iter()
        .filter(|r| r.0 == "stderr")
        .map(|r| r.2)
        .collect();
    assert!(
        errs.iter().any(|e| e.contains("Read-only file system")),
        "{errs:?}"
    );
    assert!(!bed.rootfs().join("newfile").exists());
    let host = nix::unistd::gethostname().unwrap();
    assert_ne!(host.to_string_lossy(), "berth-test");
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn runs_as_the_spec_user_without_capabilities() {
    require_root!();
    let bed = Bed::new("user");
    let mut s = spec(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/self/status; \
         grep NoNewPrivs /proc/self/status; pwd; umask",
    ]);
    s["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10], "umask": 23});
    s["process"]["capabilities"] = json!({});
    s["process"]["cwd"] = json!("/home/user/work");
    bed.write_spec(&s);
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    assert_eq!(wait(&mut c).await.exit_code, 0);
    let out: Vec<String> = bed.records().into_iter().map(|r| r.2).collect();
    assert_eq!(
        out,
        vec![
            "1000",
            "1000",
            "1000 10",
            "CapPrm:\t0000000000000000",
            "CapEff:\t0000000000000000",
            "CapBnd:\t0000000000000000",
            "CapAmb:\t0000000000000000",
            "NoNewPrivs:\t1",
            "/home/user/work",
            "0027",
        ]
    );
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn tty_output_is_logged_as_stdout() {
    require_root!();
    let bed = Bed::new("tty");
    let mut s = spec(&["sh", "-c", "tty; echo out; echo err >&2; stty size"]);
    s["process"]["terminal"] = json!(true);
    s["process"]["consoleSize"] = json!({"height": 40, "width": 120});
    bed.write_spec(&s);
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    assert_eq!(wait(&mut c).await.exit_code, 0);
    assert_eq!(
        bed.records(),
        vec![
            rec("stdout", "F", "/dev/pts/0"),
            rec("stdout", "F", "out"),
            rec("stdout", "F", "err"),
            rec("stdout", "F", "40 120"),
        ]
    );
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn reopen_log_after_rotation() {
    require_root!();
    let bed = Bed::new("rotate");
    bed.write_spec(&spec(&[
        "sh",
        "-c",
        "echo one; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo two",
    ]));
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    for _ in 0..200 {
        if !bed.records().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let rotated = bed.log().with_extension("log.1");
    std::fs::rename(bed.log(), &rotated).unwrap();
    c.reopen_log(ReopenLogRequest {}).await.unwrap();
    std::fs::write(bed.rootfs().join("tmp/go"), "").unwrap();
    assert_eq!(wait(&mut c).await.exit_code, 0);
    assert_eq!(records_of(&rotated), vec![rec("stdout", "F", "one")]);
    assert_eq!(bed.records(), vec![rec("stdout", "F", "two")]);
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn its_own_log_waits_for_a_full_stderr_without_blocking() {
    require_root!();
    let bed = Bed::new("stderr");
    bed.write_spec(&spec(&["sh", "-c", "exit 3"]));
    // berthd's stderr: a pipe nobody reads, full before the shim starts. The pipe stays
    // blocking (it is filled through an open file of its own).
    let (r, w) = nix::unistd::pipe().unwrap();
    let filler = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", w.as_raw_fd()))
        .unwrap();
    let mut filled = 0usize;
    loop {
        match (&filler).write(&[b'f'; 4096]) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    drop(filler);
    // A shim writing to it as it is would hang before its handshake.
    let (line, code) = bed.spawn_with(Stdio::from(w), &["--log-format", "json"]);
    assert_eq!(code, 0);
    let pid: u32 = line
        .strip_prefix("ok ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("handshake {line:?}; shim.log: {}", bed.shim_log()));
    let sock = std::os::unix::net::UnixStream::connect(bed.socket()).unwrap();
    let cred =
        nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::PeerCredentials).unwrap();
    drop(sock);
    bed.pids.set(Some((cred.pid(), pid as i32)));
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    assert_eq!(wait(&mut c).await.exit_code, 3);
    // The reader comes back: the filler first (the shim's lines waited in its buffer: the
    // pipe had no room), then, from the shim's next line on (its exit), every line kept; EOF
    // once the shim has exited.
    let mut r = std::fs::File::from(r);
    let mut head = vec![0u8; filled];
    std::io::Read::read_exact(&mut r, &mut head).unwrap();
    assert!(head.iter().all(|b| *b == b'f'));
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut rest).unwrap();
        String::from_utf8(rest).unwrap()
    });
    bed.shutdown(&mut c).await;
    let rest = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    let lines: Vec<Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for l in &lines {
        assert_eq!(l["span"]["container"], "stderr", "{l}");
    }
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(messages.contains(&"container created"), "{rest}");
    assert!(messages.contains(&"shim exiting"), "{rest}");
}

#[tokio::test]
async fn keeps_no_descriptor_its_parent_inherited() {
    require_root!();
    let bed = Bed::new("fds");
    bed.write_spec(&spec(&["sleep", "30"]));
    // A pipe without CLOEXEC, as flock(1) or a shell leaves to berthd: the shim inherits it.
    let (r, w) = nix::unistd::pipe().unwrap();
    let pipe = std::fs::read_link(format!("/proc/self/fd/{}", r.as_raw_fd())).unwrap();
    let init = bed.spawn_ok();
    let (shim, _) = bed.pids.get().unwrap();
    for pid in [shim, init as i32] {
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
            let entry = entry.unwrap();
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            assert_ne!(
                target,
                pipe,
                "process {pid} holds the inherited {} as fd {:?}",
                pipe.display(),
                entry.file_name()
            );
        }
    }
    drop((r, w));
    let mut c = bed.client().await;
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn shutdown_force_kills_a_created_container() {
    require_root!();
    let bed = Bed::new("created");
    bed.write_spec(&spec(&["sleep", "100"]));
    let pid = bed.spawn_ok() as i32;
    let mut c = bed.client().await;
    let err = c
        .shutdown(ShutdownRequest { force: false })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(alive(pid));
    bed.shutdown(&mut c).await;
    assert!(!alive(pid));
}

#[tokio::test]
async fn create_errors_come_back_in_the_handshake() {
    require_root!();
    // Refused before daemonizing: the first process reports and exits non-zero.
    let bed = Bed::new("userns");
    let mut s = spec(&["true"]);
    s["linux"]["namespaces"] = json!([{"type": "user"}, {"type": "mount"}]);
    bed.write_spec(&s);
    let (line, code) = bed.spawn();
    assert_eq!(
        line,
        "error not supported: a user namespace must be given by path (berthd pins the pod's)\n"
    );
    assert_ne!(code, 0);
    assert!(!bed.socket().exists());

    // Failing inside the init: the detached shim reports, cleans up and exits.
    let bed = Bed::new("badmount");
    let mut s = spec(&["true"]);
    s["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/data", "type": "bind", "source": "/nonexistent/berth", "options": ["rbind", "ro"]}));
    bed.write_spec(&s);
    let (line, code) = bed.spawn();
    assert_eq!(code, 0, "the first process exits 0 once it has forked");
    assert!(
        line.starts_with("error bind mount source /nonexistent/berth") && line.ends_with('\n'),
        "{line:?}"
    );
    for _ in 0..200 {
        if !bed.socket().exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !bed.socket().exists(),
        "socket removed after a failed create"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*bed.root.to_string_lossy()));
}

#[tokio::test]
async fn bind_mounts_and_devices() {
    require_root!();
    let bed = Bed::new("binds");
    let data = bed.root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("file"), "hi\n").unwrap();
    let mut s = spec(&[
        "sh",
        "-c",
        "cat /ro/file; touch /ro/x || echo ro; touch /rw/y && echo rw; cat /etc/one; \
         stat -c '%F %t,%T %a %u' /dev/mydev; echo hi > /dev/mydev && echo devok",
    ]);
    s["linux"]["devices"] = json!([{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3,
        "fileMode": 0o620, "uid": 1000, "gid": 0}]);
    let mounts = s["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/ro", "type": "bind", "source": data, "options": ["rbind", "ro", "rprivate"]}));
    mounts.push(json!({"destination": "/rw", "type": "bind", "source": data, "options": ["bind"]}));
    mounts.push(json!({"destination": "/etc/one", "type": "bind", "source": data.join("file"), "options": ["bind", "ro"]}));
    bed.write_spec(&s);
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    assert_eq!(wait(&mut c).await.exit_code, 0);
    let out: Vec<String> = bed
        .records()
        .into_iter()
        .filter(|r| r.0 == "stdout")
        .map(|r| r.2)
        .collect();
    assert_eq!(
        out,
        vec![
            "hi",
            "ro",
            "rw",
            "hi",
            "character special file 1,3 620 1000",
            "devok"
        ]
    );
    assert!(data.join("y").exists());
    bed.shutdown(&mut c).await;
}

#[tokio::test]
async fn joins_namespaces_by_path() {
    require_root!();
    // A "pod": the first container owns a PID namespace; the second joins it by path, and
    // joins this test's (the host's) network, IPC and UTS namespaces by path (so its hostname
    // is left alone).
    let first = Bed::new("podinit");
    first.write_spec(&spec(&["sleep", "100"]));
    let first_pid = first.spawn_ok();
    let mut c1 = first.client().await;
    c1.start(StartRequest {}).await.unwrap();

    let second = Bed::new("podmember");
    let me = std::process::id();
    let mut s = spec(&[
        "sh",
        "-c",
        "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo",
    ]);
    s["linux"]["namespaces"] = json!([
        {"type": "pid", "path": format!("/proc/{first_pid}/ns/pid")},
        {"type": "network", "path": format!("/proc/{me}/ns/net")},
        {"type": "ipc", "path": format!("/proc/{me}/ns/ipc")},
        {"type": "uts", "path": format!("/proc/{me}/ns/uts")},
        {"type": "mount"}
    ]);
    s["linux"]["sysctl"] = json!({});
    second.write_spec(&s);
    second.spawn_ok();
    let mut c2 = second.client().await;
    c2.start(StartRequest {}).await.unwrap();
    assert_eq!(wait(&mut c2).await.exit_code, 0);
    let out: Vec<String> = second.records().into_iter().map(|r| r.2).collect();
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(out[0], host.to_string_lossy());
    assert_ne!(
        out[1], "1",
        "the second container is not the namespace's init"
    );
    assert_eq!(out[2], "sleep 100 ");
    second.shutdown(&mut c2).await;
    // The first container is untouched.
    assert_eq!(state(&mut c1).await.status, ContainerStatus::Running as i32);
    first.shutdown(&mut c1).await;
}

/// `kB` value of `field` in a /proc status-like file.
fn kb(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Memory of an idle shim serving a running container (run with --ignored --nocapture; set
/// BERTH_SHIM_BIN=target/release/berth-shim for the release figures).
#[tokio::test]
#[ignore]
async fn idle_shim_memory() {
    require_root!();
    let bed = Bed::new("rss");
    bed.write_spec(&spec(&["sleep", "100"]));
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    for _ in 0..20 {
        state(&mut c).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shim = bed.shim_pid().await;
    let status = std::fs::read_to_string(format!("/proc/{shim}/status")).unwrap();
    let rollup = std::fs::read_to_string(format!("/proc/{shim}/smaps_rollup")).unwrap();
    let threads = kb(&status, "Threads:");
    let (rss, pss) = (kb(&status, "VmRSS:"), kb(&rollup, "Pss:"));
    let (anon, file) = (kb(&status, "RssAnon:"), kb(&status, "RssFile:"));
    println!(
        "idle shim {shim}: VmRSS {rss} kB (anon {anon} kB, file {file} kB), Pss {pss} kB, threads {threads}"
    );
    assert_eq!(threads, 1, "the shim stays single-threaded");
    bed.shutdown(&mut c).await;
}

/// A cgroup path of this test's own, `/berth-test-<unique>/<leaf>`: its parent is removed from
/// every hierarchy on drop (after the Bed, when declared first), whatever the test left.
struct TestCgroup {
    parent: String,
    path: String,
}

impl TestCgroup {
    fn new(leaf: &str) -> TestCgroup {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let parent = format!("/berth-test-{}-{nanos}", std::process::id());
        TestCgroup {
            path: format!("{parent}/{leaf}"),
            parent,
        }
    }

    /// cgroup v2 only at /sys/fs/cgroup (else v1 hierarchies, maybe with `unified/`).
    fn unified() -> bool {
        Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    }

    /// Every hierarchy root: /sys/fs/cgroup itself on v2, its mounted subdirectories on v1.
    fn roots() -> Vec<PathBuf> {
        if Self::unified() {
            return vec![PathBuf::from("/sys/fs/cgroup")];
        }
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    }

    /// The container's directory under the hierarchy root `root` (e.g. "memory").
    fn dir(&self, root: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(root)
            .join(self.path.trim_start_matches('/'))
    }

    /// The container's directories that exist.
    fn existing(&self) -> Vec<PathBuf> {
        Self::roots()
            .into_iter()
            .map(|r| r.join(self.path.trim_start_matches('/')))
            .filter(|d| d.exists())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for root in Self::roots() {
            for p in [&self.path, &self.parent] {
                let dir = root.join(p.trim_start_matches('/'));
                for _ in 0..100 {
                    match std::fs::remove_dir(&dir) {
                        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        _ => break,
                    }
                }
            }
        }
    }
}

/// The device rules berthd writes: deny all, allow the usual character devices.
fn device_rules() -> Value {
    json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        {"allow": true, "type": "c", "access": "m"},
        {"allow": true, "type": "b", "access": "m"}
    ])
}

fn cgroup_file(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

#[tokio::test]
async fn cgroup_limits_membership_and_removal() {
    require_root!();
    let cg = TestCgroup::new("limits");
    let bed = Bed::new("limits");
    let mut s = spec(&["sh", "-c", "cat /proc/self/cgroup; exec sleep 100"]);
    s["linux"]["cgroupsPath"] = json!(cg.path);
    s["linux"]["resources"] = json!({
        "devices": device_rules(),
        "memory": {"limit": 32 << 20},
        "cpu": {"shares": 512},
        "pids": {"limit": 64}
    });
    bed.write_spec(&s);
    let pid = bed.spawn_ok();
    let (memory, cpu) = if TestCgroup::unified() {
        (cg.dir(""), cg.dir(""))
    } else {
        (cg.dir("memory"), cg.dir("cpu"))
    };
    // CREATED: the init is in its cgroup before it runs anything of the container.
    let procs = cgroup_file(&memory, "cgroup.procs");
    assert_eq!(procs.lines().collect::<Vec<_>>(), vec![pid.to_string()]);
    for dir in cg.existing() {
        assert!(
            cgroup_file(&dir, "cgroup.procs").contains(&pid.to_string()),
            "{} has the init",
            dir.display()
        );
    }

    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    if TestCgroup::unified() {
        assert_eq!(cgroup_file(&memory, "memory.max").trim(), "33554432");
        assert_eq!(cgroup_file(&cpu, "cpu.weight").trim(), "20");
        assert_eq!(cgroup_file(&memory, "pids.max").trim(), "64");
    } else {
        assert_eq!(
            cgroup_file(&memory, "memory.limit_in_bytes").trim(),
            "33554432"
        );
        assert_eq!(cgroup_file(&cpu, "cpu.shares").trim(), "512");
        assert_eq!(cgroup_file(&cg.dir("pids"), "pids.max").trim(), "64");
        let devices = cgroup_file(&cg.dir("devices"), "devices.list");
        assert!(devices.contains("c 1:3 rwm"), "{devices}");
        assert!(devices.contains("c 136:* rwm"), "{devices}");
        assert!(!devices.contains("a *:* rwm"), "{devices}");
    }
    assert!(cgroup_file(&cpu, "cgroup.procs").contains(&pid.to_string()));
    // The container sees itself in its cgroup (no cgroup namespace here).
    let mut seen = String::new();
    for _ in 0..200 {
        seen = bed.records().into_iter().map(|r| r.2 + "\n").collect();
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen.contains(&cg.path), "{seen}");
    assert_eq!(state(&mut c).await.status, ContainerStatus::Running as i32);

    let dirs = cg.existing();
    if !TestCgroup::unified() {
        // Every v1 hierarchy with a controller, and the v2 tree of a hybrid host.
        for root in ["memory", "cpu", "pids", "devices", "freezer"] {
            if Path::new("/sys/fs/cgroup").join(root).is_dir() {
                assert!(dirs.contains(&cg.dir(root)), "{root}: {dirs:?}");
            }
        }
        if Path::new("/sys/fs/cgroup/unified").is_dir() {
            let unified = cg.dir("unified");
            assert!(cgroup_file(&unified, "cgroup.procs").contains(&pid.to_string()));
        }
    }
    bed.shutdown(&mut c).await;
    let left = cg.existing();
    assert!(left.is_empty(), "cgroups left after Shutdown: {left:?}");
    // The parents are not the container's: they stay (the test removes them).
    for dir in dirs {
        assert!(dir.parent().unwrap().is_dir(), "{}", dir.display());
    }
}

#[tokio::test]
async fn an_oom_killed_container_is_reported() {
    require_root!();
    let cg = TestCgroup::new("oom");
    let bed = Bed::new("oom");
    // busybox tail keeps a line it never sees the end of: it grows until the OOM killer comes.
    let mut s = spec(&["tail", "/dev/zero"]);
    s["linux"]["cgroupsPath"] = json!(cg.path);
    s["linux"]["resources"] = json!({
        "devices": device_rules(),
        "memory": {"limit": 20 << 20, "swap": 20 << 20}
    });
    bed.write_spec(&s);
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    let s = wait(&mut c).await;
    assert_eq!(s.exit_code, 137, "{s:?}");
    assert!(s.oom_killed, "{s:?}");
    assert!(state(&mut c).await.oom_killed);
    let exit = exit_file(&bed);
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["oom_killed"], true);
    bed.shutdown(&mut c).await;
    assert!(cg.existing().is_empty(), "{:?}", cg.existing());
}

#[tokio::test]
async fn a_container_within_its_limits_is_not_oom_killed() {
    require_root!();
    let cg = TestCgroup::new("nooom");
    let bed = Bed::new("nooom");
    let mut s = spec(&["sleep", "100"]);
    s["linux"]["cgroupsPath"] = json!(cg.path);
    s["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}});
    bed.write_spec(&s);
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    c.kill(KillRequest {
        signal: 9,
        all: false,
    })
    .await
    .unwrap();
    let s = wait(&mut c).await;
    assert_eq!(s.exit_code, 137);
    assert!(!s.oom_killed, "a SIGKILL is not an OOM kill");
    assert_eq!(exit_file(&bed)["oom_killed"], false);
    bed.shutdown(&mut c).await;
    assert!(cg.existing().is_empty());
}

#[tokio::test]
async fn a_failed_create_removes_its_cgroup() {
    require_root!();
    // Refused when the limits are applied (the init is set up by then): memory + swap below
    // the memory limit.
    let cg = TestCgroup::new("badlimits");
    let bed = Bed::new("badlimits");
    let mut s = spec(&["true"]);
    s["linux"]["cgroupsPath"] = json!(cg.path);
    s["linux"]["resources"] = json!({"memory": {"limit": 64 << 20, "swap": 32 << 20}});
    bed.write_spec(&s);
    let (line, code) = bed.spawn();
    assert_eq!(code, 0);
    assert!(
        line.starts_with("error invalid spec: linux.resources.memory.swap")
            && line.contains("below the memory limit"),
        "{line:?}"
    );
    for _ in 0..200 {
        if !bed.socket().exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(cg.existing().is_empty(), "{:?}", cg.existing());

    // Failing inside the init, after it joined the cgroup.
    let cg = TestCgroup::new("badmount");
    let bed = Bed::new("badmount2");
    let mut s = spec(&["true"]);
    s["linux"]["cgroupsPath"] = json!(cg.path);
    s["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/data", "type": "bind", "source": "/nonexistent/berth", "options": ["rbind", "ro"]}));
    bed.write_spec(&s);
    let (line, _) = bed.spawn();
    assert!(line.starts_with("error bind mount source"), "{line:?}");
    for _ in 0..200 {
        if !bed.socket().exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(cg.existing().is_empty(), "{:?}", cg.existing());
}

/// berthd's RuntimeDefault profile (`src/container/spec/seccomp_default.json`, Docker's format)
/// resolved the way berthd resolves it for a container of this machine with `caps`: the
/// `includes`/`excludes` conditions evaluated, the architectures of the host's entry.
fn default_seccomp(caps: &[&str]) -> Value {
    let (goarch, arches) = if cfg!(target_arch = "aarch64") {
        ("arm64", vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
    } else {
        (
            "amd64",
            vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        )
    };
    let p: Value = serde_json::from_str(include_str!(
        "../../src/container/spec/seccomp_default.json"
    ))
    .unwrap();
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let mut syscalls = Vec::new();
    for s in p["syscalls"].as_array().unwrap() {
        let (inc, exc) = (&s["includes"], &s["excludes"]);
        let inc_arches = list(&inc["arches"]);
        if (!inc_arches.is_empty() && !inc_arches.iter().any(|a| a == goarch))
            || !list(&inc["caps"])
                .iter()
                .all(|c| caps.contains(&c.as_str()))
            || list(&exc["arches"]).iter().any(|a| a == goarch)
            || list(&exc["caps"])
                .iter()
                .any(|c| caps.contains(&c.as_str()))
        {
            continue;
        }
        // minKernel: this kernel is newer than any the profile names.
        let mut s = s.clone();
        for k in ["includes", "excludes", "comment"] {
            s.as_object_mut().unwrap().remove(k);
        }
        syscalls.push(s);
    }
    json!({
        "defaultAction": p["defaultAction"],
        "defaultErrnoRet": p["defaultErrnoRet"],
        "architectures": arches,
        "syscalls": syscalls,
    })
}

/// Run `script` in a container with `seccomp` (or none), as `uid` with these capabilities;
/// its stdout and stderr lines.
async fn run_with_seccomp(
    name: &str,
    seccomp: Option<Value>,
    (uid, caps): (u32, &[&str]),
    no_new_privs: bool,
    script: &str,
) -> (Vec<String>, Vec<String>) {
    let bed = Bed::new(name);
    std::fs::create_dir_all(bed.rootfs().join("mnt")).unwrap();
    let mut s = spec(&["sh", "-c", script]);
    s["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    s["process"]["noNewPrivileges"] = json!(no_new_privs);
    s["process"]["user"] = json!({"uid": uid, "gid": uid});
    if let Some(seccomp) = seccomp {
        s["linux"]["seccomp"] = seccomp;
    }
    bed.write_spec(&s);
    bed.spawn_ok();
    let mut c = bed.client().await;
    c.start(StartRequest {}).await.unwrap();
    let st = wait(&mut c).await;
    assert_eq!(st.exit_code, 0, "{st:?}: {:?}", bed.records());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for (stream, _, line) in bed.records() {
        if stream == "stdout" {
            &mut out
        } else {
            &mut err
        }
        .push(line);
    }
    bed.shutdown(&mut c).await;
    (out, err)
}

const SECCOMP_SCRIPT: &str = "grep Seccomp: /proc/self/status; \
     unshare -U true; echo unshare=$?; \
     mount -t tmpfs none /mnt; echo mount=$?; \
     echo hello; ls /bin/sh; cat /etc/group | head -n 1; true";

#[tokio::test]
async fn seccomp_default_profile_refuses_privileged_calls() {
    require_root!();
    // As kubelet runs most containers (allowPrivilegeEscalation: no_new_privs unset: the filter
    // is loaded while privileged, then the user and capabilities change under it), with
    // no_new_privs (loaded last), and as a user without capabilities.
    for (uid, caps, nnp) in [
        (0, &DEFAULT_CAPS[..], false),
        (0, &DEFAULT_CAPS[..], true),
        (1000, &[][..], false),
    ] {
        let (out, err) = run_with_seccomp(
            &format!("seccomp-default-{uid}-{nnp}"),
            Some(default_seccomp(caps)),
            (uid, caps),
            nnp,
            SECCOMP_SCRIPT,
        )
        .await;
        assert_eq!(
            out,
            vec![
                "Seccomp:\t2",
                "unshare=1",
                "mount=1",
                "hello",
                "/bin/sh",
                "root:x:0:"
            ],
            "uid {uid}, no_new_privs {nnp}; stderr {err:?}"
        );
        assert_eq!(
            err,
            vec![
                "unshare: unshare(0x10000000): Operation not permitted",
                "mount: permission denied (are you root?)"
            ]
        );
    }
}

#[tokio::test]
async fn seccomp_unconfined_and_capability_conditional_rules() {
    require_root!();
    // No linux.seccomp: mode 0, and root may create a user namespace.
    let (out, _) = run_with_seccomp(
        "seccomp-none",
        None,
        (0, &DEFAULT_CAPS),
        true,
        SECCOMP_SCRIPT,
    )
    .await;
    assert_eq!(out[..2], ["Seccomp:\t0", "unshare=0"]);
    // With CAP_SYS_ADMIN the default profile lets mount and unshare through.
    let mut caps = DEFAULT_CAPS.to_vec();
    caps.push("CAP_SYS_ADMIN");
    let (out, err) = run_with_seccomp(
        "seccomp-admin",
        Some(default_seccomp(&caps)),
        (0, &caps),
        false,
        SECCOMP_SCRIPT,
    )
    .await;
    assert_eq!(
        out[..3],
        ["Seccomp:\t2", "unshare=0", "mount=0"],
        "stderr {err:?}"
    );
}

#[tokio::test]
async fn seccomp_custom_errno_and_bad_profiles() {
    require_root!();
    // ERRNO with errnoRet: mkdir fails with ENOSPC (28), everything else is allowed.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}]
    });
    let (out, err) = run_with_seccomp(
        "seccomp-errno",
        Some(profile),
        (0, &DEFAULT_CAPS),
        true,
        "grep Seccomp: /proc/self/status; mkdir /tmp/d; echo mkdir=$?; touch /tmp/f && echo touched",
    )
    .await;
    assert_eq!(out, vec!["Seccomp:\t2", "mkdir=1", "touched"]);
    assert!(
        err.iter().any(|e| e.contains("No space left on device")),
        "{err:?}"
    );

    // A profile the executor cannot compile fails the creation, with the reason.
    let bed = Bed::new("seccomp-bad");
    let mut s = spec(&["true"]);
    s["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]});
    bed.write_spec(&s);
    let (line, _) = bed.spawn();
    assert!(
        line.starts_with("error invalid spec: linux.seccomp: syscalls[0]: argument index 7"),
        "{line:?}"
    );
    for _ in 0..200 {
        if !bed.socket().exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!bed.socket().exists());
}

#[test]
fn the_default_profile_compiles_to_a_small_filter() {
    for caps in [
        DEFAULT_CAPS.to_vec(),
        vec!["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"],
    ] {
        let profile: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(default_seccomp(&caps)).unwrap();
        let filter = berth_shim::executor::seccomp::Filter::compile(&profile).unwrap();
        let n = filter.program().len();
        println!("default profile with {caps:?}: {n} instructions");
        assert!(n < 1500, "{n}");
    }
}
