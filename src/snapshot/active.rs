//! A container's active snapshot: its writable layer over the image's committed snapshots
//! (containerd's `Prepare`d, not yet committed, snapshot).
//!
//! berth keeps it inside the container's bundle directory (containerd keeps active snapshots
//! under the snapshotter's root): `<bundle>/rw/upper` and `<bundle>/rw/work`, plus
//! `<bundle>/idmapped-layers` while a user-namespaced pod's layers are being mounted. These
//! paths are on disk for existing containers (recovery and stats read them): they stay.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, IoError};

/// Where a container's active snapshot lives (no side effects until prepared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSnapshot {
    bundle: PathBuf,
}

impl ActiveSnapshot {
    /// The active snapshot of the container whose bundle is `bundle`.
    pub fn in_bundle(bundle: &Path) -> ActiveSnapshot {
        ActiveSnapshot {
            bundle: bundle.to_path_buf(),
        }
    }

    /// The writable layer: what the container wrote (its disk usage is the container's).
    pub fn upper(&self) -> PathBuf {
        self.rw().join("upper")
    }

    /// overlayfs's work directory (on the upper's file system).
    pub fn work(&self) -> PathBuf {
        self.rw().join("work")
    }

    /// Where an idmapped clone of the layers is attached while the overlay is mounted.
    pub fn idmap_staging(&self) -> PathBuf {
        self.bundle.join("idmapped-layers")
    }

    fn rw(&self) -> PathBuf {
        self.bundle.join("rw")
    }

    /// Make the writable layer's directories; with `root_owner`, hand the upper's root to that
    /// host uid/gid (a user-namespaced pod's root), which copies-up and new files then belong
    /// to (None: unchanged).
    pub(super) fn create(&self, root_owner: (Option<u32>, Option<u32>)) -> Result<(), IoError> {
        let (upper, work) = (self.upper(), self.work());
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        if root_owner != (None, None) {
            let (uid, gid) = root_owner;
            nix::unistd::chown(
                &upper,
                uid.map(nix::unistd::Uid::from_raw),
                gid.map(nix::unistd::Gid::from_raw),
            )
            .map_err(std::io::Error::from)
            .with_context(|| format!("chown {}", upper.display()))?;
        }
        Ok(())
    }

    /// Remove the writable layer (absent is fine). Nothing may be mounted from it any more.
    pub fn remove(&self) -> Result<(), IoError> {
        let rw = self.rw();
        match std::fs::remove_dir_all(&rw) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.with_context(|| format!("removing {}", rw.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lives_in_the_bundle() {
        let d = tempfile::tempdir().unwrap();
        let active = ActiveSnapshot::in_bundle(d.path());
        assert_eq!(active.upper(), d.path().join("rw/upper"));
        assert_eq!(active.work(), d.path().join("rw/work"));
        assert_eq!(active.idmap_staging(), d.path().join("idmapped-layers"));
        active.create((None, None)).unwrap();
        assert!(active.upper().is_dir() && active.work().is_dir());
        std::fs::write(active.upper().join("f"), b"x").unwrap();
        active.remove().unwrap();
        assert!(!d.path().join("rw").exists());
        assert!(d.path().is_dir());
        active.remove().unwrap();
    }
}
