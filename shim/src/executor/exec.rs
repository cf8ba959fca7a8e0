//! Running another process in a running container (CRI ExecSync / Exec), as `runc exec` does.
//!
//! `berth-shim exec` is a fresh, single-threaded process (no tokio runtime ever starts in it),
//! so it may setns and fork freely. It:
//!
//! 1. opens the namespaces of the container's init (`/proc/<pid>/ns/*`) for every namespace
//!    type the spec lists, and joins the container's cgroup itself;
//! 2. enters the init's PID namespace for its children and forks the exec process;
//! 3. the child joins the other namespaces (mount last), takes the container's identity and
//!    privileges exactly as the init did (rlimits, capabilities, user and groups, umask, cwd,
//!    no_new_privs, seccomp), asks for SIGKILL should the helper die, and execs;
//! 4. the helper forwards termination signals to the child, waits for it and exits with its
//!    status (128+signal when it was killed).
//!
//! The child reports a failure before its exec on a CLOEXEC pipe (`<code> <message>`); the
//! helper writes that message to the error file berthd gave it, so berthd can tell "the command
//! could not be started" from "the command ran and exited non-zero".

use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, pipe2, setsid};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::process::{ExecPlan, check_single_threaded, clone_flag};
use super::security::{self, CapSets};
use super::{Container, Context, Error, Result, cgroup};

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

/// The pid of the exec process, for the signal forwarder.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let child = CHILD.load(Ordering::Relaxed);
    if child > 0 {
        // SAFETY: kill is async-signal-safe and takes plain integers.
        unsafe { libc::kill(child, sig) };
    }
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
        LinuxNamespaceType::User | LinuxNamespaceType::Time => return None,
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
    for ns in c.namespaces() {
        let Some(name) = proc_name(ns.typ()) else {
            continue;
        };
        let path = proc_dir.join("ns").join(name);
        let fd = open(&path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| format!("opening {} (is the container running?)", path.display()))?;
        if ns.typ() == LinuxNamespaceType::Pid {
            pid_ns = Some(fd);
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
        console,
    })
}

/// Join the cgroup, fork into the PID namespace, wait. The outer error is a failure to start.
fn launch(c: &Container, p: Prepared) -> Result<Outcome> {
    // Into the container's cgroup first: the child inherits it, limits and all.
    if let Some(path) = c
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
    {
        cgroup::Cgroup::for_host(path)?.join()?;
    }
    if let Some(ns) = &p.pid_ns {
        setns(ns, CloneFlags::CLONE_NEWPID).ctx(|| "joining the container's PID namespace")?;
    }
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).ctx(|| "creating the report pipe")?;
    // SAFETY: the process is single-threaded (checked in prepare), so the child gets a
    // consistent copy of every lock and allocator state; it only runs `child_main`, which execs
    // or _exits.
    let child = match unsafe { fork() }.ctx(|| "forking the exec process")? {
        ForkResult::Child => {
            drop(err_r);
            child_main(&p, err_w)
        }
        ForkResult::Parent { child } => child,
    };
    drop(err_w);
    CHILD.store(child.as_raw(), Ordering::Relaxed);
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: the handler only calls kill(2), which is async-signal-safe.
        unsafe { libc::signal(sig, forward_signal as *const () as libc::sighandler_t) };
    }

    let report = read_all(&err_r);
    let status = loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    if !report.is_empty() {
        let text = String::from_utf8_lossy(&report);
        let (code, message) = match text.split_once(' ') {
            Some((code, msg)) => (code.parse().unwrap_or(1), msg.to_string()),
            None => (1, text.to_string()),
        };
        return Ok(Err(StartError { code, message }));
    }
    Ok(Ok(match status.ctx(|| "waiting for the exec process")? {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        other => {
            return Err(Error::Init(format!(
                "unexpected wait status of the exec process: {other:?}"
            )));
        }
    }))
}

/// Read a pipe to EOF (retrying on EINTR).
fn read_all(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(_) => return out,
        }
    }
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
    // getppid() as seen now (0 when the parent is outside our PID namespace): if it changes,
    // the helper died.
    let parent = nix::unistd::getppid();
    security::reset_signals()?;
    setsid().ctx(|| "setsid")?;
    for (typ, fd) in &p.joins {
        setns(fd, clone_flag(*typ)?).ctx(|| format!("joining the container's {typ} namespace"))?;
    }
    let process = &p.process;
    if let Some(console) = &p.console {
        // A pty of the container's own devpts, the command's terminal; the master goes out.
        let master = super::process::open_tty(process)?;
        super::process::send_msg(console.as_fd(), b"pty", Some(master.as_fd()))
            .ctx(|| "sending the pty master")?;
    }
    if let Some(adj) = process.oom_score_adj()
        && let Some(warning) = security::set_oom_score_adj(adj)
    {
        tracing::warn!("{warning}");
    }
    security::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    security::apply_apparmor(process.apparmor_profile().as_deref())?;
    let caps = match process.capabilities() {
        Some(spec_caps) => {
            let mut sets = CapSets::from_spec(spec_caps);
            let (_, permitted, _) = security::get_caps()?;
            sets.limit_to(permitted);
            security::drop_bounding_set(sets.bounding)?;
            Some(sets)
        }
        None => None,
    };
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let Some(filter) = p.plan.seccomp.as_ref().filter(|_| !nnp) {
        filter.load()?;
    }
    security::switch_user(process.user(), caps.is_some())?;
    if let Some(sets) = &caps {
        security::apply_capabilities(sets)?;
    }
    // After the user switch (a credential change clears it): die with the helper.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).ctx(|| "PR_SET_PDEATHSIG")?;
    if nix::unistd::getppid() != parent {
        return Err(Error::Init("the exec helper is gone".into()));
    }
    nix::sys::stat::umask(Mode::from_bits_truncate(
        process.user().umask().unwrap_or(0o022) as libc::mode_t,
    ));
    std::env::set_current_dir(process.cwd())
        .ctx(|| format!("chdir to cwd {}", process.cwd().display()))?;
    if nnp {
        security::set_no_new_privs()?;
    }
    // Nothing of the helper's may leak into the container: 0, 1, 2 only.
    // SAFETY: close_range only flags descriptors; no memory is passed.
    unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    };
    if let Some(filter) = p.plan.seccomp.as_ref().filter(|_| nnp) {
        filter.load()?;
    }
    Err(p.plan.exec())
}

/// Write the start error for berthd (the file is created only on failure).
pub fn write_error_file(path: &Path, e: &StartError) -> std::io::Result<()> {
    std::fs::write(path, e.message.as_bytes())
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
    fn proc_names() {
        assert_eq!(proc_name(LinuxNamespaceType::Mount), Some("mnt"));
        assert_eq!(proc_name(LinuxNamespaceType::Network), Some("net"));
        assert_eq!(proc_name(LinuxNamespaceType::User), None);
    }
}
