//! Running a command in a running container: ExecSync and the streaming server's exec, both
//! through one spawn path ([`Containers::exec`], as containerd's `execInternal`).
//!
//! berthd starts `berth-shim exec` (straight into exec, so no fork happens in this process);
//! that single-threaded helper joins the container's namespaces and cgroup, takes its identity
//! and privileges and runs the command below a reaper in the container's PID namespace (see
//! shim/src/executor/exec.rs). The helper's stdout/stderr are the command's (or, with a tty, it
//! passes a pty master back over a console socket); it exits with the command's status. A
//! command that could not be started is reported through an error file, so it is an error, not
//! an exit code. An exec that must end early (timeout, client gone) is ended with SIGTERM to the
//! helper, which kills and reaps everything the command started.

use berth_proto::exec_error;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::pty::{self, PtyMaster};
use super::stdio::{self, ProcessIo};
use super::{ContainerError, ContainerState, Containers};
use crate::error::IoContext;
use crate::ids::new_id;

/// Most bytes ExecSync keeps of stdout and stderr together, in the order they arrive (the rest
/// is read and dropped): the reply then fits kubelet's (and berth's) 16 MiB gRPC message, with
/// room for the exit code and the fields' framing. containerd caps each stream at 16 MiB
/// (`maxStreamSize`, its `cappedWriter` in internal/cri/server/container_execsync.go) and keeps
/// the first bytes as berth does, but a reply over 16 MiB then fails at its gRPC limit: berth
/// caps the total, so a large output is truncated, never a transport error.
pub const MAX_OUTPUT: usize = (16 << 20) - 4096;

/// How long a pty's output may keep coming once the command has exited: the command's
/// background children may hold the terminal open, so it is not waited for to its end.
const PTY_OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// How long the helper has to hand over the terminal of an exec with a tty.
const PTY_TIMEOUT: Duration = Duration::from_secs(30);

/// What ExecSync returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// How an exec runs (containerd's `execOptions`).
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// The command's stdio; with `io.tty` a terminal.
    pub io: ProcessIo,
    /// After this long the command is ended and the exec fails with DeadlineExceeded (None: no
    /// limit).
    pub timeout: Option<Duration>,
    /// How long output from pipes may keep coming once the command has exited (None: until it
    /// ends). A terminal gets [`PTY_OUTPUT_GRACE`].
    pub output_grace: Option<Duration>,
}

/// A running `berth-shim exec`. However the call ends (a timeout, a client gone, the RPC
/// dropped), an unfinished exec is ended through the helper's SIGTERM, which kills and reaps
/// the command and everything it started before the helper exits; never by SIGKILL to the
/// helper alone, which would leave the command's processes to the container's PID 1 (and to a
/// PID 1 that never reaps, as zombies forever).
struct Helper(Option<tokio::process::Child>);

impl Helper {
    /// How long the helper gets to kill and reap the command's tree before it is SIGKILLed.
    const GRACE: Duration = Duration::from_secs(15);

    /// End the exec (if it still runs) and wait for the helper.
    async fn end(&mut self) {
        if let Some(child) = self.0.take() {
            end_helper(child).await;
        }
    }
}

impl std::ops::Deref for Helper {
    type Target = tokio::process::Child;
    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .expect("a Helper holds its child until end() or drop")
    }
}

impl std::ops::DerefMut for Helper {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0
            .as_mut()
            .expect("a Helper holds its child until end() or drop")
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Only an exec still running needs ending (the usual path: it has exited and was
        // waited for).
        if let Some(mut child) = self.0.take()
            && matches!(child.try_wait(), Ok(None))
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(end_helper(child));
        }
    }
}

