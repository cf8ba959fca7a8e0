//! Spawning a berth-shim for a container and talking to it over its socket.
//!
//! The shim daemonizes itself: berthd runs it with a pipe on stdout, reads the one-line
//! handshake (`ok <init-pid>` or `error <message>`) to EOF, and from then on reaches the shim
//! only through `<state>/shims/<id>/shim.sock`, so berthd can restart without touching it. The
//! command lines, handshake, paths and exit record are `berth_proto`'s, shared with the shim.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_proto::args::{LogFormat, PodInitArgs, ShimArgs, StdinMode};
use berth_proto::handshake::Handshake;
use berth_proto::paths::ShimPaths;
use berth_proto::v1::shim_client::ShimClient;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::Kind;

/// Errors talking to a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("starting berth-shim {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("the container could not be created: {0}")]
    Create(String),
    #[error("berth-shim handshake: {0}")]
    Handshake(String),
    #[error("connecting to the shim at {socket}: {reason}")]
    Connect {
        socket: String,
        reason: String,
        /// Nothing listens there any more (no socket, or refused): the shim is dead.
        gone: bool,
    },
    #[error("shim call failed: {0}")]
    Call(#[from] tonic::Status),
}

impl ShimError {
    /// A command that cannot run (no such executable, a bad user) is the client's to fix; a
    /// shim that does not answer in time is a deadline.
    pub fn kind(&self) -> Kind {
        match self {
            ShimError::Create(_) => Kind::InvalidArgument,
            ShimError::Call(s) if s.code() == tonic::Code::Cancelled => Kind::DeadlineExceeded,
            _ => Kind::Internal,
        }
    }

    /// Whether the shim is dead (rather than slow or stopped).
    pub fn is_gone(&self) -> bool {
        matches!(self, ShimError::Connect { gone: true, .. })
    }
}

/// How long berthd waits for a shim to answer one call (not a wait or an attach, which last as
/// long as the container): a stopped or wedged shim costs its own container's calls this much,
/// never anyone else's.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long berthd waits for a new shim's handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Read the handshake line: the init's pid, or why the shim could not create the container.
fn parse_handshake(out: &str) -> Result<u32, ShimError> {
    match Handshake::parse(out) {
        Ok(Handshake::Ok(pid)) => Ok(pid),
        Ok(Handshake::Error(msg)) => Err(ShimError::Create(msg)),
        Err(e) => Err(ShimError::Handshake(e.to_string())),
    }
}

/// How a shim logs (its own lines, not the container's): in berthd's format to the stderr it
/// inherits from berthd, and to `file`, which outlives the container (`crate::shim_logs`).
#[derive(Debug, Clone)]
pub struct ShimLogging {
    pub format: LogFormat,
    pub file: std::path::PathBuf,
}

/// Run `berth-shim` for a container and wait for its handshake; returns the init pid.
pub async fn spawn(
    binary: &Path,
    id: &str,
    bundle: &Path,
    paths: &ShimPaths,
    log_path: &Path,
    stdin: Option<StdinMode>,
    logging: &ShimLogging,
) -> Result<u32, ShimError> {
    let spawn_err = |source| ShimError::Spawn {
        binary: binary.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&paths.dir).map_err(spawn_err)?;
    let args = ShimArgs {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        socket: paths.socket.clone(),
        log: log_path.to_path_buf(),
        exit_file: paths.exit_file.clone(),
        stdin,
        log_format: Some(logging.format),
        shim_log: Some(logging.file.clone()),
    };
    // stderr: berthd's own, which the shim keeps as its log stream (see berth_shim::log).
    let child = tokio::process::Command::new(binary)
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(spawn_err)?;
    let pid = read_handshake(child, Some(&paths.pid_file), HANDSHAKE_TIMEOUT).await?;
    if let Some(shim) = read_pid(&paths.pid_file) {
        leave_berthd_cgroup(id, shim);
    }
    Ok(pid)
}

