//! How the host mounts its cgroup hierarchies, detected once from the statfs magic of
//! [`CGROUP_ROOT`] (as runc and youki): cgroup2 → [`Layout::Unified`]; tmpfs with a cgroup2
//! `unified/` → [`Layout::Hybrid`]; anything else → [`Layout::Legacy`].

use std::path::Path;
use std::sync::OnceLock;

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};

use crate::error::{Error, Result};

/// Where the host's cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How the host mounts its cgroup hierarchies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// v1 only: one mount per controller (or group of controllers).
    Legacy,
    /// v1 controllers, plus a cgroup2 mount at `unified/` without controllers.
    Hybrid,
    /// cgroup v2 only, at the root.
    Unified,
}

impl Layout {
    /// Classify from the root's filesystem type and whether `<root>/unified` is a cgroup2 mount.
    pub fn classify(root_is_cgroup2: bool, root_is_tmpfs: bool, unified_is_cgroup2: bool) -> Self {
        if root_is_cgroup2 {
            Layout::Unified
        } else if root_is_tmpfs && unified_is_cgroup2 {
            Layout::Hybrid
        } else {
            Layout::Legacy
        }
    }

    /// Detect the layout of the hierarchies mounted at `root`.
    pub fn detect(root: &Path) -> Result<Layout> {
        let fs = statfs(root).map_err(|e| Error::Io {
            context: format!("statfs {}", root.display()),
            source: e.into(),
        })?;
        let root_is_cgroup2 = fs.filesystem_type() == CGROUP2_SUPER_MAGIC;
        let root_is_tmpfs = fs.filesystem_type() == TMPFS_MAGIC;
        let unified_is_cgroup2 = root_is_tmpfs
            && statfs(&root.join("unified"))
                .is_ok_and(|u| u.filesystem_type() == CGROUP2_SUPER_MAGIC);
        Ok(Layout::classify(
            root_is_cgroup2,
            root_is_tmpfs,
            unified_is_cgroup2,
        ))
    }
}

/// The host's layout at [`CGROUP_ROOT`], detected on first use.
pub fn host_layout() -> Result<Layout> {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    if let Some(l) = LAYOUT.get() {
        return Ok(*l);
    }
    let l = Layout::detect(Path::new(CGROUP_ROOT))?;
    Ok(*LAYOUT.get_or_init(|| l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(Layout::classify(true, false, false), Layout::Unified);
        assert_eq!(Layout::classify(false, true, true), Layout::Hybrid);
        assert_eq!(Layout::classify(false, true, false), Layout::Legacy);
        assert_eq!(Layout::classify(false, false, false), Layout::Legacy);
        // Whatever this host has, detection works on it.
        if Path::new(CGROUP_ROOT).exists() {
            host_layout().unwrap();
        }
    }
}
