//! Creating the container's init process, and releasing it into the container's command.
//!
//! The shim forks the init while it is still single-threaded. A new PID namespace is entered
//! by the shim just around the fork (`unshare(CLONE_NEWPID)`, or `setns` to a pod's PID
//! namespace, then back), so the init is PID 1 of it. The child then joins or creates the other
//! namespaces, builds its rootfs, takes the container's identity and privileges, and reports to
//! the shim over a `SOCK_SEQPACKET` socketpair:
//!
//! ```text
//! child -> shim   "ready" (with the pty master as SCM_RIGHTS when process.terminal)
//!             or  "error <message>" and the child exits 1
//! shim -> child   "start"                                 (the Start RPC; EOF = give up)
//! child -> shim   EOF (the child's end is CLOEXEC: exec worked)
//!             or  "error <message>" and the child exits 126/127
//! ```

// The container's init is forked here and set up with libc calls (pty, domain name, _exit).
#![allow(unsafe_code)]

use berth_proto::exec_error;
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::panic::AssertUnwindSafe;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, socketpair};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{
    ForkResult, Pid, dup2_stderr, dup2_stdin, dup2_stdout, execve, fork, pipe2, setsid,
};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::bundle::Container;
use super::error::{Context, Error, Result};
use super::privileges;
use super::rootfs;
use super::security;
use crate::io::Stdio;
use berth_cgroups::{Cgroup, CreatedCgroup};

/// What the init sends when it is set up and waiting.
pub const READY: &[u8] = b"ready";
/// What the shim sends to let the init exec.
pub const START: &[u8] = b"start";
/// Prefix of an error report.
pub const ERROR_PREFIX: &str = "error ";

/// The PATH used when `process.env` has none (execvp's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which PID namespace the container's processes live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidNamespace {
    /// Its own (the init is PID 1): identified by the nsfs device and inode.
    Own { dev: u64, ino: u64 },
    /// A pod's or the host's, shared with other processes.
    Shared,
}

/// A container init process in the CREATED state.
#[derive(Debug)]
pub struct InitProcess {
    /// Its pid in the shim's PID namespace.
    pub pid: Pid,
    /// The shim's end of the sync socket (see the module docs).
    pub sync: OwnedFd,
    /// The shim's ends of the container's stdio.
    pub stdio: Stdio,
    pub pid_ns: PidNamespace,
    /// The container's cgroup (removed again if dropped before the shim keeps it); None when
    /// the spec names none.
    pub cgroup: Option<CreatedCgroup>,
}

/// The kernel's flag for a namespace type.
pub(crate) fn clone_flag(typ: LinuxNamespaceType) -> Result<CloneFlags> {
    Ok(match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Time => {
            return Err(Error::Unsupported(format!(
                "{typ} namespaces are not supported yet"
            )));
        }
    })
}

/// The child's ends of its stdio.
enum ChildStdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Tty,
}

/// `process.args` and `process.env` ready for execve, prepared before the fork.
#[derive(Debug)]
pub(crate) struct ExecPlan {
    arg0: String,
    args: Vec<CString>,
    env: Vec<CString>,
    path: String,
    /// `linux.seccomp`, compiled (loaded by the init, see `seccomp.rs` for when).
    pub(crate) seccomp: Option<super::seccomp::Filter>,
}

impl ExecPlan {
    pub(crate) fn new(process: &Process) -> Result<ExecPlan> {
        let cstr = |s: &str, what: &str| {
            CString::new(s)
                .map_err(|_| Error::InvalidSpec(format!("{what} {s:?} contains a NUL byte")))
        };
        let args: Vec<String> = process.args().clone().unwrap_or_default();
        let env: Vec<String> = process.env().clone().unwrap_or_default();
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        Ok(ExecPlan {
            arg0: args.first().cloned().unwrap_or_default(),
            args: args
                .iter()
                .map(|a| cstr(a, "process.args"))
                .collect::<Result<_>>()?,
            env: env
                .iter()
                .map(|e| cstr(e, "process.env"))
                .collect::<Result<_>>()?,
            path,
            seccomp: None,
        })
    }

