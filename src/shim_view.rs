//! The berth-shim binary as every shim process runs it (the container's init before its exec,
//! the exec helper, pod-init): a read-only view, made once per berthd, so that a container
//! reaching its runtime's binary through `/proc/<pid>/exe` (a `#!/proc/self/exe` script, a
//! process of a shared PID namespace) cannot write to the host's file (CVE-2019-5736).
//!
//! runc 1.2 does the same with a private overlayfs of its binary's directory. berth needs no
//! overlay: a detached clone of the mount holding berth-shim's directory (`open_tree`), made
//! read-only with mount_setattr, is attached nowhere and held by berthd as one descriptor;
//! berthd executes `/proc/self/fd/N/berth-shim`. No copy per container, one page cache for all
//! shims; writes through the view fail with EROFS whatever opens it and however.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_sys::mount_api::{mount_attr, open_tree_clone, set_attrs};

use crate::error::Kind;

/// Why the view could not be made (berthd does not start without it).
#[derive(Debug, thiserror::Error)]
pub enum ShimViewError {
    #[error("berth-shim {0} not found (set $BERTH_SHIM or install it next to berthd)")]
    NotFound(String),
    #[error("making a read-only view of {dir}: {source}")]
    View { dir: String, source: std::io::Error },
    #[error("the view {0} of berth-shim is writable")]
    Writable(String),
}

impl ShimViewError {
    pub fn kind(&self) -> Kind {
        Kind::Internal
    }
}

/// The read-only view; it lives as long as berthd (processes started from it keep their
/// binary whatever happens to the view or to berthd).
#[derive(Debug)]
pub struct ShimView {
    _tree: OwnedFd,
    installed: PathBuf,
    path: PathBuf,
}

impl ShimView {
    /// A read-only view of the berth-shim at `installed` (a bare name is looked up in $PATH).
    pub fn open(installed: &Path) -> Result<ShimView, ShimViewError> {
        let installed = resolve(installed)?;
        let (Some(dir), Some(name)) = (installed.parent(), installed.file_name()) else {
            return Err(ShimViewError::NotFound(installed.display().to_string()));
        };
        let view_err = |source| ShimViewError::View {
            dir: dir.display().to_string(),
            source,
        };
        let tree = open_tree_clone(dir, false).map_err(view_err)?;
        set_attrs(
            tree.as_fd(),
            mount_attr::RDONLY | mount_attr::NOSUID | mount_attr::NODEV,
            0,
            false,
        )
        .map_err(view_err)?;
        let path = berth_sys::in_root::fd_path(tree.as_fd()).join(name);
        // access(2) reports a read-only mount without opening anything for writing.
        match nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK) {
            Err(nix::errno::Errno::EROFS) => {}
            _ => return Err(ShimViewError::Writable(path.display().to_string())),
        }
        Ok(ShimView {
            _tree: tree,
            installed,
            path,
        })
    }

    /// What berthd executes: `/proc/self/fd/N/<name>` (resolved in the child before its exec).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host file behind the view.
    pub fn installed(&self) -> &Path {
        &self.installed
    }
}

/// `binary` as a canonical path: a bare name from $PATH, symlinks resolved.
fn resolve(binary: &Path) -> Result<PathBuf, ShimViewError> {
    let not_found = || ShimViewError::NotFound(binary.display().to_string());
    let candidate = if binary.components().count() > 1 || binary.is_absolute() {
        binary.to_path_buf()
    } else {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(binary))
            .find(|p| p.is_file())
            .ok_or_else(not_found)?
    };
    let real = std::fs::canonicalize(&candidate).map_err(|_| not_found())?;
    if !real.is_file() {
        return Err(not_found());
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs the mount API's privileges (root): the view refuses writes, the file stays.
    #[test]
    fn view_is_read_only_and_executable() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("berth-shim");
        std::fs::copy("/bin/true", &bin).unwrap();
        let before = std::fs::read(&bin).unwrap();
        let view = ShimView::open(&bin).unwrap();
        assert_eq!(view.installed(), std::fs::canonicalize(&bin).unwrap());
        let e = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(view.path())
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
        let status = std::process::Command::new(view.path()).status().unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read(&bin).unwrap(), before);
    }
}
