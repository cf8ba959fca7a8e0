//! The Shim gRPC service: the container's state machine, its exit, its log.
//!
//! ```text
//! CREATED --Start--> RUNNING --init reaped, stdio drained, exit file written--> STOPPED
//!    \------------------------ init reaped (killed before Start) ------------------^
//! ```
//!
//! The shim is a child subreaper: every process that ends up its child is reaped here
//! (SIGCHLD + `waitpid(-1, WNOHANG)`); only the init's status is recorded. The shim keeps
//! serving State and Wait after the container stopped, until Shutdown.

// Signals the container's processes with kill(2) and registers stdin with tokio's reactor.
#![allow(unsafe_code)]

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::exit::ExitRecord;
use berth_proto::v1::shim_server::{Shim, ShimServer};
use berth_proto::v1::{
    AttachInput, AttachOutput, KillRequest, KillResponse, ReopenLogRequest, ReopenLogResponse,
    ShutdownRequest, ShutdownResponse, StartRequest, StartResponse, StateRequest, StateResponse,
    StatsRequest, StatsResponse, Status as ContainerStatus, UpdateRequest, UpdateResponse,
    WaitRequest, attach_input, attach_output,
};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::socket::MsgFlags;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status};

use crate::executor::process::{self, Report};
use crate::executor::{InitProcess, PidNamespace};
use crate::io::{LogFile, async_reader, pump};
use berth_cgroups::{self as cgroup, Cgroup};

/// How long a stopped container's stdio may stay open (held by a process outside its own PID
/// namespace) before the shim reports it STOPPED anyway.
pub const IO_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long Start waits for the exec to happen before it answers anyway.
const EXEC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Shutdown(force) waits for the container to die.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may delay the exit after Shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub use berth_sys::time::now_nanos;

/// The container as the shim sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub status: ContainerStatus,
    /// The init's host pid; 0 once reaped.
    pub pid: u32,
    pub exit_code: i32,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub message: String,
    /// The init has been reaped (its pid may be reused: never signal it again).
    pub reaped: bool,
    /// The kernel OOM-killed a process of the container (its cgroup's counter, read at exit).
    pub oom_killed: bool,
}

/// Where the shim writes what.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub id: String,
    pub exit_file: PathBuf,
    pub created_at: i64,
    /// Keep stdin open for attachers (CRI `stdin`), and close it when the first attacher
    /// closes its own (CRI `stdin_once`).
    pub stdin: bool,
    pub stdin_once: bool,
}

struct Inner {
    id: String,
    init_pid: Pid,
    pid_ns: PidNamespace,
    state: watch::Sender<ContainerState>,
    /// The sync socket, until Start takes it.
    sync: Mutex<Option<OwnedFd>>,
    /// Held by Start while it waits for the exec; the exit path takes it too, so an exec error
    /// is recorded before the container is STOPPED.
    start_lock: tokio::sync::Mutex<()>,
    log: Arc<LogFile>,
    exit_file: PathBuf,
    io_closed: watch::Receiver<bool>,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    /// The container's cgroup, removed at Shutdown.
    cgroup: Option<Cgroup>,
    /// An OOM kill seen while the container ran (`watch_oom`).
    oom_seen: std::sync::atomic::AtomicBool,
    /// The parent cgroup's `memory.events` and its `oom_kill` count while this container's own
    /// count was still readable and 0 (kills there were siblings'); `watch_oom`.
    parent_oom: Mutex<Option<(PathBuf, u64)>>,
    /// Attachers' input goes here (None: no stdin, or closed after stdin_once).
    stdin: tokio::sync::Mutex<Option<StdinWriter>>,
    stdin_once: bool,
    /// The pty master (resizes).
    console: Option<OwnedFd>,
    /// The container's output as the pumps read it, for attachers.
    output: tokio::sync::broadcast::Sender<crate::io::Output>,
}

/// The write end of the container's stdin (a pipe or the pty master), non-blocking.
struct StdinWriter(tokio::io::unix::AsyncFd<OwnedFd>);

impl StdinWriter {
    fn new(fd: OwnedFd) -> io::Result<StdinWriter> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same for
        // the AsyncFd's whole life.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::WRITABLE)
        }?;
        Ok(StdinWriter(fd))
    }

    async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard
                .try_io(|inner| nix::unistd::write(inner.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }
}

/// The Shim service for one container.
#[derive(Clone)]
pub struct ShimService {
    inner: Arc<Inner>,
}

