//! Namespace pinning without a pause process: a short-lived thread unshares into a fresh
//! namespace, configures it (hostname; loopback up) and bind-mounts its nsfs file onto a path under the
//! state dir. The mount keeps the namespace alive; containers join it by that path.

use std::fs::File;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// `NSFS_MAGIC` from linux/magic.h: the filesystem type of a pinned namespace file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Kinds of namespace a pod pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsKind {
    Ipc,
    Uts,
    Net,
    /// Pinned by `berth-shim pod-init` (a PID namespace needs a living init), never by
    /// [`pin_new`].
    Pid,
    /// A pod's user namespace (KEP-127), pinned with the namespaces it owns by
    /// `berth-shim pod-userns` (a multi-threaded process cannot unshare one), never by
    /// [`pin_new`].
    User,
}

impl NsKind {
    fn flag(self) -> CloneFlags {
        match self {
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Pid => CloneFlags::CLONE_NEWPID,
            NsKind::User => CloneFlags::CLONE_NEWUSER,
        }
    }

    /// The name under /proc/<tid>/ns and of the pin file.
    pub fn name(self) -> &'static str {
        match self {
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::Net => "net",
            NsKind::Pid => "pid",
            NsKind::User => "user",
        }
    }
}

/// Create a new namespace of `kind` and pin it at `path` (created; must not exist). For a UTS
/// namespace, `hostname` is set inside it first.
pub fn pin_new(kind: NsKind, path: &Path, hostname: Option<&str>) -> std::io::Result<()> {
    if kind == NsKind::Pid || kind == NsKind::User {
        return Err(std::io::Error::other(
            "PID and user namespaces are pinned by berth-shim (pod-init, pod-userns)",
        ));
    }
    let path = path.to_path_buf();
    let hostname = hostname.map(str::to_string);
    // A dedicated thread: unshare changes only the calling thread, and this one then exits,
    // so no thread of berthd (and none of tokio's) is ever left in a pod's namespace.
    std::thread::Builder::new()
        .name(format!("pin-{}", kind.name()))
        .spawn(move || -> std::io::Result<()> {
            unshare(kind.flag())?;
            if let (NsKind::Uts, Some(h)) = (kind, hostname.as_deref()) {
                nix::unistd::sethostname(h)?;
            }
            if kind == NsKind::Net {
                berth_sys::netdev::loopback_up()?;
            }
            File::options().write(true).create_new(true).open(&path)?;
            let source = format!("/proc/thread-self/ns/{}", kind.name());
            if let Err(e) = mount(
                Some(source.as_str()),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ) {
                let _ = std::fs::remove_file(&path);
                return Err(e.into());
            }
            Ok(())
        })?
        .join()
        .map_err(|_| std::io::Error::other("namespace pinning thread panicked"))?
}

/// Whether `path` holds a pinned namespace.
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Release a pin: unmount (the namespace dies with its last user) and remove the file.
/// A missing or already unmounted pin is fine.
pub fn unpin(path: &Path) -> std::io::Result<()> {
    if is_pinned(path) {
        umount2(path, MntFlags::MNT_DETACH)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn hostname_in(path: &Path) -> String {
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let f = File::open(path).unwrap();
            nix::sched::setns(f.as_fd(), CloneFlags::CLONE_NEWUTS).unwrap();
            nix::unistd::gethostname()
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn pinned_uts_namespace_keeps_its_hostname() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("uts");
        let host = nix::unistd::gethostname().unwrap();
        pin_new(NsKind::Uts, &pin, Some("berth-pod-test")).unwrap();
        assert!(is_pinned(&pin));
        assert_eq!(hostname_in(&pin), "berth-pod-test");
        assert_eq!(nix::unistd::gethostname().unwrap(), host, "host untouched");
        // An existing path is refused, not overwritten.
        assert!(pin_new(NsKind::Uts, &pin, None).is_err());
        unpin(&pin).unwrap();
        assert!(!pin.exists());
        unpin(&pin).unwrap();
    }

    #[test]
    fn pinned_ipc_namespace_differs_from_ours() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pin = dir.path().join("ipc");
        pin_new(NsKind::Ipc, &pin, None).unwrap();
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::metadata("/proc/self/ns/ipc").unwrap().ino();
        let pinned = std::fs::metadata(&pin).unwrap().ino();
        assert_ne!(ours, pinned);
        unpin(&pin).unwrap();
        assert!(!pin.exists());
    }
}