async fn end_helper(mut child: tokio::process::Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Helper::GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!("exec helper did not end its command in time; killing it");
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Removes a file of the exec (its error file, its console socket) however the call ends.
struct ErrorFile(PathBuf);

impl Drop for ErrorFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Containers {
    /// Where exec helpers leave their error files (emptied at start).
    pub(super) fn exec_dir(&self) -> PathBuf {
        self.state_dir.join("exec")
    }

    /// ExecSync: run `cmd` in container `id` and collect its output (at most [`MAX_OUTPUT`] of
    /// both streams together); `timeout` None waits as long as it takes. On timeout the command is killed
    /// and the call fails with DeadlineExceeded.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ContainerError> {
        let (stdout_tx, stdout) = mpsc::channel(16);
        let (stderr_tx, stderr) = mpsc::channel(16);
        let options = ExecOptions {
            io: ProcessIo {
                stdout: Some(stdout_tx),
                stderr: Some(stderr_tx),
                ..ProcessIo::default()
            },
            timeout,
            output_grace: None,
        };
        let budget = std::sync::atomic::AtomicUsize::new(MAX_OUTPUT);
        let (exit_code, stdout, stderr) = tokio::join!(
            self.exec(id, cmd, options),
            stdio::collect_within(stdout, &budget),
            stdio::collect_within(stderr, &budget),
        );
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code: exit_code?,
        })
    }

    /// Run `cmd` in running container `id` with `options.io` as its stdio: the one way berth
    /// starts an exec. The command's exit code (128 + N when killed by signal N). Dropping the
    /// future ends the command (through the helper's SIGTERM).
    // The helper's parent-death signal is set with pre_exec.
    #[allow(unsafe_code)]
    pub async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        options: ExecOptions,
    ) -> Result<i32, ContainerError> {
        // The command was validated by the Exec or ExecSync handler (a non-empty argv).
        let rec = self.refresh(&self.get(id)?.id).await?;
        if rec.state != ContainerState::Running || rec.pid == 0 {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let ExecOptions {
            io,
            timeout,
            output_grace,
        } = options;
        let dir = self.exec_dir();
        std::fs::create_dir_all(&dir).context(format!("creating {}", dir.display()))?;
        let name = new_id().context("generating an exec id")?[..16].to_string();
        let error_file = ErrorFile(dir.join(format!("{name}.err")));
        let console = ErrorFile(dir.join(format!("{name}.sock")));
        let listener = if io.tty {
            Some(tokio::net::UnixListener::bind(&console.0).context("console socket")?)
        } else {
            None
        };

        let args = berth_proto::args::ExecArgs {
            bundle: self.bundle(&rec.id),
            pid: rec.pid,
            error_file: error_file.0.clone(),
            console_socket: io.tty.then(|| console.0.clone()),
            console_size: None,
            command: cmd.to_vec(),
        };
        let mut command = tokio::process::Command::new(&self.shim_binary);
        command.args(args.to_args()).kill_on_drop(true);
        // The helper (and the reaper and process that die with it) dies with berthd: an exec
        // nobody can collect any more must not live on in the container.
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
        // is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        if io.tty {
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        } else {
            command
                .stdin(piped(io.stdin.is_some()))
                .stdout(piped(io.stdout.is_some()))
                .stderr(piped(io.stderr.is_some()));
        }
        let child = command
            .spawn()
            .context(format!("starting {} exec", self.shim_binary.display()))?;
        let mut child = Helper(Some(child));
        let started = std::time::Instant::now();

        let run = run_helper(&mut child, io, listener, &error_file.0, output_grace);
        let outcome = match timeout {
            Some(t) => tokio::time::timeout(t, run).await.ok(),
            None => Some(run.await),
        };
        let status = match outcome {
            Some(status) => status?,
            None => {
                // The command and all it started are killed and reaped before we answer.
                child.end().await;
                return Err(ContainerError::DeadlineExceeded(format!(
                    "command {cmd:?} in container {} timed out after {}s",
                    rec.id,
                    timeout.unwrap_or_default().as_secs_f64()
                )));
            }
        };
        crate::metrics::phase("exec_helper", started);
        let status = status.context("waiting for the exec helper")?;
        if let Some(message) = exec_error::read(&error_file.0) {
            let message = format!("exec in container {}: {message}", rec.id);
            return Err(if exec_error::is_command_error(status.code()) {
                ContainerError::InvalidArgument(message)
            } else {
                ContainerError::ExecFailed(message)
            });
        }
        Ok(
            match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(c), _) => c,
                (None, Some(sig)) => 128 + sig,
                (None, None) => 255,
            },
        )
    }
}

/// Connect the helper's stdio (pipes, or the pty it hands over on `console`) to `io`, wait for
/// it to exit, and let the output still in flight reach `io` (bounded by `output_grace`).
async fn run_helper(
    child: &mut Helper,
    io: ProcessIo,
    console: Option<tokio::net::UnixListener>,
    error_file: &Path,
    output_grace: Option<Duration>,
) -> Result<std::io::Result<std::process::ExitStatus>, ContainerError> {
    let ProcessIo {
        stdin,
        stdout,
        stderr,
        resize,
        ..
    } = io;
    // The output pumps, waited for after the exit; input pumps end with their channel.
    let mut pumps = tokio::task::JoinSet::new();
    let mut master = None;
    if let Some(listener) = console {
        let m = match accept_pty(child, listener).await {
            Ok(m) => Arc::new(m),
            Err(e) => {
                child.end().await;
                let message = exec_error::read(error_file).unwrap_or_else(|| e.to_string());
                return Err(ContainerError::ExecFailed(message));
            }
        };
        if let Some(tx) = stdout {
            pumps.spawn(pty::copy_out(m.clone(), tx));
        }
        if let Some(rx) = stdin {
            tokio::spawn(pty::copy_in(rx, m.clone()));
        }
        if let Some(rx) = resize {
            tokio::spawn(pty::follow_resizes(rx, m.clone()));
        }
        master = Some(m);
    } else {
        if let (Some(rx), Some(w)) = (stdin, child.stdin.take()) {
            tokio::spawn(stdio::copy_in(rx, w));
        }
        if let (Some(r), Some(tx)) = (child.stdout.take(), stdout) {
            pumps.spawn(stdio::copy_out(r, tx));
        }
        if let (Some(r), Some(tx)) = (child.stderr.take(), stderr) {
            pumps.spawn(stdio::copy_out(r, tx));
        }
    }

    let status = child.wait().await;
    // Output still in flight reaches the caller before the exit status.
    let drain = async { while pumps.join_next().await.is_some() {} };
    match master.as_ref().map(|_| PTY_OUTPUT_GRACE).or(output_grace) {
        Some(grace) => {
            let _ = tokio::time::timeout(grace, drain).await;
        }
        None => drain.await,
    }
    pumps.abort_all();
    Ok(status)
}

/// The pty master the helper sends over the console socket, unless it exits first or takes
/// longer than [`PTY_TIMEOUT`].
async fn accept_pty(
    child: &mut Helper,
    listener: tokio::net::UnixListener,
) -> std::io::Result<PtyMaster> {
    let accepted = tokio::select! {
        a = tokio::time::timeout(PTY_TIMEOUT, listener.accept()) => a,
        _ = child.wait() => Ok(Err(std::io::Error::other("the exec helper exited before it opened a terminal"))),
    };
    let fd = match accepted {
        Ok(Ok((stream, _))) => pty::recv_fd(stream).await,
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::other(format!(
            "no terminal from the exec helper within {}s",
            PTY_TIMEOUT.as_secs()
        ))),
    };
    fd.and_then(PtyMaster::new)
}