/// Serve the Shim API on `listener` until Shutdown. Must run inside a tokio runtime (the shim
/// uses a current-thread one: no thread is ever created).
pub async fn serve(
    init: InitProcess,
    log: Arc<LogFile>,
    listener: std::os::unix::net::UnixListener,
    opts: ServeOptions,
) -> io::Result<()> {
    // Register for SIGCHLD before anything else can exit unnoticed.
    let sigchld = signal(SignalKind::child())?;
    let (io_tx, io_closed) = watch::channel(false);
    let parts = init.stdio.split(opts.stdin)?;
    let (output, _) = tokio::sync::broadcast::channel(256);
    let pumps: Vec<_> = parts
        .outputs
        .into_iter()
        .map(|(fd, stream)| tokio::spawn(pump(fd, stream, log.clone(), output.clone())))
        .collect();
    let stdin = parts.stdin.map(StdinWriter::new).transpose()?;
    tokio::spawn(async move {
        for p in pumps {
            match p.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("container stdio: {e}"),
                Err(e) => tracing::error!("container stdio task: {e}"),
            }
        }
        let _ = io_tx.send(true);
    });

    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let (exiting_tx, exiting) = watch::channel(false);
    let state = ContainerState {
        status: ContainerStatus::Created,
        pid: u32::try_from(init.pid.as_raw()).unwrap_or(0),
        exit_code: 0,
        created_at: opts.created_at,
        started_at: 0,
        finished_at: 0,
        message: String::new(),
        reaped: false,
        oom_killed: false,
    };
    let inner = Arc::new(Inner {
        id: opts.id,
        init_pid: init.pid,
        pid_ns: init.pid_ns,
        state: watch::Sender::new(state),
        sync: Mutex::new(Some(init.sync)),
        start_lock: tokio::sync::Mutex::new(()),
        log,
        exit_file: opts.exit_file,
        io_closed,
        shutdown: Mutex::new(Some(shutdown_tx)),
        cgroup: init.cgroup.map(|cg| cg.keep()),
        oom_seen: std::sync::atomic::AtomicBool::new(false),
        parent_oom: Mutex::new(None),
        stdin: tokio::sync::Mutex::new(stdin),
        stdin_once: opts.stdin_once,
        console: parts.console,
        output,
    });
    if let Some(file) = inner.cgroup.as_ref().and_then(Cgroup::oom_events_file) {
        match OomWatch::new(&inner, &file) {
            Ok(w) => {
                tokio::spawn(watch_oom(inner.clone(), w));
            }
            Err(e) => tracing::warn!("watching {} for OOM kills: {e}", file.display()),
        }
    }
    tokio::spawn(reap_children(inner.clone(), sigchld));

    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let service = ShimServer::new(ShimService { inner });
    let server = tonic::transport::Server::builder().serve_with_incoming_shutdown(
        service,
        incoming,
        async move {
            let _ = shutdown_rx.await;
            let _ = exiting_tx.send(true);
        },
    );
    // Graceful: in-flight calls (the Shutdown reply itself) finish; idle connections get
    // SHUTDOWN_GRACE to go away before the shim exits regardless.
    let deadline = async move {
        let mut exiting = exiting;
        let _ = exiting.wait_for(|e| *e).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.map_err(io::Error::other),
        () = deadline => {
            tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after Shutdown; exiting");
            Ok(())
        }
    }
}

/// Reap every child; record the init's exit.
async fn reap_children(inner: Arc<Inner>, mut sigchld: tokio::signal::unix::Signal) {
    loop {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(WaitStatus::Exited(pid, code)) if pid == inner.init_pid => {
                    init_exited(&inner, code)
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == inner.init_pid => {
                    init_exited(&inner, 128 + sig as i32)
                }
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::error!("waitpid: {e}");
                    break;
                }
            }
        }
        if sigchld.recv().await.is_none() {
            return;
        }
    }
}

fn init_exited(inner: &Arc<Inner>, exit_code: i32) {
    let finished_at = now_nanos();
    tracing::info!("container {} init exited with {exit_code}", inner.id);
    let oom_killed = oom_killed(inner, exit_code);
    inner.state.send_modify(|s| {
        s.reaped = true;
        s.pid = 0;
        s.exit_code = exit_code;
        s.finished_at = finished_at;
        s.oom_killed = oom_killed;
    });
    tokio::spawn(finish(inner.clone()));
}

