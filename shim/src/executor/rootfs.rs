//! The container's filesystem view, built inside its new mount namespace:
//!
//! 1. [`prepare`]: `/` becomes rslave (or `linux.rootfsPropagation`) so nothing done here
//!    propagates to the host while host unmounts still propagate in (runc's default); the
//!    rootfs is bound onto itself; `mounts` are mounted in order inside it; the standard devices
//!    are created when `/dev` is a tmpfs; `linux.devices` are created; `process.cwd` is created;
//! 2. [`pivot`]: `pivot_root(".", ".")`, then the old root is detached;
//! 3. [`finish`]: `linux.readonlyPaths`, `linux.maskedPaths`, then `root.readonly`.
//!
//! Every path inside the rootfs is resolved by the kernel inside it (`openat2` with
//! `RESOLVE_IN_ROOT`, berth_sys::in_root): mount points and device nodes are created relative to
//! directories opened inside the root, and each mount is made on `/proc/self/fd/N` of the
//! destination opened that way, never on a path resolved again by name. So neither a symlink in
//! the image nor one swapped in by another container sharing a volume (CVE-2021-30465) can send
//! a mount, a directory or a device outside the rootfs.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, makedev};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{fchdir, pivot_root};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxIdMapping, LinuxNamespaceType, Mount};

use super::bundle::Container;
use super::error::{Context, Error, Result};
use berth_cgroups::{Cgroup, V1Cgroup, V2Cgroup};
use berth_sys::in_root;
use berth_sys::mount_api::{mount_attr, set_attrs};
use berth_sys::mountinfo;

/// Parsed `mounts[].options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// MS_* flags for mount(2) (no propagation, no MS_BIND/MS_REC).
    pub flags: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options (`mode=755`, `size=65536k`, ...).
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
    /// Recursive attributes (`rro`, `rnosuid`, ...): applied to the mount and every mount
    /// below it through mount_setattr(2) with AT_RECURSIVE, as runc does.
    pub rec_attr: RecursiveAttrs,
    /// Options understood but not applied (tmpcopyup).
    pub ignored: Vec<String>,
}

/// `struct mount_attr` set and clear masks (MOUNT_ATTR_*).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecursiveAttrs {
    pub set: u64,
    pub clr: u64,
}

impl RecursiveAttrs {
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clr == 0
    }
}

/// The (set, clear) masks of a recursive mount option, as runc reads them.
fn recursive_attr(opt: &str) -> Option<(u64, u64)> {
    use mount_attr::*;
    Some(match opt {
        "rro" => (RDONLY, 0),
        "rrw" => (0, RDONLY),
        "rnosuid" => (NOSUID, 0),
        "rsuid" => (0, NOSUID),
        "rnodev" => (NODEV, 0),
        "rdev" => (0, NODEV),
        "rnoexec" => (NOEXEC, 0),
        "rexec" => (0, NOEXEC),
        "rnodiratime" => (NODIRATIME, 0),
        "rdiratime" => (0, NODIRATIME),
        "rrelatime" => (RELATIME, ATIME_MASK),
        "rnorelatime" | "ratime" | "rnostrictatime" => (RELATIME, ATIME_MASK),
        "rnoatime" => (NOATIME, ATIME_MASK),
        "rstrictatime" => (STRICTATIME, ATIME_MASK),
        "rnosymfollow" => (NOSYMFOLLOW, 0),
        "rsymfollow" => (0, NOSYMFOLLOW),
        _ => return None,
    })
}

