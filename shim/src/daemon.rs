//! Detaching from berthd and the one-line startup handshake.
//!
//! berthd starts the shim with a pipe on stdout and reads it to EOF. The shim keeps a CLOEXEC
//! copy of that pipe, double-forks (the middle process calls setsid), points its stdio at
//! /dev/null, and later writes exactly one line: `ok <init-pid>` or `error <message>`. The
//! first process exits 0 as soon as the middle one has forked.

// Daemonising is fork, _exit and taking over raw descriptors.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use berth_proto::handshake::Handshake;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid};

/// A CLOEXEC duplicate of stdout (the handshake pipe), taken before stdout goes to /dev/null.
pub fn take_handshake_pipe() -> io::Result<OwnedFd> {
    // SAFETY: fd 1 is open for the whole life of the process; we only borrow it to duplicate it.
    let stdout = unsafe { BorrowedFd::borrow_raw(1) };
    let raw = fcntl(stdout, FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Write the handshake line (`ok <pid>` / `error <message>`, see `berth_proto::handshake`).
pub fn write_handshake(pipe: OwnedFd, handshake: &Handshake) {
    let text = handshake.line();
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        match nix::unistd::write(pipe.as_fd(), rest) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            // berthd went away: nobody to tell; the shim carries on (berthd reconnects later).
            Err(_) => break,
        }
    }
}

/// Detach: returns in the grandchild (its own session's member, not a session leader, so it can
/// never acquire a terminal), with stdio on /dev/null and `/` as cwd. The calling process and the
/// middle one exit 0. Must be called while single-threaded.
pub fn daemonize() -> io::Result<()> {
    // SAFETY: single-threaded (documented precondition); the parent only waits and _exits.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            let _ = waitpid(child, None);
            // SAFETY: _exit skips destructors and atexit handlers that belong to the daemon.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Child => {}
    }
    setsid()?;
    // SAFETY: still single-threaded; the middle process only _exits.
    match unsafe { fork() }? {
        ForkResult::Parent { .. } => {
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Child => {}
    }
    let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())?;
    dup2_stdin(&null)?;
    dup2_stdout(&null)?;
    dup2_stderr(&null)?;
    std::env::set_current_dir("/")?;
    Ok(())
}

/// Close every descriptor from 3 up: the first thing a long-lived shim or pod-init does, before
/// it opens anything. berthd passes nothing but stdio, but whatever berthd itself inherited
/// without CLOEXEC (from flock(1), a shell, a careless parent) would otherwise stay open in a
/// process that outlives berthd by months (a lock held, a pipe never at EOF). As Go's os/exec,
/// which containerd's shims get for free.
pub fn close_inherited_fds() {
    // SAFETY: close_range passes no memory; nothing in this process owns a descriptor above 2
    // yet (called first thing in main, before any file is opened).
    unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
}

/// Mark every descriptor from 3 up close-on-exec, whatever berthd leaked to us.
pub fn cloexec_inherited_fds() {
    // SAFETY: close_range only flags descriptors; no memory is passed.
    unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    };
}