/// Whether the kernel OOM-killed anything in the container's cgroup: seen while it ran, or the
/// counter read once the init is reaped (final for it, if the cgroup is still there). When the
/// cgroup is already gone (systemd removes an empty scope's at once: the race containerd and
/// CRI-O know, runc#5071, cri-o#7035) and the init died of SIGKILL, a rise of the parent's
/// count since the last time this container's own count read 0 is this container's kill.
fn oom_killed(inner: &Inner, exit_code: i32) -> bool {
    if inner.oom_seen.load(std::sync::atomic::Ordering::SeqCst) {
        return true;
    }
    let Some(cg) = &inner.cgroup else {
        return false;
    };
    match cg.oom_kill_count() {
        Ok(Some(n)) if n > 0 => {
            tracing::warn!("container {}: {n} process(es) OOM-killed", inner.id);
            true
        }
        Ok(Some(_)) => false,
        Ok(None) => {
            let parent = inner.parent_oom.lock().ok().and_then(|p| p.clone());
            let Some((file, base)) = parent.filter(|_| exit_code == 128 + libc::SIGKILL) else {
                return false;
            };
            match Cgroup::read_oom_kill(&file) {
                Ok(Some(n)) if n > base => {
                    tracing::warn!(
                        "container {}: OOM-killed (its cgroup is gone; {} counts {} more)",
                        inner.id,
                        file.display(),
                        n - base
                    );
                    true
                }
                _ => false,
            }
        }
        Err(e) => {
            tracing::warn!("container {}: reading the OOM-kill counter: {e}", inner.id);
            false
        }
    }
}

/// An inotify watch on the cgroup's `memory.events` and its parent's.
struct OomWatch {
    inotify: Inotify,
    own: PathBuf,
}

impl OomWatch {
    fn new(inner: &Inner, file: &Path) -> nix::Result<OomWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(file, AddWatchFlags::IN_MODIFY)?;
        let parent = file
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("memory.events"));
        if let Some(parent) = parent
            && let Ok(Some(base)) = Cgroup::read_oom_kill(&parent)
            && inotify.add_watch(&parent, AddWatchFlags::IN_MODIFY).is_ok()
            && let Ok(mut p) = inner.parent_oom.lock()
        {
            *p = Some((parent, base));
        }
        Ok(OomWatch {
            inotify,
            own: file.to_path_buf(),
        })
    }
}

impl AsRawFd for OomWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }
}

/// Record OOM kills as the kernel reports them (as containerd's shim watches `memory.events`):
/// with the systemd cgroup driver, systemd removes a scope's cgroup as soon as it is empty,
/// often before the init is reaped and its counter could be read. While the container's own
/// count reads 0, the parent's count is kept as the base `oom_killed` compares with. Ends when
/// the container's cgroup is gone or the first kill is seen.
async fn watch_oom(inner: Arc<Inner>, watch: OomWatch) {
    // SAFETY: the AsyncFd owns the OomWatch and its inotify descriptor, which stays open and
    // the same for the AsyncFd's whole life.
    let fd = match unsafe { AsyncFd::register_with_interest(watch, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!("watching for OOM kills: {e}");
            return;
        }
    };
    loop {
        let mut ready = match fd.readable().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("watching for OOM kills: {e}");
                return;
            }
        };
        match ready.get_inner().inotify.read_events() {
            Ok(_) => {}
            Err(Errno::EAGAIN) => {
                ready.clear_ready();
                continue;
            }
            Err(e) => {
                tracing::warn!("watching for OOM kills: {e}");
                return;
            }
        }
        // The parent first: a count read before this container's own reads 0 is siblings'.
        let parent = inner.parent_oom.lock().ok().and_then(|p| p.clone());
        let parent_now = parent
            .as_ref()
            .and_then(|(f, _)| Cgroup::read_oom_kill(f).ok().flatten());
        match Cgroup::read_oom_kill(&ready.get_inner().own) {
            Ok(Some(n)) if n > 0 => {
                tracing::warn!("container {}: {n} process(es) OOM-killed", inner.id);
                inner
                    .oom_seen
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            Ok(Some(_)) => {
                if let (Some(now), Ok(mut p)) = (parent_now, inner.parent_oom.lock())
                    && let Some((_, base)) = p.as_mut()
                {
                    *base = now;
                }
            }
            // The cgroup is gone: what the parent counts from now on is not this container's.
            _ => return,
        }
    }
}