/// Move a shim or pod-init (`pid`) out of berthd's cgroup into its own, `name`
/// (`berth_cgroups::helper`), so that restarting berthd's unit leaves it running whatever the
/// unit's KillMode. A failure is logged: the process then stays in berthd's cgroup, as
/// containerd's shims do (the unit's `KillMode=process` spares them).
pub fn leave_berthd_cgroup(name: &str, pid: i32) {
    let placed = berth_cgroups::HelperCgroup::for_host(name).and_then(|cg| cg.place(pid));
    if let Err(e) = placed {
        tracing::warn!(pid, cgroup = name, error = %e, "a berth helper stays in berthd's cgroup");
    }
}

/// Remove the cgroup `name` of a shim or pod-init that has exited or is exiting, waiting up to
/// [`berth_cgroups::DESTROY_TIMEOUT`] for its last process to go.
pub async fn remove_helper_cgroup(name: &str) {
    let cg = match berth_cgroups::HelperCgroup::for_host(name) {
        Ok(cg) => cg,
        Err(e) => {
            tracing::warn!(cgroup = name, error = %e, "removing a helper's cgroup");
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + berth_cgroups::DESTROY_TIMEOUT;
    loop {
        match cg.remove() {
            Ok(()) => return,
            Err(e) if e.is_busy() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                tracing::warn!(cgroup = name, error = %e, "removing a helper's cgroup");
                return;
            }
        }
    }
}

/// The cgroup name of a pod's pod-init.
pub fn pod_init_cgroup(sandbox_id: &str) -> String {
    format!("pod-{sandbox_id}")
}

/// Start `berth-shim pod-init` pinning a new PID namespace at `pin`; returns its PID 1 (a host
/// pid), moved into the cgroup `pod_init_cgroup(sandbox_id)`.
pub async fn spawn_pod_init(binary: &Path, pin: &Path, sandbox_id: &str) -> Result<u32, ShimError> {
    let args = PodInitArgs {
        pin: pin.to_path_buf(),
    };
    let child = tokio::process::Command::new(binary)
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|source| ShimError::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;
    let pid = read_handshake(child, None, HANDSHAKE_TIMEOUT).await?;
    if let Ok(p) = i32::try_from(pid)
        && p > 1
    {
        leave_berthd_cgroup(&pod_init_cgroup(sandbox_id), p);
    }
    Ok(pid)
}

/// Read a started shim's one-line handshake to EOF and reap the process we started. On timeout
/// the daemonized shim (named by `pid_file`, and only if it still holds our end of the pipe:
/// pids are reused) is killed with its children (the half-built init); the process we started
/// has long exited.
async fn read_handshake(
    mut child: tokio::process::Child,
    pid_file: Option<&Path>,
    timeout: Duration,
) -> Result<u32, ShimError> {
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let pipe = pipe_inode(&stdout);
        let read = tokio::time::timeout(timeout, stdout.read_to_string(&mut out));
        match read.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ShimError::Handshake(e.to_string())),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                if let (Some(pid_file), Some(pipe)) = (pid_file, pipe) {
                    kill_pipe_holder(pid_file, pipe);
                }
                return Err(ShimError::Handshake(format!(
                    "no answer within {}s",
                    timeout.as_secs()
                )));
            }
        }
    }
    // The process we started only forks the daemon and exits.
    let _ = child.wait().await;
    parse_handshake(&out)
}

/// SIGKILL the shim of `paths` by its pid file, if that pid is still that shim (its command line
/// names its socket).
pub fn kill_shim(paths: &ShimPaths) {
    let Some(pid) = read_pid(&paths.pid_file) else {
        return;
    };
    let socket = paths.socket.as_os_str().as_encoded_bytes();
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == socket));
    if ours {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The pid a shim wrote to `pid_file` (never 0 or 1).
fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 1)
}

/// The `pipe:[inode]` our read end is.
fn pipe_inode(stdout: &tokio::process::ChildStdout) -> Option<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{}", stdout.as_raw_fd()))
        .ok()
        .map(|m| m.ino())
}

