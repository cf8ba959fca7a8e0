//! Paths resolved inside a root directory by the kernel (`openat2(RESOLVE_IN_ROOT)`, Linux
//! 5.6+), so that a symlink or `..` swapped in by someone else between a check and a use can
//! never lead outside it (CVE-2021-30465's class: a container racing the runtime's mounts).
//!
//! Every function resolves `path` as if `root` were `/`, creates what is missing with
//! `*at(2)` calls relative to a directory already opened inside the root, and hands back an
//! `O_PATH` descriptor; a mount is then made on `/proc/self/fd/N` ([`fd_path`]), never on a
//! path resolved again by name.

// openat2 has no safe wrapper; mkdirat/mknodat/symlinkat/fchownat/unlinkat take C strings.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// How far a lookup may go: inside the root, and never through a magic link
/// (`/proc/<pid>/fd/N`, `/proc/<pid>/root`), which would jump out of it.
const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// `path`'s names (`..` kept, `/` and `.` dropped), for walking it one step at a time.
fn names(path: &Path) -> Vec<&OsStr> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect()
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// openat2(`dirfd`, `path`, `flags` | O_CLOEXEC) with `resolve` flags.
pub fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // An empty path means the root itself.
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let c_path = c_string(path.as_os_str())?;
    // SAFETY: open_how is plain data; zeroed is a valid value for every field.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: a NUL-terminated path and an open_how of the size passed, both alive for
        // the call; the kernel only reads them.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a rename elsewhere raced the lookup; the kernel asks for a retry.
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
}

/// `path` opened inside `root` (O_PATH unless `flags` says otherwise).
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = if flags == 0 { libc::O_PATH } else { flags };
    openat2(root, &relative(path), flags, RESOLVE)
}

/// `path` without its leading `/` (openat2 would otherwise ignore the directory).
fn relative(path: &Path) -> PathBuf {
    names(path).into_iter().collect()
}