/// Kill what is left in the container's cgroup and remove it, retrying (asynchronously: the
/// killed processes are reaped by this runtime) while the kernel releases them.
async fn remove_cgroup(id: &str, cg: &Cgroup) {
    let deadline = tokio::time::Instant::now() + cgroup::DESTROY_TIMEOUT;
    loop {
        if let Err(e) = cg.kill(libc::SIGKILL) {
            tracing::warn!("container {id}: killing what is left in its cgroup: {e}");
        }
        match cg.remove() {
            Ok(()) => return,
            Err(e) if e.is_busy() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => {
                tracing::error!("container {id}: {e}");
                return;
            }
        }
    }
}

/// After the init is reaped: drain stdio, let a running Start record its error, write the exit
/// file, then STOPPED.
async fn finish(inner: Arc<Inner>) {
    let mut io_closed = inner.io_closed.clone();
    if tokio::time::timeout(IO_DRAIN_TIMEOUT, io_closed.wait_for(|c| *c))
        .await
        .is_err()
    {
        tracing::warn!("container stdio still open {IO_DRAIN_TIMEOUT:?} after its init exited");
    }
    let _start = inner.start_lock.lock().await;
    let (code, finished_at, oom_killed) = {
        let s = inner.state.borrow();
        (s.exit_code, s.finished_at, s.oom_killed)
    };
    let record = ExitRecord {
        exit_code: code,
        finished_at,
        oom_killed,
    };
    if let Err(e) = record.write(&inner.exit_file) {
        tracing::error!("writing {}: {e}", inner.exit_file.display());
    }
    inner
        .state
        .send_modify(|s| s.status = ContainerStatus::Stopped);
}

fn response(id: &str, s: &ContainerState) -> StateResponse {
    StateResponse {
        id: id.to_string(),
        status: s.status as i32,
        pid: s.pid,
        exit_code: s.exit_code,
        created_at: s.created_at,
        started_at: s.started_at,
        finished_at: s.finished_at,
        oom_killed: s.oom_killed,
        message: s.message.clone(),
    }
}

fn status_name(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Unknown => "unknown",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
    }
}