    /// execve the command, looking args[0] up in PATH when it has no '/'. Returns only on error.
    pub(crate) fn exec(&self) -> Error {
        let arg0 = &self.arg0;
        if arg0.contains('/') {
            return match CString::new(arg0.as_str()) {
                Ok(p) => exec_error(arg0, failed(execve(&p, &self.args, &self.env))),
                Err(_) => exec_error(arg0, Errno::EINVAL),
            };
        }
        let mut denied = false;
        for dir in self.path.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let Ok(candidate) = CString::new(format!("{dir}/{arg0}")) else {
                continue;
            };
            match failed(execve(&candidate, &self.args, &self.env)) {
                Errno::ENOENT | Errno::ENOTDIR => {}
                Errno::EACCES => denied = true,
                e => return exec_error(arg0, e),
            }
        }
        if denied {
            exec_error(arg0, Errno::EACCES)
        } else {
            Error::Exec {
                code: exec_error::NOT_FOUND,
                message: format!("exec: {arg0:?}: executable file not found in $PATH"),
            }
        }
    }
}

/// The error of a call that only returns on failure (execve).
fn failed(res: nix::Result<Infallible>) -> Errno {
    match res {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// 127 when there is nothing to run, 126 when it cannot be run (as a shell says).
fn exec_error(arg0: &str, e: Errno) -> Error {
    let code = if e == Errno::ENOENT {
        exec_error::NOT_FOUND
    } else {
        exec_error::NOT_EXECUTABLE
    };
    let what = match e {
        Errno::ENOENT => "no such file or directory".to_string(),
        Errno::EACCES => "permission denied".to_string(),
        e => e.desc().to_lowercase(),
    };
    Error::Exec {
        code,
        message: format!("exec: {arg0:?}: {what}"),
    }
}

/// Refuse to fork if any other thread exists: a child of a multi-threaded process may inherit
/// locks held by threads that do not exist in it.
pub(crate) fn check_single_threaded() -> Result<()> {
    let threads = std::fs::read_dir("/proc/self/task")
        .ctx(|| "reading /proc/self/task")?
        .count();
    if threads != 1 {
        return Err(Error::Init(format!(
            "refusing to fork the container init from a process with {threads} threads"
        )));
    }
    Ok(())
}

/// Create the container's init process and wait until it is set up (CREATED) or failed.
///
/// `close_in_child` are descriptors of the shim the init must not hold even until its exec (the
/// handshake pipe: berthd reads it to EOF). Must be called while the process is single-threaded
/// (before any runtime starts).
pub fn create(
    c: &Container,
    stdin: bool,
    close_in_child: &[BorrowedFd<'_>],
) -> Result<InitProcess> {
    check_single_threaded()?;
    let process = c
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("process is not set".into()))?;
    let mut plan = ExecPlan::new(process)?;
    plan.seccomp = super::seccomp::Filter::for_container(c)?;
    let cgroup = create_cgroup(c)?;

    // Namespaces to join are opened here, in the host's mount namespace.
    let mut joins = Vec::new();
    for ns in c.namespaces() {
        if let Some(path) = ns.path() {
            let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .ctx(|| format!("opening the {} namespace {}", ns.typ(), path.display()))?;
            joins.push((ns.typ(), fd));
        }
    }

    let (shim_sock, child_sock) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "creating the sync socket")?;

    let (child_stdio, shim_stdio) = if c.terminal() {
        (ChildStdio::Tty, None)
    } else {
        // stdin: a pipe the shim writes attachers' input into, or /dev/null.
        let (stdin, stdin_w) = if stdin {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).ctx(|| "creating the stdin pipe")?;
            (r, Some(w))
        } else {
            let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
                .ctx(|| "opening /dev/null")?;
            (null, None)
        };
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).ctx(|| "creating the stdout pipe")?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).ctx(|| "creating the stderr pipe")?;
        (
            ChildStdio::Pipes {
                stdin,
                stdout: out_w,
                stderr: err_w,
            },
            Some(Stdio::Pipes {
                stdin: stdin_w,
                stdout: out_r,
                stderr: err_r,
            }),
        )
    };

    let restore = enter_pid_namespace(c, &joins)?;
    // SAFETY: the process is single-threaded (checked above), so the child gets a consistent
    // copy of every lock and allocator state; it only runs `init_child` and then execs or _exits.
    let forked = unsafe { fork() };
    if let (Some(orig), Ok(ForkResult::Parent { .. }) | Err(_)) = (&restore, &forked)
        && let Err(e) = setns(orig, CloneFlags::CLONE_NEWPID)
    {
        tracing::error!("restoring the shim's PID namespace for children: {e}");
    }
    let child = match forked.ctx(|| "forking the container init")? {
        ForkResult::Child => {
            for fd in close_in_child {
                // SAFETY: in the child only; the OwnedFds behind these borrows live in frames
                // that never resume here (the child execs or _exits), so nothing uses or closes
                // them again.
                unsafe { libc::close(fd.as_raw_fd()) };
            }
            drop(shim_sock);
            drop(shim_stdio);
            drop(restore);
            child_main(
                c,
                child_sock,
                child_stdio,
                joins,
                plan,
                cgroup.as_ref().map(CreatedCgroup::cgroup),
            )
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_sock);
    drop(child_stdio);
    drop(joins);

    let report = match recv_report(shim_sock.as_fd()) {
        Ok(r) => r,
        Err(e) => {
            kill_and_reap(child);
            return Err(e).ctx(|| "reading the init's report");
        }
    };
    let stdio = match report {
        Report::Ready(master) => match (shim_stdio, master) {
            (Some(pipes), None) => pipes,
            (None, Some(master)) => Stdio::Tty { master },
            _ => {
                kill_and_reap(child);
                return Err(Error::Init(
                    "the init sent no terminal (or an unexpected one)".into(),
                ));
            }
        },
        Report::Error(msg) => {
            kill_and_reap(child);
            return Err(Error::Init(msg));
        }
        Report::Eof => {
            let status = waitpid(child, None);
            return Err(Error::Init(format!(
                "the container init exited during setup: {status:?}"
            )));
        }
    };

    // Set up and not yet running the container's code: now the limits (runc's order).
    if let Err(e) = apply_resources(c, cgroup.as_ref()) {
        kill_and_reap(child);
        return Err(e);
    }
    let pid_ns = if c.creates_namespace(LinuxNamespaceType::Pid) {
        let meta = match std::fs::metadata(format!("/proc/{child}/ns/pid")) {
            Ok(m) => m,
            Err(e) => {
                kill_and_reap(child);
                return Err(e).ctx(|| "reading the container's PID namespace");
            }
        };
        PidNamespace::Own {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    } else {
        PidNamespace::Shared
    };
    Ok(InitProcess {
        pid: child,
        sync: shim_sock,
        stdio,
        pid_ns,
        cgroup,
    })
}

/// Create the cgroup `linux.cgroupsPath` names (None: the spec names none, the container runs
/// in the shim's cgroups).
///
/// The init joins it itself, first thing after the fork, before it creates namespaces or runs
/// anything of the container; the resources are applied by the shim once the init reports it
/// is set up and before it may exec (runc's order: the rootfs setup may mknod and open devices
/// the device rules would refuse).
fn create_cgroup(c: &Container) -> Result<Option<CreatedCgroup>> {
    let Some(path) = c
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
    else {
        tracing::info!("no linux.cgroupsPath: the container gets no cgroup of its own");
        return Ok(None);
    };
    Ok(Some(CreatedCgroup::create(Cgroup::for_host(path)?)?))
}

/// Apply the container's `linux.resources` to its cgroup.
fn apply_resources(c: &Container, cgroup: Option<&CreatedCgroup>) -> Result<()> {
    if let (Some(cg), Some(r)) = (
        cgroup,
        c.spec.linux().as_ref().and_then(|l| l.resources().as_ref()),
    ) {
        cg.cgroup()
            .apply(r)
            .map_err(|e| e.context("applying linux.resources"))?;
    }
    Ok(())
}

/// Point the shim's next child at the container's PID namespace; returns the namespace to go
/// back to.
fn enter_pid_namespace(
    c: &Container,
    joins: &[(LinuxNamespaceType, OwnedFd)],
) -> Result<Option<OwnedFd>> {
    let Some(ns) = c
        .namespaces()
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Pid)
    else {
        return Ok(None);
    };
    let orig = open(
        "/proc/self/ns/pid",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening the shim's PID namespace")?;
    match joins.iter().find(|(t, _)| *t == LinuxNamespaceType::Pid) {
        Some((_, fd)) => setns(fd, CloneFlags::CLONE_NEWPID).ctx(|| {
            format!(
                "joining the PID namespace {}",
                ns.path().as_deref().unwrap_or(Path::new("")).display()
            )
        })?,
        None => unshare(CloneFlags::CLONE_NEWPID).ctx(|| "creating a PID namespace")?,
    }
    Ok(Some(orig))
}

pub(crate) fn kill_and_reap(pid: Pid) {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

/// What the init reported.
#[derive(Debug)]
pub enum Report {
    Ready(Option<OwnedFd>),
    Error(String),
    Eof,
}

/// Read one report from the init (blocking).
pub fn recv_report(sock: BorrowedFd<'_>) -> nix::Result<Report> {
    let mut buf = vec![0u8; 64 * 1024];
    let (n, fd) = berth_sys::console::recv_fd(sock, &mut buf).map_err(errno)?;
    Ok(parse_report(&buf[..n], fd))
}

/// Interpret one message from the init.
pub fn parse_report(msg: &[u8], fd: Option<OwnedFd>) -> Report {
    if msg.is_empty() {
        return Report::Eof;
    }
    if msg == READY {
        return Report::Ready(fd);
    }
    let text = String::from_utf8_lossy(msg);
    Report::Error(text.strip_prefix(ERROR_PREFIX).unwrap_or(&text).to_string())
}

pub(crate) fn send_msg(
    sock: BorrowedFd<'_>,
    msg: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> nix::Result<()> {
    berth_sys::console::send_fd(sock, msg, fd).map_err(errno)
}

/// The errno of an OS error (berth-sys reports only those).
fn errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Let the init exec (the Start RPC). Fails when the init is gone.
pub fn send_start(sock: BorrowedFd<'_>) -> nix::Result<()> {
    send_msg(sock, START, None)
}

/// The init child: set everything up, report, wait, exec. Never returns.
fn child_main(
    c: &Container,
    sock: OwnedFd,
    stdio: ChildStdio,
    joins: Vec<(LinuxNamespaceType, OwnedFd)>,
    plan: ExecPlan,
    cgroup: Option<&Cgroup>,
) -> ! {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        init_child(c, &sock, stdio, joins, &plan, cgroup)
    }));
    let (code, message) = match result {
        Ok(Ok(never)) => match never {},
        Ok(Err(Error::Exec { code, message })) => (code, message),
        Ok(Err(e)) => (1, e.to_string()),
        Err(_) => (1, "the container init panicked".to_string()),
    };
    let _ = send_msg(
        sock.as_fd(),
        format!("{ERROR_PREFIX}{message}").as_bytes(),
        None,
    );
    // SAFETY: _exit ends the process at once, without running the shim's exit handlers.
    unsafe { libc::_exit(code) }
}

