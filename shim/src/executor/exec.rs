//! Running another process in a running container (CRI ExecSync / Exec), as `runc exec` does.
//!
//! `berth-shim exec` is a fresh, single-threaded process (no tokio runtime ever starts in it),
//! so it may setns and fork freely. It:
//!
//! 1. opens the namespaces of the container's init (`/proc/<pid>/ns/*`) for every namespace
//!    type the spec lists, and joins the container's cgroup itself;
//! 2. enters the init's PID namespace for its children and forks a reaper there, which joins
//!    the other namespaces (mount last), becomes the child subreaper and forks the command;
//! 3. the command takes the container's identity and privileges with the init's own sequence
//!    (`privileges.rs`: rlimits, capabilities, user and groups, umask, cwd, no_new_privs,
//!    seccomp), asking there for SIGKILL should the reaper die, and execs;
//! 4. the helper waits for the command's status and exits with it (128+signal when it was
//!    killed); SIGTERM, SIGINT, SIGHUP or SIGQUIT end the exec instead: the command and every
//!    process it started are killed and reaped before the helper exits (see [`launch`]).
//!
//! The child reports a failure before its exec on a CLOEXEC pipe (`<code> <message>`); the
//! helper writes that message to the error file berthd gave it, so berthd can tell "the command
//! could not be started" from "the command ran and exited non-zero".

// The exec helper forks, installs signal handlers, waits and _exits with libc calls.
#![allow(unsafe_code)]

use std::convert::Infallible;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::bundle::Container;
use super::error::{Context, Error, Result};
use super::privileges;
use super::process::{ExecPlan, check_single_threaded, clone_flag};
use super::security;

/// What to run, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Host pid of the container's init (its namespaces are the container's).
    pub pid: i32,
    /// The command and its arguments; PATH lookup as for the container's own command.
    pub args: Vec<String>,
    /// Run on a new pty (opened in the container's devpts, the command's controlling terminal);
    /// its master is sent over this unix socket (SCM_RIGHTS), as runc's `--console-socket`.
    pub console_socket: Option<std::path::PathBuf>,
    /// The terminal's initial size (columns, rows).
    pub console_size: Option<(u16, u16)>,
}

/// The /proc name of a namespace type.
fn proc_name(typ: LinuxNamespaceType) -> Option<&'static str> {
    Some(match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Time => return None,
    })
}

/// The order the exec process joins namespaces in: the mount namespace last (it changes what
/// paths mean), the PID namespace before the fork.
const JOIN_ORDER: [LinuxNamespaceType; 5] = [
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

/// How a failed start is reported: the exit code to use and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    pub code: i32,
    pub message: String,
}

/// The outcome of an exec: the process's exit status, or why it never ran.
pub type Outcome = std::result::Result<i32, StartError>;

/// Run `req` in container `c` and wait for it. Must be called while single-threaded.
pub fn run(c: &Container, req: &ExecRequest) -> Outcome {
    let fail = |e: Error| StartError {
        code: match &e {
            Error::Exec { code, .. } => *code,
            _ => 1,
        },
        message: match e {
            Error::Exec { message, .. } => message,
            e => e.to_string(),
        },
    };
    let prepared = prepare(c, req).map_err(fail)?;
    launch(c, prepared).map_err(fail)?
}

/// Everything opened and checked before the fork.
struct Prepared {
    plan: ExecPlan,
    process: Process,
    joins: Vec<(LinuxNamespaceType, OwnedFd)>,
    pid_ns: Option<OwnedFd>,
    /// The container's user namespace: the command joins it last (after its rlimits).
    userns: Option<OwnedFd>,
    /// Connected to the console socket (before any setns: its path is a host path).
    console: Option<OwnedFd>,
}

