//! How a container's snapshot is mounted: the typed description the snapshotter returns from
//! [`Snapshotter::prepare`](super::Snapshotter::prepare) (containerd's `mount.Mount`: type,
//! source, options), and the mount and unmount of it at a target.
//!
//! The syscalls live here, not in `container/`, because one description can need several of
//! them: a user-namespaced pod's layers are mounted through an idmapped, read-only clone of the
//! directory holding them, attached while the overlay is mounted over it and detached right
//! after (the overlay keeps its own references), as containerd's mount package does for a
//! mount with `uidmap`/`gidmap` options. The container only says where: its rootfs.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::error::{IoContext, IoError};

/// The file system type (and source) of every mount this snapshotter returns.
pub const OVERLAY: &str = "overlay";

/// An overlay of read-only layers under a writable one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The layers, topmost first (overlayfs's `lowerdir` order).
    pub lowers: Vec<PathBuf>,
    /// The writable layer and overlayfs's work directory (same file system).
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Mount the layers through an idmapped clone (a user-namespaced pod's container).
    pub idmap: Option<IdmappedLayers>,
}

/// The layers seen through a user namespace's mapping, so the pod's root owns what the image's
/// root owns (no chown copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdmappedLayers {
    /// The pinned user namespace whose mapping the layers are seen through.
    pub userns: PathBuf,
    /// Where the idmapped clone is attached while the overlay is mounted (then detached).
    pub staging: PathBuf,
}

/// Errors mounting a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// This node or image cannot be mounted this way (no layers; no idmapped mounts here).
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Io(#[from] IoError),
}

impl Mount {
    /// The file system type: `overlay`.
    pub fn fs_type(&self) -> &'static str {
        OVERLAY
    }

    /// The mount source: `overlay`.
    pub fn source(&self) -> &'static str {
        OVERLAY
    }

    /// The options with the layers at `lowers`: `lowerdir=a:b`, `upperdir=`, `workdir=`.
    pub fn options(&self, lowers: &[PathBuf]) -> Vec<String> {
        let lower = lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        vec![
            format!("lowerdir={lower}"),
            format!("upperdir={}", self.upper.display()),
            format!("workdir={}", self.work.display()),
        ]
    }

    /// Mount at `target` (an existing directory).
    pub fn mount(&self, target: &Path) -> Result<(), MountError> {
        match &self.idmap {
            None => self.mount_over(target, &self.lowers),
            Some(idmap) => self.mount_idmapped(target, idmap),
        }
    }

    /// The overlay itself, over the layers at `lowers`.
    fn mount_over(&self, target: &Path, lowers: &[PathBuf]) -> Result<(), MountError> {
        let data = self.options(lowers).join(",");
        nix::mount::mount(
            Some(self.source()),
            target,
            Some(self.fs_type()),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("mounting the rootfs overlay at {}", target.display()))?;
        Ok(())
    }

    /// The layers go into the overlay through one idmapped, read-only clone of the directory
    /// holding them, detached once the overlay holds them.
    fn mount_idmapped(&self, target: &Path, idmap: &IdmappedLayers) -> Result<(), MountError> {
        use berth_sys::mount_api;
        let common = common_ancestor(&self.lowers)
            .ok_or_else(|| MountError::Unsupported("the image has no layers to mount".into()))?;
        let userns = File::open(&idmap.userns)
            .with_context(|| format!("opening {}", idmap.userns.display()))?;
        let layers = &idmap.staging;
        std::fs::create_dir_all(layers)
            .with_context(|| format!("creating {}", layers.display()))?;
        let attach = || -> std::io::Result<()> {
            let tree = mount_api::open_tree_clone(&common, true)?;
            mount_api::idmap(
                tree.as_fd(),
                userns.as_fd(),
                true,
                mount_api::mount_attr::RDONLY,
            )?;
            mount_api::move_mount(tree.as_fd(), layers)
        };
        if let Err(e) = attach() {
            let _ = std::fs::remove_dir(layers);
            return Err(MountError::Unsupported(format!(
                "idmapping the image layers under {} for the pod's user namespace: {e} (the \
                 filesystem may not support idmapped mounts on this kernel)",
                common.display()
            )));
        }
        let mapped: Vec<PathBuf> = self
            .lowers
            .iter()
            .map(|l| layers.join(l.strip_prefix(&common).unwrap_or(l)))
            .collect();
        let result = self.mount_over(target, &mapped);
        let _ = nix::mount::umount2(layers, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(layers);
        result
    }
}

/// Unmount what is mounted at `target` (lazily: a process may still hold it); nothing mounted
/// there is fine.
pub fn unmount(target: &Path) -> Result<(), IoError> {
    if is_mountpoint(target) {
        nix::mount::umount2(target, MntFlags::MNT_DETACH)
            .map_err(std::io::Error::from)
            .with_context(|| format!("unmounting {}", target.display()))?;
    }
    Ok(())
}

fn is_mountpoint(p: &Path) -> bool {
    berth_sys::mountinfo::read_self().is_ok_and(|mounts| mounts.iter().any(|m| m.mount_point == p))
}

/// The deepest directory every path is under.
fn common_ancestor(paths: &[PathBuf]) -> Option<PathBuf> {
    let first = paths.first()?.parent()?.to_path_buf();
    let mut common = first;
    for p in &paths[1..] {
        while !p.starts_with(&common) {
            common = common.parent()?.to_path_buf();
        }
    }
    Some(common)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(lowers: &[&str]) -> Mount {
        Mount {
            lowers: lowers.iter().map(PathBuf::from).collect(),
            upper: "/b/rw/upper".into(),
            work: "/b/rw/work".into(),
            idmap: None,
        }
    }

    #[test]
    fn options_name_the_layers_topmost_first() {
        let m = overlay(&["/s/2/fs", "/s/1/fs"]);
        assert_eq!((m.fs_type(), m.source()), ("overlay", "overlay"));
        assert_eq!(
            m.options(&m.lowers),
            [
                "lowerdir=/s/2/fs:/s/1/fs",
                "upperdir=/b/rw/upper",
                "workdir=/b/rw/work"
            ]
        );
    }

    #[test]
    fn the_layers_common_directory() {
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            common_ancestor(&paths(&["/s/12/fs", "/s/3/fs"])),
            Some(PathBuf::from("/s"))
        );
        assert_eq!(
            common_ancestor(&paths(&["/s/12/fs"])),
            Some(PathBuf::from("/s/12"))
        );
        assert_eq!(
            common_ancestor(&paths(&["/a/1/fs", "/b/2/fs"])),
            Some(PathBuf::from("/"))
        );
        assert_eq!(common_ancestor(&[]), None);
    }

    #[test]
    fn an_image_without_layers_has_no_idmapped_mount() {
        let mut m = overlay(&[]);
        m.idmap = Some(IdmappedLayers {
            userns: "/nonexistent/user".into(),
            staging: "/nonexistent/idmapped-layers".into(),
        });
        let err = m.mount(Path::new("/nonexistent/rootfs")).unwrap_err();
        assert!(matches!(err, MountError::Unsupported(_)), "{err}");
    }
}