fn init_child(
    c: &Container,
    sock: &OwnedFd,
    stdio: ChildStdio,
    joins: Vec<(LinuxNamespaceType, OwnedFd)>,
    plan: &ExecPlan,
    cgroup: Option<&Cgroup>,
) -> Result<Infallible> {
    // Into the container's cgroup before anything else (and before a cgroup namespace).
    if let Some(cg) = cgroup {
        cg.join()?;
    }
    let process = c
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("process is not set".into()))?;
    security::reset_signals()?;
    nix::sys::stat::umask(Mode::empty());
    setsid().ctx(|| "setsid")?;

    // Namespaces: join the given ones (the PID namespace was set at fork; the user namespace
    // is joined last, below), then create the rest.
    let mut userns = None;
    for (typ, fd) in joins {
        match typ {
            LinuxNamespaceType::Pid => {}
            LinuxNamespaceType::User => userns = Some(fd),
            _ => setns(&fd, clone_flag(typ)?).ctx(|| format!("joining the {typ} namespace"))?,
        }
    }
    let mut new = CloneFlags::empty();
    for ns in c.namespaces() {
        if ns.path().is_none() && ns.typ() == LinuxNamespaceType::User {
            return Err(Error::Unsupported(
                "a user namespace must be given by path (berthd pins the pod's)".into(),
            ));
        }
        if ns.path().is_none() && ns.typ() != LinuxNamespaceType::Pid {
            new |= clone_flag(ns.typ())?;
        }
    }
    unshare(new).ctx(|| format!("creating namespaces {new:?}"))?;

    if let ChildStdio::Pipes {
        stdin,
        stdout,
        stderr,
    } = &stdio
    {
        dup2_stdin(stdin).ctx(|| "setting up stdin")?;
        dup2_stdout(stdout).ctx(|| "setting up stdout")?;
        dup2_stderr(stderr).ctx(|| "setting up stderr")?;
    }
    drop(stdio);

    rootfs::prepare(c, cgroup)?;
    rootfs::pivot(&c.rootfs)?;
    set_uts(c)?;
    apply_sysctls(c)?;
    rootfs::finish(c)?;

    let master = if c.terminal() {
        Some(open_tty(process)?)
    } else {
        None
    };

    // Identity and privileges, most privileged steps first (the last one may be seccomp).
    privileges::apply(
        process,
        userns.as_ref(),
        plan.seccomp.as_ref(),
        privileges::Mode::Init,
    )?;
    drop(userns);

    send_msg(sock.as_fd(), READY, master.as_ref().map(|m| m.as_fd())).ctx(|| "reporting ready")?;
    drop(master);

    // CREATED: wait for the Start RPC. EOF means the shim is gone: leave quietly.
    let mut buf = [0u8; 16];
    loop {
        match nix::sys::socket::recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) if &buf[..n] == START => break,
            Ok(_) => {
                // SAFETY: _exit ends the process without running the shim's exit handlers.
                unsafe { libc::_exit(1) }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => {
                // SAFETY: as above.
                unsafe { libc::_exit(1) }
            }
        }
    }
    Err(plan.exec())
}