fn prepare(c: &Container, req: &ExecRequest) -> Result<Prepared> {
    check_single_threaded()?;
    if req.args.is_empty() || req.args[0].is_empty() {
        return Err(Error::InvalidSpec("the exec command is empty".into()));
    }
    let mut process = c
        .spec
        .process()
        .clone()
        .ok_or_else(|| Error::InvalidSpec("process is not set".into()))?;
    process.set_args(Some(req.args.clone()));
    process.set_terminal(Some(req.console_socket.is_some()));
    // A terminal session gets TERM=xterm unless the container has a TERM (containerd's).
    let mut env = process.env().clone().unwrap_or_default();
    if req.console_socket.is_some() && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
        process.set_env(Some(env));
    }
    if let Some((w, h)) = req.console_size {
        let size = oci_spec::runtime::BoxBuilder::default()
            .width(u64::from(w))
            .height(u64::from(h))
            .build()
            .map_err(|e| Error::InvalidSpec(format!("console size: {e}")))?;
        process.set_console_size(Some(size));
    }
    let mut plan = ExecPlan::new(&process)?;
    plan.seccomp = super::seccomp::Filter::for_container(c)?;

    let proc_dir = Path::new("/proc").join(req.pid.to_string());
    let mut joins = Vec::new();
    let mut pid_ns = None;
    let mut userns = None;
    for ns in c.namespaces() {
        let Some(name) = proc_name(ns.typ()) else {
            continue;
        };
        let path = proc_dir.join("ns").join(name);
        let fd = open(&path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| format!("opening {} (is the container running?)", path.display()))?;
        if ns.typ() == LinuxNamespaceType::Pid {
            pid_ns = Some(fd);
        } else if ns.typ() == LinuxNamespaceType::User {
            userns = Some(fd);
        } else {
            joins.push((ns.typ(), fd));
        }
    }
    // The pid must still be the container's init: its root is the container's rootfs mount, not
    // ours (a recycled pid would most likely be a host process).
    let ours = std::fs::metadata("/proc/self/ns/mnt").ctx(|| "reading /proc/self/ns/mnt")?;
    let theirs = std::fs::metadata(proc_dir.join("ns/mnt"))
        .ctx(|| format!("reading the mount namespace of pid {}", req.pid))?;
    if c.creates_namespace(LinuxNamespaceType::Mount)
        && (ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino())
    {
        return Err(Error::Init(format!(
            "pid {} is not the container's init any more",
            req.pid
        )));
    }
    joins.sort_by_key(|(typ, _)| JOIN_ORDER.iter().position(|t| t == typ));
    let console = match &req.console_socket {
        Some(path) => Some(OwnedFd::from(
            std::os::unix::net::UnixStream::connect(path)
                .ctx(|| format!("connecting to the console socket {}", path.display()))?,
        )),
        None => None,
    };
    Ok(Prepared {
        plan,
        process,
        joins,
        pid_ns,
        userns,
        console,
    })
}

/// Join the cgroup, fork the reaper into the PID namespace, wait. The outer error is a failure
/// to start.
///
/// The process tree, so that nothing of an exec outlives an ended exec (a timeout, a client gone)
/// whatever the container's PID 1 does with orphans (critest runs `top` as PID 1, which never
/// reaps):
///
/// ```text
/// berth-shim exec (host PID namespace; SIGTERM/SIGINT/SIGHUP end the exec)
///  └─ reaper (container PID namespace and namespaces, child subreaper, not dumpable)
///      └─ command (what was asked for), and everything it starts
/// ```
///
/// The reaper reports the command's wait status on a pipe and reaps every orphan of the
/// command's tree (they are re-parented to it, not to the container's PID 1). When the command
/// exits on its own the helper ends the reaper and anything the command left in the background
/// stays, as with `runc exec`. When the helper is told to end the exec it kills the reaper's
/// whole tree until the reaper has no child left, then the reaper: every process the command
/// started is gone and reaped when the helper exits.
fn launch(c: &Container, p: Prepared) -> Result<Outcome> {
    // Into the container's cgroup first: the children inherit it, limits and all.
    if let Some(path) = c
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
    {
        berth_cgroups::Cgroup::for_host(path)?.join()?;
    }
    if let Some(ns) = &p.pid_ns {
        setns(ns, CloneFlags::CLONE_NEWPID).ctx(|| "joining the container's PID namespace")?;
    }
    let (sig_r, sig_w) =
        pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ctx(|| "creating the signal pipe")?;
    SIGNAL_PIPE.store(sig_w.as_raw_fd(), Ordering::Relaxed);
    for sig in ENDING_SIGNALS {
        let action = SigAction::new(
            SigHandler::Handler(note_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler only calls write(2) on a non-blocking pipe, which is
        // async-signal-safe; installed before the fork, reset in the children.
        unsafe { sigaction(sig, &action) }.ctx(|| format!("installing a {sig} handler"))?;
    }
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).ctx(|| "creating the report pipe")?;
    let (status_r, status_w) = pipe2(OFlag::O_CLOEXEC).ctx(|| "creating the status pipe")?;
    // SAFETY: the process is single-threaded (checked in prepare), so the child gets a
    // consistent copy of every lock and allocator state; it only runs `reaper_main`, which
    // _exits.
    let reaper = match unsafe { fork() }.ctx(|| "forking the exec reaper")? {
        ForkResult::Child => {
            drop((err_r, status_r, sig_r, sig_w));
            reaper_main(&p, err_w, status_w)
        }
        ForkResult::Parent { child } => child,
    };
    drop((err_w, status_w));

    let mut report = Vec::new();
    let mut err_open = true;
    let mut status_bytes = Vec::new();
    let ended = loop {
        let mut fds = vec![
            PollFd::new(status_r.as_fd(), PollFlags::POLLIN),
            PollFd::new(sig_r.as_fd(), PollFlags::POLLIN),
        ];
        if err_open {
            fds.push(PollFd::new(err_r.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => {
                kill_tree(reaper);
                return Err(Error::Init(format!("poll: {e}")));
            }
            Ok(_) => {}
        }
        let ready = |i: usize, fds: &[PollFd]| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (status_ready, sig_ready, err_ready) =
            (ready(0, &fds), ready(1, &fds), err_open && ready(2, &fds));
        drop(fds);
        if sig_ready {
            break true;
        }
        if err_ready && !read_some(&err_r, &mut report) {
            err_open = false;
        }
        if status_ready && !read_some(&status_r, &mut status_bytes) {
            // The reaper closed its end: it reported (or died trying).
            break false;
        }
    };
    if ended {
        kill_tree(reaper);
        return Ok(Ok(128 + libc::SIGKILL));
    }
    // The command is done; what it left in the background stays (the reaper goes, its orphans
    // pass to the container's PID 1, as they would have without it).
    let _ = nix::sys::signal::kill(reaper, Signal::SIGKILL);
    let _ = wait_eintr(reaper);
    if err_open {
        while read_some(&err_r, &mut report) {}
    }
    if !report.is_empty() {
        let text = String::from_utf8_lossy(&report);
        let (code, message) = match text.split_once(' ') {
            Some((code, msg)) => (code.parse().unwrap_or(1), msg.to_string()),
            None => (1, text.to_string()),
        };
        return Ok(Err(StartError { code, message }));
    }
    let raw: [u8; 4] = status_bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Init("the exec reaper died before the command ended".into()))?;
    Ok(Ok(decode_status(i32::from_ne_bytes(raw))))
}

/// Signals that end an exec: the command and all it started are killed.
const ENDING_SIGNALS: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Write end of the helper's self-pipe (poll wakes on a signal without a race).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn note_signal(_sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Read what is there; false at EOF (or an error other than EINTR/EAGAIN).
fn read_some(fd: &OwnedFd, out: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                return true;
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return true,
            Err(_) => return false,
        }
    }
}