/// Wait for the init's answer to "start": EOF (it exec'd) or an error.
async fn exec_outcome(sync: OwnedFd) -> io::Result<Report> {
    let fd = async_reader(sync)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut guard = fd.readable().await?;
        let res = guard.try_io(|inner| {
            nix::sys::socket::recv(
                inner.get_ref().as_raw_fd(),
                &mut buf,
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(io::Error::from)
        });
        match res {
            Err(_would_block) => continue,
            Ok(Ok(n)) => return Ok(process::parse_report(&buf[..n], None)),
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Signal every process of the container.
fn kill_all(init: Pid, pid_ns: PidNamespace, sig: i32) -> io::Result<()> {
    let targets = match pid_ns {
        // Its own PID namespace: exactly the processes in it.
        PidNamespace::Own { dev, ino } => processes_in_namespace(dev, ino)?,
        // A shared one: the init and its descendants (cgroups will make this exact).
        PidNamespace::Shared => descendants(init)?,
    };
    for pid in targets {
        // SAFETY: kill takes plain integers.
        if unsafe { libc::kill(pid, sig) } != 0 && Errno::last() != Errno::ESRCH {
            tracing::warn!("kill {pid} {sig}: {}", Errno::last());
        }
    }
    Ok(())
}

fn proc_pids() -> io::Result<Vec<i32>> {
    Ok(fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

fn processes_in_namespace(dev: u64, ino: u64) -> io::Result<Vec<i32>> {
    use std::os::unix::fs::MetadataExt;
    Ok(proc_pids()?
        .into_iter()
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
        })
        .collect())
}

/// The parent pid from /proc/<pid>/stat (the command name may contain anything but ends at the
/// last ')').
fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn descendants(init: Pid) -> io::Result<Vec<i32>> {
    let parents: Vec<(i32, i32)> = proc_pids()?
        .into_iter()
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut out = vec![init.as_raw()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    Ok(out)
}

impl ShimService {
    fn state(&self) -> ContainerState {
        self.inner.state.borrow().clone()
    }

    async fn wait_stopped(&self) -> Result<ContainerState, Status> {
        let mut rx = self.inner.state.subscribe();
        let s = rx
            .wait_for(|s| s.status == ContainerStatus::Stopped)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(s.clone())
    }

    fn signal(&self, sig: i32, all: bool) -> Result<(), Status> {
        // No await between this check and the kill: the reaper (same thread) cannot reap and
        // free the pid in between.
        if self.inner.state.borrow().reaped {
            return Err(Status::not_found("process already finished"));
        }
        if all {
            kill_all(self.inner.init_pid, self.inner.pid_ns, sig)
                .map_err(|e| Status::internal(format!("signalling the container: {e}")))
        } else {
            // SAFETY: kill takes plain integers.
            if unsafe { libc::kill(self.inner.init_pid.as_raw(), sig) } != 0 {
                let e = Errno::last();
                if e != Errno::ESRCH {
                    return Err(Status::internal(format!("kill: {e}")));
                }
            }
            Ok(())
        }
    }
}

#[tonic::async_trait]
impl Shim for ShimService {
    async fn state(&self, _: Request<StateRequest>) -> Result<Response<StateResponse>, Status> {
        Ok(Response::new(response(&self.inner.id, &self.state())))
    }

    async fn start(&self, _: Request<StartRequest>) -> Result<Response<StartResponse>, Status> {
        let _start = self.inner.start_lock.lock().await;
        let s = self.state();
        if s.status != ContainerStatus::Created || s.reaped {
            let what = if s.reaped && s.status != ContainerStatus::Stopped {
                "exited"
            } else {
                status_name(s.status)
            };
            return Err(Status::failed_precondition(format!("container is {what}")));
        }
        let sync = self
            .inner
            .sync
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| Status::failed_precondition("container was already started"))?;
        process::send_start(sync.as_fd())
            .map_err(|e| Status::failed_precondition(format!("container init is gone: {e}")))?;
        let started_at = now_nanos();
        self.inner.state.send_modify(|s| {
            s.status = ContainerStatus::Running;
            s.started_at = started_at;
        });
        let pid = u32::try_from(self.inner.init_pid.as_raw()).unwrap_or(0);
        match tokio::time::timeout(EXEC_TIMEOUT, exec_outcome(sync)).await {
            Ok(Ok(Report::Error(message))) => {
                tracing::warn!("container {}: {message}", self.inner.id);
                self.inner
                    .state
                    .send_modify(|s| s.message = message.clone());
                // The container's command could not run (no such file, not executable, a bad
                // user): the request's to fix, as at create.
                // The status travels in an HTTP/2 header: a message quoting a huge argv[0]
                // is cut (the container's status keeps it whole).
                Err(Status::invalid_argument(short_message(message)))
            }
            Ok(Ok(_)) => Ok(Response::new(StartResponse { pid })),
            Ok(Err(e)) => Err(Status::internal(format!("waiting for the exec: {e}"))),
            Err(_) => {
                tracing::warn!("no exec after {EXEC_TIMEOUT:?}; reporting the container started");
                Ok(Response::new(StartResponse { pid }))
            }
        }
    }

    async fn kill(&self, request: Request<KillRequest>) -> Result<Response<KillResponse>, Status> {
        let req = request.into_inner();
        let sig = i32::try_from(req.signal)
            .ok()
            .filter(|s| *s <= libc::SIGRTMAX())
            .ok_or_else(|| Status::invalid_argument(format!("bad signal {}", req.signal)))?;
        self.signal(sig, req.all)?;
        Ok(Response::new(KillResponse {}))
    }

    async fn wait(&self, _: Request<WaitRequest>) -> Result<Response<StateResponse>, Status> {
        let s = self.wait_stopped().await?;
        Ok(Response::new(response(&self.inner.id, &s)))
    }

    async fn update(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_str(&request.get_ref().resources_json)
                .map_err(|e| Status::invalid_argument(format!("resources: {e}")))?;
        let Some(cg) = &self.inner.cgroup else {
            return Err(Status::failed_precondition(
                "the container has no cgroup of its own",
            ));
        };
        if self.inner.state.borrow().reaped {
            return Err(Status::failed_precondition("the container is not running"));
        }
        cg.apply(&resources).map_err(|e| match e {
            cgroup::Error::InvalidSpec(m) => Status::invalid_argument(m),
            e if e.is_refused_value() => {
                Status::invalid_argument(format!("the kernel refused the resources: {e}"))
            }
            e if e.is_busy_write() => Status::failed_precondition(format!(
                "the kernel cannot apply the resources now (a limit below what the container uses?): {e}"
            )),
            e => Status::internal(format!("updating the cgroup: {e}")),
        })?;
        tracing::info!("container {}: resources updated", self.inner.id);
        Ok(Response::new(UpdateResponse {}))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let timestamp = now_nanos();
        let Some(cg) = &self.inner.cgroup else {
            return Ok(Response::new(StatsResponse {
                timestamp,
                ..Default::default()
            }));
        };
        let s = cg.stats();
        Ok(Response::new(StatsResponse {
            timestamp,
            has_cgroup: true,
            cpu_usage_ns: s.cpu_usage_ns,
            memory_usage_bytes: s.memory_usage,
            memory_working_set_bytes: s.memory_working_set,
            memory_rss_bytes: s.memory_rss,
            memory_limit_bytes: s.memory_limit,
            page_faults: s.page_faults,
            major_page_faults: s.major_page_faults,
            swap_usage_bytes: s.swap_usage,
        }))
    }

    type AttachStream = tokio_stream::wrappers::ReceiverStream<Result<AttachOutput, Status>>;

    async fn attach(
        &self,
        request: Request<tonic::Streaming<AttachInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut input = request.into_inner();
        let mut output = self.inner.output.subscribe();
        let mut io_closed = self.inner.io_closed.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        // Output: until the container's stdio is closed or the attacher goes.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    o = output.recv() => match o {
                        Ok((stream, data)) => {
                            let stream = match stream {
                                crate::io::Stream::Stdout => attach_output::Stream::Stdout,
                                crate::io::Stream::Stderr => attach_output::Stream::Stderr,
                            };
                            let msg = AttachOutput { stream: stream as i32, data: data.to_vec() };
                            if tx.send(Ok(msg)).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("an attacher fell behind; {n} output chunks skipped");
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    _ = async {
                        while !*io_closed.borrow_and_update() {
                            if io_closed.changed().await.is_err() {
                                break;
                            }
                        }
                    } => return,
                }
            }
        });
        // Input: stdin and resizes, until the attacher's stream ends.
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let close_stdin = |inner: Arc<Inner>| async move {
                if inner.stdin_once {
                    // stdin_once: the container sees EOF when its first attacher is done.
                    inner.stdin.lock().await.take();
                }
            };
            while let Ok(Some(msg)) = input.message().await {
                match msg.input {
                    Some(attach_input::Input::Stdin(data)) => {
                        let stdin = inner.stdin.lock().await;
                        if let Some(w) = stdin.as_ref()
                            && let Err(e) = w.write_all(&data).await
                        {
                            tracing::info!("writing to the container's stdin: {e}");
                        }
                    }
                    Some(attach_input::Input::CloseStdin(_)) => {
                        close_stdin(inner.clone()).await;
                    }
                    Some(attach_input::Input::Resize(size)) => {
                        if let Some(console) = &inner.console {
                            let _ = berth_sys::console::set_window_size(
                                console.as_fd(),
                                size.width.into(),
                                size.height.into(),
                            );
                        }
                    }
                    None => {}
                }
            }
            close_stdin(inner).await;
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn reopen_log(
        &self,
        _: Request<ReopenLogRequest>,
    ) -> Result<Response<ReopenLogResponse>, Status> {
        self.inner.log.reopen().map_err(|e| {
            Status::internal(format!(
                "reopening {}: {e}",
                self.inner.log.path().display()
            ))
        })?;
        Ok(Response::new(ReopenLogResponse {}))
    }

    async fn shutdown(
        &self,
        request: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        let s = self.state();
        if s.status != ContainerStatus::Stopped {
            if !request.into_inner().force {
                return Err(Status::failed_precondition(format!(
                    "container is {}; stop it first or force",
                    status_name(s.status)
                )));
            }
            if !s.reaped {
                self.signal(libc::SIGKILL, true)?;
            }
            tokio::time::timeout(KILL_TIMEOUT, self.wait_stopped())
                .await
                .map_err(|_| {
                    Status::deadline_exceeded("the container did not stop after SIGKILL")
                })??;
        }
        tracing::info!("container {}: shutting down", self.inner.id);
        if let Some(cg) = &self.inner.cgroup {
            remove_cgroup(&self.inner.id, cg).await;
        }
        if let Some(tx) = self
            .inner
            .shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = tx.send(());
        }
        Ok(Response::new(ShutdownResponse {}))
    }
}

/// `message` cut to 4 KiB (on a character boundary) for a status: berthd's HTTP/2 client drops
/// the connection over a header list beyond 16 KiB.
fn short_message(mut message: String) -> String {
    const MAX: usize = 4096;
    if message.len() > MAX {
        let mut end = MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_from_stat() {
        let me = std::process::id() as i32;
        assert_eq!(parent_of(me), Some(nix::unistd::getppid().as_raw()));
        assert!(descendants(Pid::from_raw(me)).unwrap().contains(&me));
    }
}