/// SIGKILL the process named in `pid_file` and its children, if it holds pipe `inode`.
fn kill_pipe_holder(pid_file: &Path, inode: u64) {
    let Some(pid) = read_pid(pid_file) else {
        return;
    };
    let want = format!("pipe:[{inode}]");
    let holds = std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .any(|l| l.as_os_str() == want.as_str())
    });
    if !holds {
        return;
    }
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
    {
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    tracing::warn!(pid, "killed a shim that never finished its handshake");
}

/// A client for the shim at `socket`; each call fails after [`CALL_TIMEOUT`].
pub async fn connect(socket: &Path) -> Result<ShimClient<Channel>, ShimError> {
    connect_with(socket, Some(CALL_TIMEOUT)).await
}

/// A client for the calls that last as long as the container (wait, attach): no call timeout.
pub async fn connect_streaming(socket: &Path) -> Result<ShimClient<Channel>, ShimError> {
    connect_with(socket, None).await
}

async fn connect_with(
    socket: &Path,
    call_timeout: Option<Duration>,
) -> Result<ShimClient<Channel>, ShimError> {
    let path = socket.to_path_buf();
    let gone = Arc::new(AtomicBool::new(false));
    let err = |reason: String, gone: bool| ShimError::Connect {
        socket: socket.display().to_string(),
        reason,
        gone,
    };
    let mut endpoint = Endpoint::try_from("http://[::]:50051")
        .map_err(|e| err(e.to_string(), false))?
        .connect_timeout(CALL_TIMEOUT);
    if let Some(t) = call_timeout {
        endpoint = endpoint.timeout(t);
    }
    let seen = gone.clone();
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            let seen = seen.clone();
            async move {
                match tokio::net::UnixStream::connect(path).await {
                    Ok(s) => Ok::<_, std::io::Error>(TokioIo::new(s)),
                    Err(e) => {
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                        ) {
                            seen.store(true, Ordering::Relaxed);
                        }
                        Err(e)
                    }
                }
            }
        }))
        .await
        .map_err(|e| err(e.to_string(), gone.load(Ordering::Relaxed)))?;
    Ok(ShimClient::new(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes() {
        assert_eq!(parse_handshake("ok 4242\n").unwrap(), 4242);
        assert!(matches!(
            parse_handshake("error exec: \"nope\": executable file not found\n"),
            Err(ShimError::Create(m)) if m.contains("executable file not found")
        ));
        assert!(matches!(parse_handshake(""), Err(ShimError::Handshake(_))));
        assert!(matches!(
            parse_handshake("ok x"),
            Err(ShimError::Handshake(_))
        ));
    }

    /// A "shim" that daemonizes (keeping the handshake pipe), writes its pid file and never
    /// answers, with a child of its own: both are killed when the handshake times out.
    #[tokio::test]
    async fn a_handshake_timeout_kills_the_daemonized_shim_and_its_child() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("shim.pid");
        let child_file = dir.path().join("child.pid");
        let script = format!(
            "setsid sh -c 'echo $$ > {pid}; sleep 1000 & echo $! > {child}; wait' & exit 0",
            pid = pid_file.display(),
            child = child_file.display()
        );
        let child = tokio::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let r = read_handshake(child, Some(&pid_file), Duration::from_secs(1)).await;
        assert!(matches!(r, Err(ShimError::Handshake(m)) if m.contains("no answer")));
        assert!(started.elapsed() < Duration::from_secs(10));
        let read_pid =
            |p: &Path| -> i32 { std::fs::read_to_string(p).unwrap().trim().parse().unwrap() };
        let gone = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true)
        };
        let (daemon, grandchild) = (read_pid(&pid_file), read_pid(&child_file));
        for _ in 0..200 {
            if gone(daemon) && gone(grandchild) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone(daemon), "the daemonized shim {daemon} was killed");
        assert!(gone(grandchild), "its child {grandchild} was killed");
    }
}