fn wait_eintr(pid: Pid) -> nix::Result<WaitStatus> {
    loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// A raw wait status as an exit code: the code, or 128+signal.
fn decode_status(raw: i32) -> i32 {
    if libc::WIFEXITED(raw) {
        libc::WEXITSTATUS(raw)
    } else if libc::WIFSIGNALED(raw) {
        128 + libc::WTERMSIG(raw)
    } else {
        255
    }
}

/// The reaper: joins the container's namespaces, becomes the subreaper of the command's tree,
/// forks the command, reports its wait status (4 bytes, native order) and reaps until no child
/// is left. Never returns.
fn reaper_main(p: &Prepared, report: OwnedFd, status: OwnedFd) -> ! {
    let fail = |report: &OwnedFd, e: Error| -> ! {
        let _ = nix::unistd::write(report, format!("1 {e}").as_bytes());
        // SAFETY: _exit ends the process at once, without running exit handlers.
        unsafe { libc::_exit(1) }
    };
    if let Err(e) = reaper_setup(p) {
        fail(&report, e)
    }
    // SAFETY: still single-threaded (a fork of a single-threaded process); the child only runs
    // `child_main`, which execs or _exits.
    let command = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(status);
            child_main(p, report)
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail(
            &report,
            Error::Init(format!("forking the exec process: {e}")),
        ),
    };
    drop(report);
    let mut status = Some(status);
    loop {
        let mut raw: libc::c_int = 0;
        // SAFETY: waitpid writes the status into a local integer.
        let pid = unsafe { libc::waitpid(-1, &mut raw, 0) };
        if pid == command.as_raw()
            && let Some(fd) = status.take()
        {
            let _ = nix::unistd::write(&fd, &raw.to_ne_bytes());
        }
        if pid < 0 && Errno::last() != Errno::EINTR {
            // No child left at all: nothing of the command remains.
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
    }
}

/// The reaper's own setup: default signals, not dumpable (no ptrace or /proc/<pid>/ handles from
/// the container's processes), dies with the helper, subreaper, then the container's namespaces.
fn reaper_setup(p: &Prepared) -> Result<()> {
    security::reset_signals()?;
    nix::sys::prctl::set_dumpable(false).ctx(|| "PR_SET_DUMPABLE")?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).ctx(|| "PR_SET_PDEATHSIG")?;
    nix::sys::prctl::set_child_subreaper(true).ctx(|| "PR_SET_CHILD_SUBREAPER")?;
    for (typ, fd) in &p.joins {
        setns(fd, clone_flag(*typ)?).ctx(|| format!("joining the container's {typ} namespace"))?;
    }
    Ok(())
}

