//! ExecSync: run a command in a running container and collect its output.
//!
//! berthd starts `berth-shim exec` (straight into exec, so no fork happens in this process);
//! that single-threaded helper joins the container's namespaces and cgroup, takes its identity
//! and privileges and runs the command below a reaper in the container's PID namespace (see
//! shim/src/executor/exec.rs). The helper's stdout/stderr are the command's; it exits with the
//! command's status. A command that could not be started is reported through an error file, so
//! it is an error, not an exit code. An exec that must end early (timeout, client gone) is ended
//! with SIGTERM to the helper, which kills and reaps everything the command started.

// The streaming pty master is registered with tokio's reactor (AsyncFd::register).
#![allow(unsafe_code)]

use crate::error::IoContext;
use crate::error::IoError;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ContainerError, ContainerState, Containers};
use crate::ids::new_id;

/// Most bytes kept of each of stdout and stderr (the rest is read and dropped).
pub const MAX_OUTPUT: usize = 16 << 20;

/// What ExecSync returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Read a stream to EOF, keeping at most `MAX_OUTPUT` bytes.
async fn read_capped<R: AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
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

/// Removes the error file however the call ends.
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

    /// ExecSync: run `cmd` in container `id`; `timeout` None waits as long as it takes. On
    /// timeout the command is killed and the call fails with DeadlineExceeded.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ContainerError> {
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(ContainerError::InvalidArgument("cmd is empty".into()));
        }
        let rec = self.refresh(&self.get(id)?.id).await?;
        if rec.state != ContainerState::Running || rec.pid == 0 {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let dir = self.exec_dir();
        std::fs::create_dir_all(&dir).context(format!("creating {}", dir.display()))?;
        let name = new_id().context("generating an exec id")?;
        let error_file = ErrorFile(dir.join(format!("{}.err", &name[..16])));

        let args = berth_proto::args::ExecArgs {
            bundle: self.bundle(&rec.id),
            pid: rec.pid,
            error_file: error_file.0.clone(),
            console_socket: None,
            console_size: None,
            command: cmd.to_vec(),
        };
        let child = tokio::process::Command::new(&self.shim_binary)
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(format!("starting {} exec", self.shim_binary.display()))?;
        let mut child = Helper(Some(child));
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ContainerError::Io(IoError::new(
                "exec helper without stdio pipes",
                std::io::Error::other("missing pipe"),
            )));
        };
        let started = std::time::Instant::now();
        let run = async {
            let (out, err, status) =
                tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
            crate::metrics::phase("exec_helper", started);
            (out, err, status)
        };
        let outcome = match timeout {
            Some(t) => tokio::time::timeout(t, run).await.ok(),
            None => Some(run.await),
        };
        let (stdout, stderr, status) = match outcome {
            Some(r) => r,
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
        let status = status.context("waiting for the exec helper")?;
        if let Ok(message) = std::fs::read_to_string(&error_file.0) {
            let message = format!("exec in container {}: {message}", rec.id);
            return Err(match status.code() {
                Some(126) | Some(127) => ContainerError::InvalidArgument(message),
                _ => ContainerError::ExecFailed(message),
            });
        }
        let exit_code = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(c), _) => c,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 255,
        };
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }
}

/// A pty master held by berthd for a streaming exec with a terminal.
struct PtyMaster {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl PtyMaster {
    fn new(fd: std::os::fd::OwnedFd) -> std::io::Result<PtyMaster> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same for
        // the AsyncFd's whole life.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }?;
        Ok(PtyMaster { fd })
    }