/// Hostname and domain name, only in a UTS namespace of the container's own.
fn set_uts(c: &Container) -> Result<()> {
    let own = c.creates_namespace(LinuxNamespaceType::Uts);
    if let Some(name) = c.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if own {
            nix::unistd::sethostname(name).ctx(|| format!("setting hostname {name:?}"))?;
        } else {
            tracing::info!(
                "hostname {name:?} not set: the container has no UTS namespace of its own"
            );
        }
    }
    if let Some(name) = c.spec.domainname().as_deref().filter(|h| !h.is_empty())
        && own
    {
        // SAFETY: setdomainname reads `len` bytes from a valid buffer.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        if rc != 0 {
            return Err(nix::Error::last()).ctx(|| format!("setting domainname {name:?}"));
        }
    }
    Ok(())
}

/// `linux.sysctl`: written under /proc/sys (the container's own /proc, before it is read-only).
fn apply_sysctls(c: &Container) -> Result<()> {
    let Some(sysctls) = c.spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    write_sysctls(Path::new("/proc/sys"), sysctls)
}

/// Each sysctl written to its file under `proc_sys`, which must be on procfs.
fn write_sysctls(
    proc_sys: &Path,
    sysctls: &std::collections::HashMap<String, String>,
) -> Result<()> {
    let mut keys: Vec<&String> = sysctls.keys().collect();
    keys.sort();
    for key in keys {
        let rel = key.replace('.', "/");
        if rel.is_empty() || rel.split('/').any(|p| p.is_empty() || p == "..") {
            return Err(Error::InvalidSpec(format!("bad sysctl name {key:?}")));
        }
        let value = &sysctls[key];
        security::write_proc(&proc_sys.join(&rel), value.as_bytes())
            .ctx(|| format!("setting sysctl {key}={value}"))?;
    }
    Ok(())
}