/// Parse mount options the way runc does: known flags set or clear MS_* bits, propagation
/// keywords are collected, everything else is passed to the filesystem.
pub fn parse_mount_options(options: &[String]) -> Result<MountOptions> {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
        bind: false,
        recursive: false,
        rec_attr: RecursiveAttrs::default(),
        ignored: Vec::new(),
    };
    for opt in options {
        let (clear, flag) = match opt.as_str() {
            "defaults" => continue,
            "ro" => (false, MsFlags::MS_RDONLY),
            "rw" => (true, MsFlags::MS_RDONLY),
            "suid" => (true, MsFlags::MS_NOSUID),
            "nosuid" => (false, MsFlags::MS_NOSUID),
            "dev" => (true, MsFlags::MS_NODEV),
            "nodev" => (false, MsFlags::MS_NODEV),
            "exec" => (true, MsFlags::MS_NOEXEC),
            "noexec" => (false, MsFlags::MS_NOEXEC),
            "sync" => (false, MsFlags::MS_SYNCHRONOUS),
            "async" => (true, MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (false, MsFlags::MS_DIRSYNC),
            "remount" => (false, MsFlags::MS_REMOUNT),
            "mand" => (false, MsFlags::MS_MANDLOCK),
            "nomand" => (true, MsFlags::MS_MANDLOCK),
            "atime" => (true, MsFlags::MS_NOATIME),
            "noatime" => (false, MsFlags::MS_NOATIME),
            "diratime" => (true, MsFlags::MS_NODIRATIME),
            "nodiratime" => (false, MsFlags::MS_NODIRATIME),
            "relatime" => (false, MsFlags::MS_RELATIME),
            "norelatime" => (true, MsFlags::MS_RELATIME),
            "strictatime" => (false, MsFlags::MS_STRICTATIME),
            "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "idmap" | "ridmap" => {
                return Err(Error::Unsupported(format!(
                    "mount option {opt} (id-mapped mounts) is not supported yet"
                )));
            }
            "tmpcopyup" => {
                o.ignored.push(opt.clone());
                continue;
            }
            rec if recursive_attr(rec).is_some() => {
                if let Some((set, clr)) = recursive_attr(rec) {
                    o.rec_attr.set = (o.rec_attr.set & !clr) | set;
                    o.rec_attr.clr = (o.rec_attr.clr & !set) | clr;
                }
                continue;
            }
            other => match propagation_flag(other) {
                Some(p) => {
                    o.propagation.push(p);
                    continue;
                }
                None => {
                    o.data.push(other.to_string());
                    continue;
                }
            },
        };
        if clear {
            o.flags.remove(flag);
        } else {
            o.flags.insert(flag);
        }
    }
    Ok(o)
}

/// `private`, `rshared`, ... as mount(2) flags.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Path components as names and `..` (root and `.` dropped).
fn to_parts(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// The restrictive flags of the mount holding `path`, which a bind remount must keep.
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs_flag) {
            m |= ms_flag;
        }
    }
    m
}

const NONE: Option<&str> = None;

/// The rootfs, opened once after it is bound onto itself: every container path is resolved
/// inside it by the kernel.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Open `path` (the rootfs, as the host sees it) as the root to resolve inside.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening the rootfs {}", path.display()))?;
        Ok(Root { fd })
    }

    /// `dest` created inside the root as a directory (or, unless `dir`, an empty file to bind a
    /// file onto) with its missing parents; returned opened (O_PATH) to mount on.
    pub fn mount_point(&self, dest: &Path, dir: bool) -> Result<OwnedFd> {
        let made = if dir {
            in_root::mkdir_all_in_root(self.fd.as_fd(), dest, 0o755)
        } else {
            in_root::create_file_in_root(self.fd.as_fd(), dest, 0o644)
        };
        made.ctx(|| format!("creating mount point {}", dest.display()))
    }

    /// `dest` as it is now: after a mount on it, that mount's root.
    pub fn reopen(&self, dest: &Path) -> Result<OwnedFd> {
        in_root::open_in_root(self.fd.as_fd(), dest, 0)
            .ctx(|| format!("opening {} inside the rootfs", dest.display()))
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The path mount(2) follows to exactly what `fd` is open on.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    in_root::fd_path(fd.as_fd())
}

/// Steps 1: everything before pivot_root. Runs in the init child, in its new mount namespace.
pub fn prepare(c: &Container, cgroup: Option<&Cgroup>) -> Result<()> {
    let rootfs = &c.rootfs;
    let linux = c.spec.linux().as_ref();
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        Some(p) => propagation_flag(p)
            .ok_or_else(|| Error::InvalidSpec(format!("unknown rootfsPropagation {p:?}")))?,
        None => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(NONE, "/", NONE, propagation, NONE).ctx(|| "setting the propagation of /")?;
    make_parent_mount_private(rootfs)?;
    mount(
        Some(rootfs),
        rootfs,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .ctx(|| format!("binding the rootfs {} onto itself", rootfs.display()))?;
    let root = Root::open(rootfs)?;

    for m in c.spec.mounts().iter().flatten() {
        match (m.typ().as_deref(), cgroup) {
            (Some("cgroup"), Some(Cgroup::V1(v1))) => mount_v1_cgroups(&root, m, v1)?,
            (Some("cgroup"), Some(Cgroup::V2(v2))) => mount_v2_cgroup(&root, m, v2)?,
            _ => mount_one(c, &root, m)?,
        }
    }

    let devices: &[LinuxDevice] = linux
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    if dev_is_tmpfs(c) {
        create_default_devices(&root, devices)?;
    }
    for d in devices {
        create_device(&root, d)?;
    }

    if let Some(p) = c.spec.process() {
        in_root::mkdir_all_in_root(root.as_fd(), p.cwd(), 0o755)
            .ctx(|| format!("creating cwd {}", p.cwd().display()))?;
    }
    Ok(())
}

/// pivot_root refuses a new root whose parent mount is shared: make that one private.
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let mounts = mountinfo::read_self().ctx(|| "reading /proc/self/mountinfo")?;
    if let Some(m) = mountinfo::mount_holding(&mounts, rootfs)
        && m.is_shared()
    {
        mount(NONE, &m.mount_point, NONE, MsFlags::MS_PRIVATE, NONE)
            .ctx(|| format!("making {} private", m.mount_point.display()))?;
    }
    Ok(())
}