    /// Read some output; Ok(0) at the end (EIO: every slave end is closed).
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| {
                nix::unistd::read(inner.get_ref(), buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| {
                nix::unistd::write(inner.get_ref(), data).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    fn resize(&self, size: crate::streaming::TerminalSize) {
        use std::os::fd::AsFd;
        let (width, height) = (size.width.into(), size.height.into());
        let _ = berth_sys::console::set_window_size(self.fd.get_ref().as_fd(), width, height);
    }
}

/// Receive one descriptor (SCM_RIGHTS) from a connected unix socket.
async fn recv_fd(stream: tokio::net::UnixStream) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    loop {
        stream.readable().await?;
        let res = stream.try_io(tokio::io::Interest::READABLE, || {
            berth_sys::console::recv_fd(stream.as_fd(), &mut [0u8; 16]).map(|(_, fd)| fd)
        });
        match res {
            Ok(Some(fd)) => return Ok(fd),
            Ok(None) => {
                return Err(std::io::Error::other(
                    "the exec helper closed the console socket without a pty",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Containers {
    /// Exec over the streaming server: run `cmd` in the container with the session's streams
    /// (a pty when `expected.tty`), until it exits or the client goes away (then it is
    /// killed). The final status goes to the session's error channel.
    pub async fn exec_streaming(
        &self,
        id: &str,
        cmd: &[String],
        expected: crate::streaming::Expected,
        streams: crate::streaming::CommandStreams,
    ) {
        use crate::streaming::{failure_json, status_json};
        let crate::streaming::CommandStreams {
            stdin,
            stdout,
            stderr,
            resize,
            error,
            mut gone,
        } = streams;
        let fail = |error: tokio::sync::oneshot::Sender<bytes::Bytes>, msg: String| {
            tracing::warn!(container = %id, "exec: {msg}");
            let _ = error.send(failure_json(&msg));
        };
        let rec = match self.refresh(id).await {
            Ok(r) if r.state == ContainerState::Running && r.pid != 0 => r,
            Ok(r) => return fail(error, format!("container {} is not running", r.id)),
            Err(e) => return fail(error, e.to_string()),
        };
        let dir = self.exec_dir();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return fail(error, format!("creating {}: {e}", dir.display()));
        }
        let name = match new_id() {
            Ok(n) => n[..16].to_string(),
            Err(e) => return fail(error, format!("generating an exec id: {e}")),
        };
        let error_file = ErrorFile(dir.join(format!("{name}.err")));
        let console = ErrorFile(dir.join(format!("{name}.sock")));
        let listener = if expected.tty {
            match tokio::net::UnixListener::bind(&console.0) {
                Ok(l) => Some(l),
                Err(e) => return fail(error, format!("console socket: {e}")),
            }
        } else {
            None
        };
        let args = berth_proto::args::ExecArgs {
            bundle: self.bundle(&rec.id),
            pid: rec.pid,
            error_file: error_file.0.clone(),
            console_socket: expected.tty.then(|| console.0.clone()),
            console_size: None,
            command: cmd.to_vec(),
        };
        let mut command = tokio::process::Command::new(&self.shim_binary);
        command.args(args.to_args()).kill_on_drop(true);
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        if expected.tty {
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        } else {
            command
                .stdin(piped(expected.stdin))
                .stdout(piped(expected.stdout))
                .stderr(piped(expected.stderr));
        }
        let mut child = match command.spawn() {
            Ok(c) => Helper(Some(c)),
            Err(e) => return fail(error, format!("starting the exec helper: {e}")),
        };

        // The pumps between the session and the process.
        let mut pumps = tokio::task::JoinSet::new();
        let mut master: Option<Arc<PtyMaster>> = None;
        if let Some(listener) = listener {
            let accepted = tokio::select! {
                a = tokio::time::timeout(Duration::from_secs(30), listener.accept()) => a,
                _ = child.wait() => Ok(Err(std::io::Error::other("the exec helper exited before it opened a terminal"))),
            };
            let fd = match accepted {
                Ok(Ok((stream, _))) => recv_fd(stream).await,
                Ok(Err(e)) => Err(e),
                Err(_) => Err(std::io::Error::other(
                    "no terminal from the exec helper within 30s",
                )),
            };
            let m = match fd.and_then(PtyMaster::new) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    child.end().await;
                    let msg =
                        std::fs::read_to_string(&error_file.0).unwrap_or_else(|_| e.to_string());
                    return fail(error, msg);
                }
            };
            master = Some(m.clone());
            if let Some(out) = stdout {
                let m = m.clone();
                pumps.spawn(async move {
                    let mut buf = vec![0u8; 32 << 10];
                    while let Ok(n) = m.read(&mut buf).await {
                        if n == 0
                            || out
                                .send(bytes::Bytes::copy_from_slice(&buf[..n]))
                                .await
                                .is_err()
                        {
                            break;
                        }
                    }
                });
            }
            if let Some(mut input) = stdin {
                let m = m.clone();
                tokio::spawn(async move {
                    while let Some(b) = input.recv().await {
                        if m.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                });
            }
            if let Some(mut resize) = resize {
                let m = m.clone();
                tokio::spawn(async move {
                    while let Some(size) = resize.recv().await {
                        m.resize(size);
                    }
                });
            }
        } else {
            if let (Some(mut input), Some(mut w)) = (stdin, child.stdin.take()) {
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    while let Some(b) = input.recv().await {
                        if w.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    // Dropping `w` closes the pipe: the command reads EOF.
                });
            }
            for (reader, sender) in [
                (
                    child
                        .stdout
                        .take()
                        .map(|r| Box::new(r) as Box<dyn AsyncRead + Send + Unpin>),
                    stdout,
                ),
                (
                    child
                        .stderr
                        .take()
                        .map(|r| Box::new(r) as Box<dyn AsyncRead + Send + Unpin>),
                    stderr,
                ),
            ] {
                if let (Some(mut r), Some(tx)) = (reader, sender) {
                    pumps.spawn(async move {
                        let mut buf = vec![0u8; 32 << 10];
                        loop {
                            match r.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if tx
                                        .send(bytes::Bytes::copy_from_slice(&buf[..n]))
                                        .await
                                        .is_err()
                                    {
                                        break;
                                    }
                                }
                            }
                        }
                    });
                }
            }
        }

        let status = tokio::select! {
            s = child.wait() => s,
            _ = &mut gone => {
                // The client left: the command and all it started go too.
                child.end().await;
                tracing::info!(container = %rec.id, "exec client went away; command killed");
                return;
            }
        };
        // Output still in flight reaches the client before the status. A pty may be held open
        // by the command's background children: do not wait for those forever.
        let drain = async { while pumps.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(
            Duration::from_secs(if master.is_some() { 1 } else { 30 }),
            drain,
        )
        .await;
        pumps.abort_all();
        drop(master);
        if let Ok(msg) = std::fs::read_to_string(&error_file.0) {
            return fail(error, format!("exec in container {}: {msg}", rec.id));
        }
        let code = match status {
            Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (Some(c), _) => c,
                (None, Some(sig)) => 128 + sig,
                (None, None) => 255,
            },
            Err(e) => return fail(error, format!("waiting for the exec helper: {e}")),
        };
        let _ = error.send(status_json(code));
    }
}

impl Containers {
    /// Attach over the streaming server: the container's output from now on, and stdin /
    /// resizes to it, through its shim. Ends when the container's stdio closes (the status
    /// then is success, as kubelet reports a finished attach) or the client goes away.
    pub async fn attach_streaming(
        &self,
        id: &str,
        expected: crate::streaming::Expected,
        streams: crate::streaming::CommandStreams,
    ) {
        use crate::streaming::{failure_json, status_json};
        use berth_proto::v1 as shim;
        let crate::streaming::CommandStreams {
            stdin,
            stdout,
            stderr,
            resize,
            error,
            mut gone,
        } = streams;
        let rec = match self.refresh(id).await {
            Ok(r) if r.state == ContainerState::Running => r,
            Ok(r) => {
                let _ = error.send(failure_json(&format!("container {} is not running", r.id)));
                return;
            }
            Err(e) => {
                let _ = error.send(failure_json(&e.to_string()));
                return;
            }
        };
        if expected.stdin && !rec.config.stdin {
            tracing::info!(container = %rec.id, "attach with stdin to a container without stdin: input is dropped");
        }
        let paths = berth_proto::paths::ShimPaths::new(&self.state_dir, &rec.id);
        let mut client = match crate::shim_client::connect(&paths.socket).await {
            Ok(c) => c,
            Err(e) => {
                let _ = error.send(failure_json(&e.to_string()));
                return;
            }
        };
        let (in_tx, in_rx) = tokio::sync::mpsc::channel::<shim::AttachInput>(16);
        let input = |i| shim::AttachInput { input: Some(i) };
        if let Some(mut s) = stdin {
            let tx = in_tx.clone();
            tokio::spawn(async move {
                while let Some(b) = s.recv().await {
                    if tx
                        .send(input(shim::attach_input::Input::Stdin(b.to_vec())))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let _ = tx
                    .send(input(shim::attach_input::Input::CloseStdin(true)))
                    .await;
            });
        }
        if let Some(mut r) = resize {
            let tx = in_tx.clone();
            tokio::spawn(async move {
                while let Some(size) = r.recv().await {
                    let size = shim::TerminalSize {
                        width: size.width.into(),
                        height: size.height.into(),
                    };
                    if tx
                        .send(input(shim::attach_input::Input::Resize(size)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        // The shim keeps the call open while our input stream is: held until the session ends.
        let keep_input = in_tx;
        let mut output = match client
            .attach(tokio_stream::wrappers::ReceiverStream::new(in_rx))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(e) => {
                let _ = error.send(failure_json(&format!("attaching to the shim: {e}")));
                return;
            }
        };
        let relay = async {
            while let Ok(Some(o)) = output.message().await {
                let to = match shim::attach_output::Stream::try_from(o.stream) {
                    Ok(shim::attach_output::Stream::Stderr) if !expected.tty => stderr.as_ref(),
                    _ => stdout.as_ref(),
                };
                if let Some(tx) = to
                    && tx.send(bytes::Bytes::from(o.data)).await.is_err()
                {
                    break;
                }
            }
        };
        tokio::select! {
            _ = relay => {
                drop(keep_input);
                let _ = error.send(status_json(0));
            }
            _ = &mut gone => {
                drop(keep_input);
                tracing::info!(container = %rec.id, "attach client went away");
            }
        }
    }
}