/// Open a pty in the container's own devpts and make it the init's controlling terminal and
/// stdio; returns the master for the shim.
pub(crate) fn open_tty(process: &Process) -> Result<OwnedFd> {
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/ptmx")
        .ctx(|| "opening /dev/ptmx")?
        .into();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(nix::Error::last()).ctx(|| "unlocking the pty");
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor for the slave side.
    let raw = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(nix::Error::last()).ctx(|| "opening the pty slave");
    }
    // SAFETY: `raw` is a descriptor the kernel just returned to us, owned by nobody else.
    let slave = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Some(size) = process.console_size() {
        berth_sys::console::set_window_size(slave.as_fd(), size.width(), size.height())
            .map_err(errno)
            .ctx(|| "setting the console size")?;
    }
    // The user owns its terminal, as a login would.
    nix::unistd::fchown(
        &slave,
        Some(nix::unistd::Uid::from_raw(process.user().uid())),
        None,
    )
    .ctx(|| "chown the pty")?;
    // SAFETY: TIOCSCTTY takes an integer argument; we are a session leader without a terminal.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(nix::Error::last()).ctx(|| "making the pty the controlling terminal");
    }
    dup2_stdin(&slave).ctx(|| "pty as stdin")?;
    dup2_stdout(&slave).ctx(|| "pty as stdout")?;
    dup2_stderr(&slave).ctx(|| "pty as stderr")?;
    Ok(master)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        assert!(matches!(parse_report(b"", None), Report::Eof));
        assert!(matches!(parse_report(b"ready", None), Report::Ready(None)));
        match parse_report(b"error mounting proc: EPERM", None) {
            Report::Error(m) => assert_eq!(m, "mounting proc: EPERM"),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn exec_errors_have_shell_codes() {
        match exec_error("x", Errno::ENOENT) {
            Error::Exec { code, message } => {
                assert_eq!(code, 127);
                assert_eq!(message, "exec: \"x\": no such file or directory");
            }
            e => panic!("{e}"),
        }
        assert!(matches!(
            exec_error("x", Errno::EACCES),
            Error::Exec { code: 126, .. }
        ));
        assert!(matches!(
            exec_error("x", Errno::ENOEXEC),
            Error::Exec { code: 126, .. }
        ));
    }

    #[test]
    fn sysctls_are_written_to_procfs_only() {
        // A directory standing in for /proc/sys (a volume over /proc): refused, untouched.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("net/ipv4")).unwrap();
        std::fs::write(d.path().join("net/ipv4/ip_forward"), "0").unwrap();
        let sysctls = [("net.ipv4.ip_forward".to_string(), "1".to_string())].into();
        let e = write_sysctls(d.path(), &sysctls).unwrap_err();
        assert!(e.to_string().contains("not on procfs"), "{e}");
        assert_eq!(
            std::fs::read_to_string(d.path().join("net/ipv4/ip_forward")).unwrap(),
            "0"
        );
    }

    #[test]
    fn exec_plan_takes_path_from_env() {
        let p: Process = serde_json::from_str(
            r#"{"args":["sh","-c","x"],"env":["A=1","PATH=/bin"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
        )
        .unwrap();
        let plan = ExecPlan::new(&p).unwrap();
        assert_eq!(plan.path, "/bin");
        assert_eq!(plan.arg0, "sh");
        assert_eq!(plan.args.len(), 3);
        let p: Process =
            serde_json::from_str(r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}"#).unwrap();
        assert_eq!(ExecPlan::new(&p).unwrap().path, DEFAULT_PATH);
    }
}