fn dev_is_tmpfs(c: &Container) -> bool {
    c.spec.mounts().iter().flatten().any(|m| {
        m.typ().as_deref() == Some("tmpfs")
            && to_parts(m.destination()) == to_parts(Path::new("/dev"))
    })
}

/// A `cgroup` mount on a v1 (or hybrid) host, as runc makes it: a tmpfs with, per hierarchy,
/// the container's own cgroup directory bound at the hierarchy's name (plus a symlink per
/// co-mounted controller, `cpu -> cpu,cpuacct`), and the hybrid v2 directory at `unified`. The
/// container sees its own limits at the usual paths; nothing above its cgroup.
fn mount_v1_cgroups(root: &Root, m: &Mount, v1: &V1Cgroup) -> Result<()> {
    let opts = parse_mount_options(m.options().as_deref().unwrap_or_default())?;
    let dest = m.destination();
    let target = root.mount_point(dest, true)?;
    let base = (opts.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC))
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        &fd_path(&target),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .ctx(|| format!("mounting a tmpfs on {}", dest.display()))?;
    // The new tmpfs, ours alone: what goes in it is resolved inside it.
    let tmpfs = root.reopen(dest)?;
    let readonly = opts.flags.contains(MsFlags::MS_RDONLY);
    let bind = |source: &Path, name: &str| -> Result<()> {
        let what = || format!("{}/{name}", dest.display());
        let point = in_root::mkdir_all_in_root(tmpfs.as_fd(), Path::new(name), 0o755)
            .ctx(|| format!("creating {}", what()))?;
        mount(
            Some(source),
            &fd_path(&point),
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            NONE,
        )
        .ctx(|| format!("binding {} on {}", source.display(), what()))?;
        let bound = in_root::open_in_root(tmpfs.as_fd(), Path::new(name), 0)
            .ctx(|| format!("opening {}", what()))?;
        let bound = fd_path(&bound);
        let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | base | locked_flags(&bound);
        if readonly {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(NONE, &bound, NONE, flags, NONE).ctx(|| format!("remounting {}", what()))
    };
    for h in &v1.hierarchies {
        let Some(name) = h.root.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        bind(&h.dir, name)?;
        for ctl in &h.controllers {
            if ctl != name {
                match in_root::symlink_in_root(tmpfs.as_fd(), Path::new(name), Path::new(ctl)) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                        return Err(e).ctx(|| format!("linking {ctl} to {name}"));
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some((_, dir)) = &v1.unified {
        bind(dir, "unified")?;
    }
    if readonly {
        mount(
            NONE,
            &fd_path(&tmpfs),
            NONE,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            NONE,
        )
        .ctx(|| format!("remounting {} read-only", dest.display()))?;
    }
    Ok(())
}

/// A `cgroup` mount on a v2 host: cgroup2 itself (the init is already in its cgroup and, with
/// a cgroup namespace, sees it as the root); where the kernel refuses that, the container's own
/// cgroup directory bound read-only, as runc falls back.
fn mount_v2_cgroup(root: &Root, m: &Mount, v2: &V2Cgroup) -> Result<()> {
    let opts = parse_mount_options(m.options().as_deref().unwrap_or_default())?;
    let target = root.mount_point(m.destination(), true)?;
    let flags = opts.flags - MsFlags::MS_REMOUNT;
    match mount(
        Some("cgroup2"),
        &fd_path(&target),
        Some("cgroup2"),
        flags,
        NONE,
    ) {
        Ok(()) => Ok(()),
        Err(e @ (nix::errno::Errno::EPERM | nix::errno::Errno::EBUSY)) => {
            tracing::info!(
                "mounting cgroup2 on {}: {e}; binding the container's cgroup instead",
                m.destination().display()
            );
            mount(
                Some(&v2.dir),
                &fd_path(&target),
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                NONE,
            )
            .ctx(|| {
                format!(
                    "binding {} on {}",
                    v2.dir.display(),
                    m.destination().display()
                )
            })?;
            let bound = fd_path(&root.reopen(m.destination())?);
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags | locked_flags(&bound);
            mount(NONE, &bound, NONE, flags, NONE)
                .ctx(|| format!("remounting {}", m.destination().display()))
        }
        Err(e) => Err(e).ctx(|| format!("mounting cgroup2 on {}", m.destination().display())),
    }
}

fn mount_one(c: &Container, root: &Root, m: &Mount) -> Result<()> {
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = parse_mount_options(m.options().as_deref().unwrap_or_default())?;
    if !opts.ignored.is_empty() {
        tracing::warn!(
            "mount {}: options {:?} are not applied yet",
            m.destination().display(),
            opts.ignored
        );
    }
    let dest = m.destination();
    let what = || format!("mounting {} on {}", typ, dest.display());

    if opts.bind || typ == "bind" {
        let source = m.source().as_ref().ok_or_else(|| {
            Error::InvalidSpec(format!(
                "bind mount {} has no source",
                m.destination().display()
            ))
        })?;
        let source = c.bundle.join(source);
        let meta =
            fs::metadata(&source).ctx(|| format!("bind mount source {}", source.display()))?;
        let target = root.mount_point(dest, meta.is_dir())?;
        let bind_what = || {
            format!(
                "bind mounting {} on {}",
                source.display(),
                m.destination().display()
            )
        };
        // A detached clone of the source, attached on the destination as opened inside the
        // root; its descriptor then names exactly that mount for the flags that follow.
        let tree = if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            // Seen by the container's user namespace with its ids (KEP-127 volumes, pod files).
            let userns = mount_userns(c, m)?;
            berth_sys::mount_api::idmapped_clone(&source, userns.as_fd(), opts.recursive, false)
        } else {
            berth_sys::mount_api::open_tree_clone(&source, opts.recursive)
        }
        .ctx(bind_what)?;
        berth_sys::mount_api::move_mount_at(tree.as_fd(), target.as_fd()).ctx(bind_what)?;
        // Flags of a bind mount apply to its top mount only (`rro` and co. are recursive).
        let (set, clr) = bind_attrs(opts.flags);
        if set != 0 || clr != 0 {
            set_attrs(tree.as_fd(), set, clr, false)
                .ctx(|| format!("setting {:?} on {}", opts.flags, dest.display()))?;
        }
        return finish_mount(tree, dest, &opts);
    } else {
        let target = root.mount_point(dest, true)?;
        let source = m
            .source()
            .as_ref()
            .map(|s| s.as_os_str().to_owned())
            .unwrap_or_else(|| typ.into());
        let data = opts.data.join(",");
        let data = (!data.is_empty()).then_some(data.as_str());
        if let Err(e) = mount(
            Some(source.as_os_str()),
            &fd_path(&target),
            Some(typ),
            opts.flags,
            data,
        ) {
            if typ == "cgroup" || typ == "cgroup2" {
                // A container without a cgroup of its own on a v1 host: nothing to show.
                tracing::warn!("{}: {e}; skipped", what());
                return Ok(());
            }
            return Err(e).ctx(what);
        }
    }
    if opts.propagation.is_empty() && opts.rec_attr.is_empty() {
        return Ok(());
    }
    finish_mount(root.reopen(dest)?, dest, &opts)
}

/// The MOUNT_ATTR_* (set, clear) masks of a bind mount's flags (`ro`, `nosuid`, `noatime`...).
fn bind_attrs(flags: MsFlags) -> (u64, u64) {
    use mount_attr::*;
    let mut set = 0;
    let mut clr = 0;
    for (ms, attr) in [
        (MsFlags::MS_RDONLY, RDONLY),
        (MsFlags::MS_NOSUID, NOSUID),
        (MsFlags::MS_NODEV, NODEV),
        (MsFlags::MS_NOEXEC, NOEXEC),
        (MsFlags::MS_NODIRATIME, NODIRATIME),
    ] {
        if flags.contains(ms) {
            set |= attr;
        }
    }
    for (ms, attr) in [
        (MsFlags::MS_NOATIME, NOATIME),
        (MsFlags::MS_STRICTATIME, STRICTATIME),
        (MsFlags::MS_RELATIME, RELATIME),
    ] {
        if flags.contains(ms) {
            set = (set & !ATIME_MASK) | attr;
            clr |= ATIME_MASK;
        }
    }
    (set, clr)
}

/// Propagation and recursive attributes, on the mount `mounted` is the root of.
fn finish_mount(mounted: OwnedFd, dest: &Path, opts: &MountOptions) -> Result<()> {
    for p in &opts.propagation {
        mount(NONE, &fd_path(&mounted), NONE, *p, NONE)
            .ctx(|| format!("setting propagation of {}", dest.display()))?;
    }
    apply_recursive_attrs(mounted.as_fd(), &opts.rec_attr)
        .ctx(|| format!("applying recursive attributes to {}", dest.display()))
}

/// `rro`, `rnosuid`, ...: mount_setattr(2) with AT_RECURSIVE on the mount `mounted` is the root
/// of. There is no fallback: a kernel without it (before 5.12) fails the mount rather than
/// leave it less restricted than asked (a read-only volume writable below a submount).
pub fn apply_recursive_attrs(mounted: BorrowedFd<'_>, attrs: &RecursiveAttrs) -> io::Result<()> {
    if attrs.is_empty() {
        return Ok(());
    }
    set_attrs(mounted, attrs.set, attrs.clr, true).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => io::Error::new(
            e.kind(),
            "mount_setattr is not available (Linux 5.12+ is needed for recursive mount options)",
        ),
        _ => e,
    })
}

