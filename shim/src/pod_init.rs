//! `berth-shim pod-init --pin PATH`: the init of a pod's shared PID namespace (a pod with
//! `shareProcessNamespace`). No pause image: this small process is PID 1 of the namespace the
//! pod's containers join by the pinned path; it reaps every orphan of the pod and exits on
//! SIGTERM (berthd SIGKILLs it at StopPodSandbox, after the containers are gone).
//!
//! Startup (single-threaded throughout): daemonize like the shim, unshare the PID namespace,
//! fork PID 1, bind-mount its `ns/pid` at PATH, answer `ok <pid>` on the handshake pipe and
//! exit; PID 1 lives on, detached.

// Daemonises with fork/_exit and installs PID 1's signal handlers.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use berth_proto::handshake::Handshake;
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, pipe2};

use crate::daemon;

extern "C" fn on_sigchld(_: libc::c_int) {}

extern "C" fn on_term(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// Run the pod init; `handshake` is berthd's pipe. Returns only in the process berthd started
/// (and in the helper that pins), with the exit status to use.
pub fn run(pin: &Path, handshake: OwnedFd) -> i32 {
    if let Err(e) = daemon::daemonize() {
        daemon::write_handshake(handshake, &Handshake::Error(format!("daemonizing: {e}")));
        return 1;
    }
    daemon::cloexec_inherited_fds();
    if let Err(e) = unshare(CloneFlags::CLONE_NEWPID) {
        daemon::write_handshake(
            handshake,
            &Handshake::Error(format!("creating a PID namespace: {e}")),
        );
        return 1;
    }
    // The child waits for its pin before it settles (so it never runs unpinned for long).
    let (ready_r, ready_w) = match pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            daemon::write_handshake(
                handshake,
                &Handshake::Error(format!("creating a pipe: {e}")),
            );
            return 1;
        }
    };
    // SAFETY: single-threaded (no runtime ever starts in this mode); the child only runs
    // `init_loop`, which never returns.
    match unsafe { fork() } {
        Err(e) => {
            daemon::write_handshake(
                handshake,
                &Handshake::Error(format!("forking the pod init: {e}")),
            );
            1
        }
        Ok(ForkResult::Child) => {
            drop(handshake);
            drop(ready_w);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(&ready_r, &mut b);
            drop(ready_r);
            init_loop()
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ready_r);
            let pinned = (|| -> std::io::Result<()> {
                File::options().write(true).create_new(true).open(pin)?;
                let source = format!("/proc/{child}/ns/pid");
                if let Err(e) = mount(
                    Some(source.as_str()),
                    pin,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                ) {
                    let _ = std::fs::remove_file(pin);
                    return Err(e.into());
                }
                Ok(())
            })();
            match pinned {
                Ok(()) => {
                    let _ = nix::unistd::write(ready_w.as_fd(), b"1");
                    let pid = u32::try_from(child.as_raw()).unwrap_or(0);
                    daemon::write_handshake(handshake, &Handshake::Ok(pid));
                    0
                }
                Err(e) => {
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    daemon::write_handshake(
                        handshake,
                        &Handshake::Error(format!(
                            "pinning the PID namespace at {}: {e}",
                            pin.display()
                        )),
                    );
                    1
                }
            }
        }
    }
}

/// PID 1 of the pod: reap whatever ends up here, forever (until SIGTERM or SIGKILL).
fn init_loop() -> ! {
    // SAFETY: the handlers are async-signal-safe (a no-op and _exit).
    unsafe {
        libc::signal(libc::SIGCHLD, on_sigchld as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
    }
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), None);
    // Reaping needs no privilege: no capability at all (as pause runs with the pod's defaults),
    // so the pod's processes may look at their PID 1 (/proc/1/exe, environ) and it holds nothing
    // worth taking.
    use crate::executor::security::{self, CapSets};
    let none = CapSets {
        bounding: 0,
        effective: 0,
        permitted: 0,
        inheritable: 0,
        ambient: 0,
    };
    let _ = security::drop_bounding_set(0)
        .and_then(|()| security::apply_capabilities(&none))
        .and_then(|()| security::set_no_new_privs());
    loop {
        // Reap everything that has exited, then sleep until the next SIGCHLD.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let _ = SigSet::empty().suspend();
    }
}