/// The directory `path` inside `root`, created (mode `mode`) with its missing parents. The
/// walk holds a descriptor of each directory it reaches and takes the next step from it: a
/// missing name is made with mkdirat there, a symlink is followed inside the root (a dangling
/// one to what it names, as `secure_join` would), so a rename racing the walk can only change
/// which directory inside the root it ends in. Returns it as O_PATH.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    let mut pending: std::collections::VecDeque<std::ffi::OsString> =
        names(path).into_iter().map(OsStr::to_os_string).collect();
    let mut dir = open_in_root(root, Path::new(""), flags)?;
    let mut walked = PathBuf::new();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        let next = walked.join(&name);
        if name == ".." {
            dir = open_in_root(root, &next, flags)?;
            walked = next;
            continue;
        }
        // One name, looked up in the directory held: no symlink, no jump.
        let step = |dir: &OwnedFd| {
            openat2(
                dir.as_fd(),
                Path::new(&name),
                flags,
                libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
            )
        };
        match step(&dir) {
            Ok(fd) => {
                (dir, walked) = (fd, next);
                continue;
            }
            // A symlink: resolved inside the root, unless it dangles (below).
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                match open_in_root(root, &next, flags) {
                    Ok(fd) => {
                        (dir, walked) = (fd, next);
                        continue;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let c_name = c_string(&name)?;
        match readlinkat(dir.as_raw_fd(), &c_name) {
            Ok(target) => {
                // A dangling symlink: go on from what it names.
                links += 1;
                if links > 255 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                if target.is_absolute() {
                    dir = open_in_root(root, Path::new(""), flags)?;
                    walked = PathBuf::new();
                }
                for n in names(&target).into_iter().rev() {
                    pending.push_front(n.to_os_string());
                }
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // Something that is not a directory (or a symlink) is in the way.
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        // SAFETY: a NUL-terminated name alive for the call, relative to a directory we own.
        let r = unsafe { libc::mkdirat(dir.as_raw_fd(), c_name.as_ptr(), mode) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        // Take this name again: whatever is there now (a racing symlink is followed as above).
        links += 1;
        if links > 255 {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        pending.push_front(name);
    }
    Ok(dir)
}

/// readlinkat(2) of `name` in `dirfd` (EINVAL: not a symlink).
fn readlinkat(dirfd: libc::c_int, name: &CString) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the kernel writes at most buf.len() bytes into the buffer we own.
    let n = unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}

/// The parent of `path` inside `root` (created as by [`mkdir_all_in_root`]) and the last name.
fn parent_in_root<'p>(
    root: BorrowedFd<'_>,
    path: &'p Path,
    mode: u32,
) -> io::Result<(OwnedFd, &'p OsStr)> {
    let parts = names(path);
    let Some((last, parents)) = parts.split_last() else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    if *last == OsStr::new("..") {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let parent: PathBuf = parents.iter().collect();
    Ok((mkdir_all_in_root(root, &parent, mode)?, last))
}

/// The file `path` inside `root`: created empty (mode `mode`, parents 0755) unless something is
/// there already (a bind mount's target). Returns it as O_PATH.
pub fn create_file_in_root(root: BorrowedFd<'_>, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    let (parent, name) = parent_in_root(root, path, 0o755)?;
    let c_name = c_string(name)?;
    // O_EXCL with O_CREAT never follows a symlink: an existing one is left for the lookup
    // below, which resolves it inside the root.
    // SAFETY: a NUL-terminated name alive for the call, relative to a directory we own.
    let fd = unsafe {
        libc::openat(
            parent.as_raw_fd(),
            c_name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )
    };
    if fd >= 0 {
        // SAFETY: a new descriptor nothing else owns; closed at once.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    } else {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    // The name in the directory held; a symlink there is resolved inside the root.
    match openat2(
        parent.as_fd(),
        Path::new(name),
        libc::O_PATH,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => open_in_root(root, path, libc::O_PATH),
        other => other,
    }
}

/// A device node (or FIFO) at `path` inside `root`, replacing a file there, owned by
/// `uid`:`gid`. A directory there is refused (EISDIR).
pub fn mknod_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    mode: libc::mode_t,
    dev: libc::dev_t,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let (parent, name) = parent_in_root(root, path, 0o755)?;
    let c_name = c_string(name)?;
    let p = parent.as_raw_fd();
    // SAFETY: each call gets a NUL-terminated name alive for it, relative to a directory we
    // own, and fstatat a stat buffer of its own type to fill; no other memory is passed.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstatat(p, c_name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) == 0 {
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                return Err(io::Error::from_raw_os_error(libc::EISDIR));
            }
            if libc::unlinkat(p, c_name.as_ptr(), 0) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if libc::mknodat(p, c_name.as_ptr(), mode, dev) != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some((uid, gid)) = owner
            && libc::fchownat(p, c_name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A symlink `path` -> `target` inside `root` (EEXIST when something is there).
pub fn symlink_in_root(root: BorrowedFd<'_>, target: &Path, path: &Path) -> io::Result<()> {
    let (parent, name) = parent_in_root(root, path, 0o755)?;
    let c_name = c_string(name)?;
    let c_target = c_string(target.as_os_str())?;
    // SAFETY: two NUL-terminated strings alive for the call, relative to a directory we own.
    if unsafe { libc::symlinkat(c_target.as_ptr(), parent.as_raw_fd(), c_name.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `/proc/self/fd/N`: the path mount(2) follows to exactly the file `fd` is open on.
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let d = tempfile::tempdir().unwrap();
        let fd: OwnedFd = std::fs::File::open(d.path()).unwrap().into();
        (d, fd)
    }

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd.as_fd())).unwrap()
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let (d, fd) = root();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), d.path().join("abs")).unwrap();
        symlink("../../../../..", d.path().join("up")).unwrap();
        let made = mkdir_all_in_root(fd.as_fd(), Path::new("/abs/x/y"), 0o755).unwrap();
        let want = d.path().join(outside.path().strip_prefix("/").unwrap());
        assert_eq!(real(&made), want.join("x/y"));
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        let made = mkdir_all_in_root(fd.as_fd(), Path::new("up/../z"), 0o755).unwrap();
        assert_eq!(real(&made), d.path().join("z"));
        let file = create_file_in_root(fd.as_fd(), Path::new("/up/f"), 0o644).unwrap();
        assert_eq!(real(&file), d.path().join("f"));
        // A dangling symlink as the file: created where it points, inside the root.
        symlink("/etc/shadow-not-here", d.path().join("dangling")).unwrap();
        let file = create_file_in_root(fd.as_fd(), Path::new("dangling"), 0o644);
        assert!(file.is_err() || real(&file.unwrap()).starts_with(d.path()));
        assert!(!Path::new("/etc/shadow-not-here").exists());
    }

    #[test]
    fn magic_links_are_refused() {
        let (d, fd) = root();
        symlink("/proc/self/root/etc", d.path().join("magic")).unwrap();
        // /proc does not exist in the root: the lookup fails, it never reaches the host's.
        assert!(open_in_root(fd.as_fd(), Path::new("magic"), 0).is_err());
        std::fs::create_dir(d.path().join("proc")).unwrap();
        assert!(open_in_root(fd.as_fd(), Path::new("/magic/passwd"), 0).is_err());
    }

    #[test]
    fn fifo_and_symlink_in_root() {
        let (d, fd) = root();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), d.path().join("dev")).unwrap();
        mknod_in_root(
            fd.as_fd(),
            Path::new("/dev/fifo"),
            libc::S_IFIFO | 0o600,
            0,
            None,
        )
        .unwrap();
        symlink_in_root(fd.as_fd(), Path::new("/proc/self/fd"), Path::new("/dev/fd")).unwrap();
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        let inside = d.path().join(outside.path().strip_prefix("/").unwrap());
        assert!(inside.join("fifo").exists());
        assert!(inside.join("fd").symlink_metadata().is_ok());
        std::fs::create_dir(inside.join("dir")).unwrap();
        let e = mknod_in_root(fd.as_fd(), Path::new("/dev/dir"), libc::S_IFIFO, 0, None);
        assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::EISDIR));
    }
}