/// The user namespace an idmapped bind is seen through: the container's own, whose mappings it
/// must carry (runc's rule when joining a namespace; a mount with other mappings would need a
/// user namespace of its own, which berth does not make).
fn mount_userns(c: &Container, m: &Mount) -> Result<OwnedFd> {
    let linux = c.spec.linux().as_ref();
    let same = |mount: &Option<Vec<LinuxIdMapping>>, container: Option<&Vec<LinuxIdMapping>>| {
        mount.as_ref() == container
    };
    let path = c
        .namespaces()
        .iter()
        .find(|ns| ns.typ() == LinuxNamespaceType::User)
        .and_then(|ns| ns.path().clone())
        .ok_or_else(|| {
            Error::Unsupported(format!(
                "idmapped mount {} needs the container's user namespace",
                m.destination().display()
            ))
        })?;
    if !same(
        m.uid_mappings(),
        linux.and_then(|l| l.uid_mappings().as_ref()),
    ) || !same(
        m.gid_mappings(),
        linux.and_then(|l| l.gid_mappings().as_ref()),
    ) {
        return Err(Error::Unsupported(format!(
            "idmapped mount {}: only the container's own uid/gid mappings are supported",
            m.destination().display()
        )));
    }
    open(&path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("opening the user namespace {}", path.display()))
}

