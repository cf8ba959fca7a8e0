//! The container process's privilege drop: one sequence for the container's init
//! (`process.rs`) and for a process exec'd into a running container (`exec.rs`), in runc's
//! order (`finalizeNamespace` in libcontainer/init_linux.go and the steps around it in
//! standard_init_linux.go and setns_init_linux.go).
//!
//! ```text
//!  1. oom_score_adj, rlimits, AppArmor exec profile   with the host's privileges
//!  2. the pod's user namespace, as its root           ids and capabilities count there on
//!  3. the capability sets: the spec's, limited to those held (a warning names the others)
//!  4. seccomp, without no_new_privs                   needs CAP_SYS_ADMIN: still privileged
//!  5. descriptors from 3 on: close-on-exec            ┐
//!  6. the bounding set                                │
//!  7. PR_SET_KEEPCAPS; setgroups, setgid, setuid      │ runc's finalizeNamespace
//!  8. clear keepcaps; effective, permitted,           │
//!     inheritable and ambient sets                    ┘
//!  9. exec only: the parent-death signal again        a credential change cleared it
//! 10. umask, cwd (which must be inside the root)
//! 11. no_new_privs
//! 12. seccomp, with no_new_privs                      last, unprivileged
//! ```
//!
//! The caller then execs the command (the init first reports ready and waits for Start).
//! Whatever runs after step 4 must be allowed by the profile (see `seccomp/mod.rs`), so the
//! reads (capget, /proc/sys/kernel/cap_last_cap) are done in step 3.
//!
//! Where runc differs: it sets no_new_privs before step 4 (the same effect: it only matters
//! at execve, and with it the filter waits for step 12) and tries the cwd both before and
//! after the user switch; berth changes directory once, as the user with its capabilities.
//!
//! Both callers run this in a child forked from a single-threaded process, so it may allocate.

use std::os::fd::OwnedFd;

use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode as FileMode;
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::error::{Context, Error, Result};
use super::seccomp::Filter;
use super::security::{self, CapSets};

/// Which process drops its privileges: what differs between the two is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The container's init (its parent, the shim, outlives it).
    Init,
    /// A process exec'd into a running container: it must die with `reaper`, its parent.
    Exec { reaper: Pid },
}

/// Take the container's identity and privileges for `process` (see the module docs for the
/// order). `userns` is the pod's user namespace to join, `seccomp` the compiled
/// `linux.seccomp`.
pub(crate) fn apply(
    process: &Process,
    userns: Option<&OwnedFd>,
    seccomp: Option<&Filter>,
    mode: Mode,
) -> Result<()> {
    // 1. Steps that need the host's privileges.
    if let Some(adj) = process.oom_score_adj()
        && let Some(warning) = security::set_oom_score_adj(adj)
    {
        tracing::warn!("{warning}");
    }
    security::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    security::apply_apparmor(process.apparmor_profile().as_deref())?;

    // 2. Once everything that needs host privileges is done (rootfs, devices, sysfs, rlimits,
    // oom_score_adj): from here the container's ids are the namespace's.
    if let Some(fd) = userns {
        enter_user_namespace(fd)?;
    }

    // 3. What the process may keep, read while nothing is filtered yet.
    let caps = match process.capabilities() {
        Some(spec_caps) => {
            let mut sets = CapSets::from_spec(spec_caps);
            let (_, permitted, _) = security::get_caps()?;
            let missing = sets.limit_to(permitted);
            if missing != 0 {
                tracing::warn!(
                    "capabilities {} are not held by the shim; not granted",
                    security::describe_mask(missing)
                );
            }
            Some((sets, security::last_cap()))
        }
        None => None,
    };

    // 4. Without no_new_privs only CAP_SYS_ADMIN may load a filter: now, still privileged.
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let Some(filter) = seccomp.filter(|_| !nnp) {
        filter.load()?;
    }

    // 5-8. runc's finalizeNamespace.
    close_inherited_fds();
    if let Some((sets, last_cap)) = &caps {
        security::drop_bounding_set_upto(sets.bounding, *last_cap)?;
    }
    security::switch_user(process.user(), caps.is_some())?;
    if let Some((sets, _)) = &caps {
        security::apply_capabilities(sets)?;
    }

    // 9. The user switch cleared the parent-death signal: die with the reaper again.
    if let Mode::Exec { reaper } = mode {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .ctx(|| "PR_SET_PDEATHSIG")?;
        if nix::unistd::getppid() != reaper {
            return Err(Error::Init("the exec reaper is gone".into()));
        }
    }

    // 10. As the user, with its capabilities.
    nix::sys::stat::umask(FileMode::from_bits_truncate(
        process.user().umask().unwrap_or(0o022) as libc::mode_t,
    ));
    security::enter_cwd(process.cwd())?;

    // 11-12. With no_new_privs the filter is the last step, unprivileged.
    if nnp {
        security::set_no_new_privs()?;
        if let Some(filter) = seccomp {
            filter.load()?;
        }
    }
    Ok(())
}

/// Join a user namespace and become its root (ids 0, all capabilities there): what follows
/// (capabilities, seccomp, the container's user) happens inside it.
fn enter_user_namespace(fd: &OwnedFd) -> Result<()> {
    setns(fd, CloneFlags::CLONE_NEWUSER).ctx(|| "joining the pod's user namespace")?;
    let root = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root, root, root).ctx(|| "setresgid(0) in the user namespace")?;
    let root = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(root, root, root).ctx(|| "setresuid(0) in the user namespace")?;
    Ok(())
}

/// Nothing the shim inherited or opened may leak into the container: 0, 1, 2 only.
// close_range(2) through libc.
#[allow(unsafe_code)]
fn close_inherited_fds() {
    // SAFETY: close_range only flags descriptors; no memory is passed.
    unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    };
}
