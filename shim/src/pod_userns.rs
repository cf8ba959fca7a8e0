//! `berth-shim pod-userns`: a pod's user namespace (KEP-127, `userns_options` mode POD), and
//! the network, IPC and UTS namespaces it owns, pinned for the pod's containers to join.
//!
//! ```text
//! berth-shim pod-userns --uid-map C:H:L --gid-map C:H:L --dir DIR [--ns net,ipc,uts]
//!                       [--hostname NAME]
//! ```
//!
//! (the command line is `berth_proto::args::PodUsernsArgs`, which berthd builds).
//!
//! berthd is multi-threaded and may not unshare a user namespace itself; this short-lived,
//! single-threaded helper does, as containerd's `UnshareAfterEnterUserns` does for its pods:
//!
//! ```text
//! helper (host root)                        child
//!   fork ───────────────────────────────▶   unshare(CLONE_NEWUSER); "u"
//!   write /proc/<child>/{uid,gid}_map       (setgroups stays allowed: supplementary groups)
//!   "g" ──────────────────────────────────▶ unshare(NET|IPC|UTS): owned by the new userns
//!                                           sethostname; lo up; "n"; waits
//!   bind /proc/<child>/ns/{user,net,...} onto DIR/<name>; SIGKILL the child; "ok"
//! ```
//!
//! The namespaces belong to the pod's user namespace, so the container's root (a host uid
//! inside the mapping) has its capabilities there: binding port 80, its sysctls, its hostname.
//! Exits 0 after printing `ok`, or 1 with the reason on stderr (and no pin left behind).

// Forks the helper that makes the namespaces and _exits; the tests read NS_GET_USERNS.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_proto::args::PodUsernsArgs;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, pipe2};

/// Create and pin; `Ok` once every pin is in place.
pub fn run(args: &PodUsernsArgs) -> Result<(), String> {
    let (to_child_r, to_child_w) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let (to_parent_r, to_parent_w) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    // SAFETY: this mode is single-threaded (no runtime starts in it); the child only runs
    // `child_main`, which _exits.
    let child = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop((to_child_w, to_parent_r));
            child_main(args, &to_child_r, &to_parent_w)
        }
        ForkResult::Parent { child } => child,
    };
    drop((to_child_r, to_parent_w));
    let result = pin_from(args, child, &to_child_w, &to_parent_r);
    let _ = kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
    result
}

fn pin_from(args: &PodUsernsArgs, child: Pid, go: &OwnedFd, from: &OwnedFd) -> Result<(), String> {
    expect(from, b'u')?;
    let proc_dir = PathBuf::from(format!("/proc/{child}"));
    for (file, m) in [("uid_map", args.uid_map), ("gid_map", args.gid_map)] {
        std::fs::write(
            proc_dir.join(file),
            format!("{} {} {}\n", m.container, m.host, m.size),
        )
        .map_err(|e| format!("writing {file}: {e}"))?;
    }
    nix::unistd::write(go, b"g").map_err(|e| e.to_string())?;
    expect(from, b'n')?;
    let mut pinned: Vec<PathBuf> = Vec::new();
    let names = std::iter::once("user").chain(args.namespaces.iter().map(String::as_str));
    for name in names {
        let target = args.dir.join(name);
        if let Err(e) = pin(&proc_dir.join("ns").join(name), &target) {
            for p in &pinned {
                unpin(p);
            }
            return Err(format!(
                "pinning the {name} namespace at {}: {e}",
                target.display()
            ));
        }
        pinned.push(target);
    }
    Ok(())
}

fn pin(source: &Path, target: &Path) -> std::io::Result<()> {
    File::options().write(true).create_new(true).open(target)?;
    if let Err(e) = mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = std::fs::remove_file(target);
        return Err(e.into());
    }
    Ok(())
}

fn unpin(target: &Path) {
    let _ = umount2(target, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(target);
}

/// Read one status byte; an `e` is followed by the child's message.
fn expect(from: &OwnedFd, want: u8) -> Result<(), String> {
    let mut buf = [0u8; 1024];
    let n = loop {
        match nix::unistd::read(from, &mut buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(|e| e.to_string())?,
        }
    };
    match buf[..n].split_first() {
        Some((&b, _)) if b == want => Ok(()),
        Some((b'e', msg)) => Err(String::from_utf8_lossy(msg).into_owned()),
        _ => Err("the namespace helper died".into()),
    }
}

fn child_main(args: &PodUsernsArgs, go: &OwnedFd, to_parent: &OwnedFd) -> ! {
    let result = (|| -> Result<(), String> {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| e.to_string())?;
        unshare(CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("creating a user namespace: {e}"))?;
        nix::unistd::write(to_parent, b"u").map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        if nix::unistd::read(go, &mut b).map_err(|e| e.to_string())? != 1 {
            return Err("the helper went away".into());
        }
        let mut flags = CloneFlags::empty();
        for n in &args.namespaces {
            flags |= match n.as_str() {
                "net" => CloneFlags::CLONE_NEWNET,
                "ipc" => CloneFlags::CLONE_NEWIPC,
                _ => CloneFlags::CLONE_NEWUTS,
            };
        }
        unshare(flags).map_err(|e| format!("creating the pod's namespaces {flags:?}: {e}"))?;
        if flags.contains(CloneFlags::CLONE_NEWUTS)
            && let Some(h) = &args.hostname
        {
            nix::unistd::sethostname(h).map_err(|e| format!("setting hostname {h:?}: {e}"))?;
        }
        if flags.contains(CloneFlags::CLONE_NEWNET) {
            berth_sys::netdev::loopback_up().map_err(|e| format!("bringing lo up: {e}"))?;
        }
        nix::unistd::write(to_parent, b"n").map_err(|e| e.to_string())?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = nix::unistd::write(to_parent, format!("e{e}").as_bytes());
        // SAFETY: _exit ends the forked child at once.
        unsafe { libc::_exit(1) }
    }
    // Held until the helper has pinned everything and kills us.
    let mut b = [0u8; 1];
    let _ = nix::unistd::read(go, &mut b);
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::args::IdMap;
    use std::os::fd::{AsRawFd, FromRawFd};

    /// As root: the user namespace and a network namespace it owns, pinned and released.
    #[test]
    fn pins_a_user_namespace_and_what_it_owns() {
        if !nix::unistd::getuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let args = PodUsernsArgs {
            uid_map: IdMap {
                container: 0,
                host: 300000,
                size: 65536,
            },
            gid_map: IdMap {
                container: 0,
                host: 300000,
                size: 65536,
            },
            dir: dir.path().to_path_buf(),
            namespaces: vec!["net".into(), "uts".into()],
            hostname: Some("userns-pod".into()),
        };
        run(&args).unwrap();
        // The user namespace's map, read through a process that joins it.
        let user = File::open(dir.path().join("user")).unwrap();
        let net = File::open(dir.path().join("net")).unwrap();
        // NS_GET_USERNS on the pinned netns gives the pinned userns (same inode).
        // SAFETY: the ioctl takes a valid nsfs descriptor and returns a new one.
        let owner = unsafe { libc::ioctl(net.as_raw_fd(), 0xb701) };
        assert!(owner >= 0);
        // SAFETY: the kernel returned a new descriptor we own.
        let owner = unsafe { OwnedFd::from_raw_fd(owner) };
        use std::os::unix::fs::MetadataExt;
        let a = user.metadata().unwrap();
        let b = File::from(owner).metadata().unwrap();
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        for n in ["user", "net", "uts"] {
            unpin(&dir.path().join(n));
        }
    }
}