/// The devices every container gets in a tmpfs /dev: (name, major, minor).
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

fn create_default_devices(root: &Root, listed: &[LinuxDevice]) -> Result<()> {
    let dev = Path::new("/dev");
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = dev.join(name);
        if listed.iter().any(|d| to_parts(d.path()) == to_parts(&path)) {
            continue;
        }
        in_root::mknod_in_root(
            root.as_fd(),
            &path,
            libc::S_IFCHR | 0o666,
            makedev(major, minor),
            None,
        )
        .ctx(|| format!("creating /dev/{name}"))?;
    }
    for (name, target) in DEV_LINKS {
        match in_root::symlink_in_root(root.as_fd(), Path::new(target), &dev.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).ctx(|| format!("creating /dev/{name}")),
        }
    }
    Ok(())
}

fn create_device(root: &Root, d: &LinuxDevice) -> Result<()> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::InvalidSpec(format!(
                "device {} has type a (only cgroup rules may)",
                d.path().display()
            )));
        }
    };
    let (major, minor) = (d.major(), d.minor());
    if major < 0 || minor < 0 {
        return Err(Error::InvalidSpec(format!(
            "device {} has a negative number",
            d.path().display()
        )));
    }
    let mode = kind | (d.file_mode().unwrap_or(0o666) & 0o7777);
    in_root::mknod_in_root(
        root.as_fd(),
        d.path(),
        mode,
        makedev(major as u64, minor as u64),
        Some((d.uid().unwrap_or(0), d.gid().unwrap_or(0))),
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EISDIR) => {
            Error::InvalidSpec(format!("device path {} is a directory", d.path().display()))
        }
        _ => Error::Io {
            context: format!("creating device {}", d.path().display()),
            source: e,
        },
    })
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening {}", path.display()))
}