/// Kill every descendant of `root` (host pids: the helper is in the host PID namespace) until
/// the reaper has reaped them all, then the reaper itself.
fn kill_tree(root: Pid) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let all = descendants(root);
        if all.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        for pid in all {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = nix::sys::signal::kill(root, Signal::SIGKILL);
    let _ = wait_eintr(root);
}

/// Every live or unreaped descendant of `root`, from `/proc/<pid>/stat` parent links.
fn descendants(root: Pid) -> Vec<Pid> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(stat_ppid)
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    tree_below(root.as_raw(), &parent_of)
        .into_iter()
        .map(Pid::from_raw)
        .collect()
}

/// The parent pid from a `/proc/<pid>/stat` line (the field after the state, after the comm,
/// which may hold spaces and parentheses).
fn stat_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The pids below `root` in a (pid, parent) list.
fn tree_below(root: i32, parent_of: &[(i32, i32)]) -> Vec<i32> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in parent_of {
            if ppid == p && pid != root && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// The exec child: set up, exec. Never returns.
fn child_main(p: &Prepared, report: OwnedFd) -> ! {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| setup_and_exec(p)));
    let (code, message) = match result {
        Ok(Ok(never)) => match never {},
        Ok(Err(Error::Exec { code, message })) => (code, message),
        Ok(Err(e)) => (1, e.to_string()),
        Err(_) => (1, "the exec process panicked".to_string()),
    };
    let _ = nix::unistd::write(&report, format!("{code} {message}").as_bytes());
    // SAFETY: _exit ends the process at once, without running exit handlers.
    unsafe { libc::_exit(code) }
}

fn setup_and_exec(p: &Prepared) -> Result<Infallible> {
    // getppid() as seen now (the reaper): if it changes, the reaper died.
    let parent = nix::unistd::getppid();
    security::reset_signals()?;
    setsid().ctx(|| "setsid")?;
    let process = &p.process;
    if let Some(console) = &p.console {
        // A pty of the container's own devpts, the command's terminal; the master goes out.
        let master = super::process::open_tty(process)?;
        super::process::send_msg(console.as_fd(), b"pty", Some(master.as_fd()))
            .ctx(|| "sending the pty master")?;
    }
    let mode = privileges::Mode::Exec { reaper: parent };
    privileges::apply(process, p.userns.as_ref(), p.plan.seccomp.as_ref(), mode)?;
    Err(p.plan.exec())
}

/// Write the start error for berthd (the file is created only on failure).
pub fn write_error_file(path: &Path, e: &StartError) -> std::io::Result<()> {
    berth_proto::exec_error::write(path, &e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_namespace_is_joined_last() {
        let mut v = [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Cgroup,
            LinuxNamespaceType::Uts,
        ];
        v.sort_by_key(|typ| JOIN_ORDER.iter().position(|t| t == typ));
        assert_eq!(v.last(), Some(&LinuxNamespaceType::Mount));
        assert_eq!(v.first(), Some(&LinuxNamespaceType::Ipc));
    }

    #[test]
    fn ppid_from_stat_with_awkward_names() {
        assert_eq!(stat_ppid("42 (sleep) S 7 42 42 0 -1"), Some(7));
        assert_eq!(stat_ppid("43 (a) b) (c) R 9 43 43 0"), Some(9));
        assert_eq!(stat_ppid("garbage"), None);
    }

    #[test]
    fn tree_below_finds_every_generation_and_nothing_else() {
        // 10 ─ 11 ─ 12 ─ 13; 10 ─ 14; 20 ─ 21 (unrelated)
        let links = [(11, 10), (12, 11), (13, 12), (14, 10), (21, 20), (10, 1)];
        let mut t = tree_below(10, &links);
        t.sort();
        assert_eq!(t, vec![11, 12, 13, 14]);
        assert!(tree_below(13, &links).is_empty());
    }

    #[test]
    fn wait_status_decoding() {
        assert_eq!(decode_status(3 << 8), 3);
        assert_eq!(decode_status(libc::SIGKILL), 128 + 9);
        assert_eq!(decode_status(0), 0);
    }

    #[test]
    fn proc_names() {
        assert_eq!(proc_name(LinuxNamespaceType::Mount), Some("mnt"));
        assert_eq!(proc_name(LinuxNamespaceType::Network), Some("net"));
        assert_eq!(proc_name(LinuxNamespaceType::User), Some("user"));
        assert_eq!(proc_name(LinuxNamespaceType::Time), None);
    }
}
