//! The new mount API (Linux 5.2+ `open_tree`/`move_mount`, 5.12+ `mount_setattr`), shared by
//! the shim (recursive attributes, idmapped binds) and berthd (idmapped image layers).
//!
//! An idmapped mount shows files owned by host id `H+n` as owned by `n` to a process of the
//! user namespace that maps `n` to `H+n` (and writes through it store `H+n` back as `n`): a pod
//! with its own user namespace sees its image, volumes and pod files owned by its own root,
//! without a chown copy. Only a detached clone (`OPEN_TREE_CLONE`) can be idmapped, by host
//! root; it is then attached where it belongs with `move_mount`.

// open_tree, mount_setattr and move_mount have no safe wrapper: raw syscalls.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// MOUNT_ATTR_* values (linux/mount.h).
pub mod mount_attr {
    pub const RDONLY: u64 = 0x0000_0001;
    pub const NOSUID: u64 = 0x0000_0002;
    pub const NODEV: u64 = 0x0000_0004;
    pub const NOEXEC: u64 = 0x0000_0008;
    pub const ATIME_MASK: u64 = 0x0000_0070;
    pub const RELATIME: u64 = 0x0000_0000;
    pub const NOATIME: u64 = 0x0000_0010;
    pub const STRICTATIME: u64 = 0x0000_0020;
    pub const NODIRATIME: u64 = 0x0000_0080;
    pub const IDMAP: u64 = 0x0010_0000;
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// The kernel's `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
#[derive(Debug, Default)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// mount_setattr(2) on `dirfd`/`path` with `flags` (AT_RECURSIVE, AT_EMPTY_PATH, ...).
pub fn mount_setattr(
    dirfd: libc::c_int,
    path: &Path,
    flags: libc::c_uint,
    attr: &MountAttr,
) -> io::Result<()> {
    let c_path = c_path(path)?;
    // SAFETY: the path is a NUL-terminated string and the attribute a repr(C) struct of the
    // kernel's VER0 size, both alive for the call; the kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            c_path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// mount_setattr(2) on the mount `mount` is open on: set and clear MOUNT_ATTR_* bits, on every
/// mount below it too when `recursive`.
pub fn set_attrs(mount: BorrowedFd<'_>, set: u64, clr: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        ..Default::default()
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    mount_setattr(mount.as_raw_fd(), Path::new(""), flags, &attr)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// A detached clone of the mount tree at `source` (recursive when `recursive`).
pub fn open_tree_clone(source: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let path = c_path(source)?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: a NUL-terminated path alive for the call and plain integer flags.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Idmap a detached tree through `userns` (every mount of it when `recursive`), adding the
/// MOUNT_ATTR_* bits of `extra` (e.g. RDONLY).
pub fn idmap(
    tree: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    recursive: bool,
    extra: u64,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: mount_attr::IDMAP | extra,
        userns_fd: userns.as_raw_fd() as u64,
        ..Default::default()
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    mount_setattr(tree.as_raw_fd(), Path::new(""), flags, &attr)
}

/// Attach a detached tree at `target` (an existing file or directory).
pub fn move_mount(tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let target = c_path(target)?;
    move_mount_raw(tree, libc::AT_FDCWD, &target, 0)
}

/// Attach a detached tree on exactly what `target` is open on (an O_PATH descriptor of a
/// mount point opened inside a container's root).
pub fn move_mount_at(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    move_mount_raw(tree, target.as_raw_fd(), c"", libc::MOVE_MOUNT_T_EMPTY_PATH)
}

fn move_mount_raw(
    tree: BorrowedFd<'_>,
    to_dirfd: RawFd,
    to_path: &std::ffi::CStr,
    to_flags: libc::c_uint,
) -> io::Result<()> {
    // SAFETY: an empty and a NUL-terminated path alive for the call; plain integer flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            to_dirfd,
            to_path.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | to_flags,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An idmapped clone of `source` (the top mount only unless `recursive`; `readonly` as part of
/// the same attribute change), still detached.
pub fn idmapped_clone(
    source: &Path,
    userns: BorrowedFd<'_>,
    recursive: bool,
    readonly: bool,
) -> io::Result<OwnedFd> {
    let tree = open_tree_clone(source, recursive)?;
    let extra = if readonly { mount_attr::RDONLY } else { 0 };
    idmap(tree.as_fd(), userns, false, extra).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "idmapping {}: {e} (the filesystem may not support idmapped mounts on this kernel)",
                source.display()
            ),
        )
    })?;
    Ok(tree)
}

/// `source` bound at `target` through an idmapped clone (runc's and containerd's way: the top
/// mount only unless `recursive`); `readonly` as part of the same attribute change.
pub fn bind_idmapped(
    source: &Path,
    target: &Path,
    userns: BorrowedFd<'_>,
    recursive: bool,
    readonly: bool,
) -> io::Result<()> {
    let tree = idmapped_clone(source, userns, recursive, readonly)?;
    move_mount(tree.as_fd(), target)
}

/// [`bind_idmapped`] onto what `target` is open on.
pub fn bind_idmapped_at(
    source: &Path,
    target: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    recursive: bool,
    readonly: bool,
) -> io::Result<()> {
    let tree = idmapped_clone(source, userns, recursive, readonly)?;
    move_mount_at(tree.as_fd(), target)
}