/// Step 2: make the rootfs `/` and drop the old root.
pub fn pivot(rootfs: &Path) -> Result<()> {
    let old_root = open_dir(Path::new("/"))?;
    let new_root = open_dir(rootfs)?;
    fchdir(&new_root).ctx(|| "entering the rootfs")?;
    pivot_root(".", ".").ctx(|| format!("pivot_root to {}", rootfs.display()))?;
    // The old root is now stacked on top of the new one; detach it without letting the
    // unmount propagate anywhere.
    fchdir(&old_root).ctx(|| "entering the old root")?;
    mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
        .ctx(|| "making the old root rslave")?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the old root")?;
    std::env::set_current_dir("/").ctx(|| "chdir /")?;
    Ok(())
}

/// Step 3: read-only and masked paths, then a read-only root. Runs after [`pivot`].
pub fn finish(c: &Container) -> Result<()> {
    let linux = c.spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        readonly_path(Path::new(p))?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default()
    {
        mask_path(Path::new(p))?;
    }
    if c.spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | locked_flags(Path::new("/"));
        mount(NONE, "/", NONE, flags, NONE).ctx(|| "remounting / read-only")?;
    }
    Ok(())
}

fn readonly_path(p: &Path) -> Result<()> {
    if fs::symlink_metadata(p).is_err() {
        return Ok(());
    }
    mount(Some(p), p, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE)
        .ctx(|| format!("binding read-only path {}", p.display()))?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(p);
    mount(NONE, p, NONE, flags, NONE).ctx(|| format!("remounting {} read-only", p.display()))
}

fn mask_path(p: &Path) -> Result<()> {
    match fs::metadata(p) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, NONE)
            .ctx(|| format!("masking {}", p.display())),
        Ok(_) => mount(Some("/dev/null"), p, NONE, MsFlags::MS_BIND, NONE)
            .ctx(|| format!("masking {}", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse_mount_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn mount_options() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert!(!o.bind);

        let o = opts(&["rbind", "ro", "rprivate", "nodev", "rw"]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, MsFlags::MS_NODEV);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);

        let o = opts(&[
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
            "tmpcopyup",
        ]);
        assert_eq!(
            o.data,
            vec!["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
        );
        assert_eq!(o.ignored, vec!["tmpcopyup"]);
        assert!(o.rec_attr.is_empty());

        let o = opts(&["rbind", "ro", "rro", "rnosuid", "rnoatime"]);
        assert_eq!(
            o.rec_attr,
            RecursiveAttrs {
                set: mount_attr::RDONLY | mount_attr::NOSUID | mount_attr::NOATIME,
                clr: mount_attr::ATIME_MASK,
            }
        );
        let o = opts(&["rro", "rrw"]);
        assert_eq!(o.rec_attr.set & mount_attr::RDONLY, 0);
        assert_eq!(o.rec_attr.clr & mount_attr::RDONLY, mount_attr::RDONLY);

        assert!(parse_mount_options(&["idmap".to_string()]).is_err());
    }

    /// `rro` is applied with mount_setattr or the mount fails: where the kernel refuses it (here:
    /// a directory that is no mount's root), the error comes back and nothing is changed; there
    /// is no read-only-top-mount fallback.
    #[test]
    fn recursive_read_only_fails_rather_than_downgrades() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("not-a-mount");
        fs::create_dir(&dir).unwrap();
        let fd = open(
            &dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let o = opts(&["rbind", "ro", "rro", "rprivate"]);
        assert_eq!(o.rec_attr.set & mount_attr::RDONLY, mount_attr::RDONLY);
        assert!(apply_recursive_attrs(fd.as_fd(), &o.rec_attr).is_err());
        fs::write(dir.join("still-writable"), "").unwrap();
        // Nothing asked, nothing done.
        apply_recursive_attrs(fd.as_fd(), &RecursiveAttrs::default()).unwrap();
    }

    #[test]
    fn bind_flags_as_mount_attrs() {
        use mount_attr::*;
        let (set, clr) = bind_attrs(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
        assert_eq!((set, clr), (RDONLY | NOSUID | NODEV, 0));
        let (set, clr) = bind_attrs(MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME);
        assert_eq!((set, clr), (NOEXEC | NOATIME, ATIME_MASK));
        assert_eq!(bind_attrs(MsFlags::empty()), (0, 0));
    }
}
