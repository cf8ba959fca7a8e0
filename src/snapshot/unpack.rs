//! Unpacking one OCI/Docker image layer (a decompressed tar stream) into an overlayfs lower
//! directory.
//!
//! Safety model: `root` is a fresh directory private to this unpack, so nothing but this code
//! changes it while we run. Every entry name is normalised and refused if it is absolute or has a
//! `..` component; every parent directory an entry is written into is checked to be a real
//! directory (not a symlink) the first time it is used, and remembered until this unpack itself
//! replaces or removes it. All operations are relative to a descriptor of `root`, and final
//! components are created exclusively (`O_EXCL`, `mkdirat`, `symlinkat`, `mknodat`, `linkat`),
//! so an existing symlink is replaced, never written through.
//!
//! OCI whiteouts become overlayfs whiteouts: `dir/.wh.name` becomes a 0/0 character device
//! `dir/name`, and `dir/.wh..wh..opq` sets `trusted.overlay.opaque=y` on `dir`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens,
    makedev, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use xattr::FileExt;

use super::tarstream::{EntryHead, Sparse, TarError, TarStream};

/// Size of the buffer file contents are streamed through.
const COPY_BUF_SIZE: usize = 256 * 1024;
/// Read-ahead for the tar stream, so 512-byte header reads do not each reach the decompressor.
const READ_AHEAD_SIZE: usize = 64 * 1024;
/// Prefix of an OCI whiteout file name.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of OCI/AUFS bookkeeping names, which are never materialised.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The OCI opaque-directory marker.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The overlayfs xattr marking a directory opaque.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// PAX record prefix carrying an extended attribute.
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// Overlayfs' own xattr namespace; only whiteout translation may write it.
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// Default of [`Limits::max_bytes`]: 64 GiB.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;
/// Default of [`Limits::max_inodes`]: 4 Mi.
pub const DEFAULT_MAX_LAYER_INODES: u64 = 4 << 20;

/// What one layer's unpack may write (config `[image] max_layer_bytes` and
/// `max_layer_inodes`). Both count everything written, even what a later entry of the same
/// layer replaces, so a layer cannot make the node write more by rewriting one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of regular file data written (a sparse file's holes cost nothing).
    pub max_bytes: u64,
    /// Files, directories, symlinks, devices, FIFOs, whiteouts and hardlinks created.
    pub max_inodes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_LAYER_BYTES,
            max_inodes: DEFAULT_MAX_LAYER_INODES,
        }
    }
}

/// What one unpacked layer occupies on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Sum of the sizes of the regular files written (a hardlinked file counts once; a sparse
    /// file counts its data, not its holes).
    pub bytes: u64,
    /// Filesystem objects created: files, directories, symlinks, devices, FIFOs and whiteouts
    /// (hardlinks add none).
    pub inodes: u64,
}

/// Why a layer could not be unpacked. Each variant names the offending tar entry as it appears
/// in the archive (`path`); the caller removes the half-written root.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream itself could not be read or is malformed (bad header, truncated).
    #[error("reading layer tar stream: {source}")]
    Archive {
        /// The underlying read or parse error.
        source: io::Error,
    },
    /// Reading an entry's contents from the stream failed or ended early.
    #[error("layer entry {path}: reading contents: {source}")]
    ReadData {
        /// The entry.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The archive's framing or a metadata record (checksum, size, PAX record, sparse map) is
    /// malformed.
    #[error("malformed layer tar: {why}")]
    Malformed {
        /// What is wrong.
        why: String,
    },
    /// A PAX header, GNU long name or sparse map is larger than containerd reads (1 MiB); it is
    /// refused before it is read.
    #[error("layer {what} of {size} bytes exceeds the limit of {limit} bytes")]
    MetadataTooLarge {
        /// Which record.
        what: &'static str,
        /// The size it announces.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The layer writes more file data than `[image] max_layer_bytes` allows.
    #[error("layer entry {path}: the layer writes more than max_layer_bytes ({limit} bytes)")]
    TooManyBytes {
        /// The entry being written when the budget ran out.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The layer creates more objects than `[image] max_layer_inodes` allows.
    #[error("layer entry {path}: the layer creates more than max_layer_inodes ({limit} objects)")]
    TooManyInodes {
        /// The entry that would exceed the budget.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A header field (owner, mode, time, device number, PAX record) is invalid.
    #[error("layer entry {path}: invalid header: {source}")]
    Header {
        /// The entry.
        path: PathBuf,
        /// What is wrong with it.
        source: io::Error,
    },
    /// The entry name is absolute.
    #[error("layer entry {path}: absolute path")]
    AbsolutePath {
        /// The entry.
        path: PathBuf,
    },
    /// The entry name has a `..` component.
    #[error("layer entry {path}: `..` component escapes the layer")]
    PathEscapes {
        /// The entry.
        path: PathBuf,
    },
    /// A parent of the entry is a symlink, so writing it would follow that link.
    #[error("layer entry {path}: would be written through symlink {link}")]
    ThroughSymlink {
        /// The entry.
        path: PathBuf,
        /// The symlink, relative to the layer root.
        link: PathBuf,
    },
    /// A parent of the entry exists but is neither a directory nor a symlink.
    #[error("layer entry {path}: parent {parent} is not a directory")]
    NotADirectory {
        /// The entry.
        path: PathBuf,
        /// The offending parent, relative to the layer root.
        parent: PathBuf,
    },
    /// A non-directory entry names the layer root itself (e.g. `./`).
    #[error("layer entry {path}: a non-directory cannot replace the layer root")]
    ReplacesRoot {
        /// The entry.
        path: PathBuf,
    },
    /// A whiteout names nothing (`.wh.`) or the directory itself (`.wh..`).
    #[error("layer entry {path}: invalid whiteout name")]
    InvalidWhiteout {
        /// The entry.
        path: PathBuf,
    },
    /// A hardlink's target is absolute or has a `..` component.
    #[error("layer entry {path}: hardlink target {target} is outside the layer")]
    HardlinkOutside {
        /// The entry.
        path: PathBuf,
        /// The link target as written in the archive.
        target: PathBuf,
    },
    /// A hardlink's target lies below a symlink.
    #[error("layer entry {path}: hardlink target {target} passes through symlink {link}")]
    HardlinkThroughSymlink {
        /// The entry.
        path: PathBuf,
        /// The link target as written in the archive.
        target: PathBuf,
        /// The symlink, relative to the layer root.
        link: PathBuf,
    },
    /// A hardlink's target does not exist (yet) in the layer.
    #[error("layer entry {path}: hardlink target {target} does not exist")]
    HardlinkMissing {
        /// The entry.
        path: PathBuf,
        /// The link target as written in the archive.
        target: PathBuf,
    },
    /// A hardlink's target is a directory.
    #[error("layer entry {path}: hardlink target {target} is a directory")]
    HardlinkToDirectory {
        /// The entry.
        path: PathBuf,
        /// The link target as written in the archive.
        target: PathBuf,
    },
    /// The entry type is not one a layer may contain (e.g. GNU volume labels, multi-volume
    /// continuations).
    #[error("layer entry {path}: unsupported entry type {kind:?}")]
    UnsupportedEntry {
        /// The entry.
        path: PathBuf,
        /// The tar type flag.
        kind: char,
    },
    /// Setting an extended attribute failed.
    #[error("layer entry {path}: setting xattr {name}: {source}")]
    Xattr {
        /// The entry.
        path: PathBuf,
        /// The attribute name.
        name: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A filesystem operation on the entry failed.
    #[error("layer entry {path}: {source}")]
    Io {
        /// The entry (or the root, if it could not be opened).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl UnpackError {
    /// True when the layer's content is hostile or malformed (as opposed to a failure reading
    /// the stream or writing to the local filesystem).
    pub fn is_invalid_layer(&self) -> bool {
        !matches!(
            self,
            UnpackError::Archive { .. }
                | UnpackError::ReadData { .. }
                | UnpackError::Xattr { .. }
                | UnpackError::Io { .. }
        )
    }
}

/// Unpack one OCI/Docker layer tar stream (already decompressed) into `root`, which exists and
/// is empty. The result is an overlayfs "diff" directory (a lower layer).
///
/// Memory stays bounded whatever the stream: a metadata record over 1 MiB is refused from its
/// header, sparse files are written with holes, and the unpack stops once it would write more
/// than `limits` allows.
///
/// Must run with the privileges to chown, mknod and set `trusted.*` xattrs (root). On error
/// `root` is left half-written for the caller to delete. The stream is read up to the tar's
/// end-of-archive marker (possibly a little beyond, as it is read ahead); the caller drains the
/// rest if it needs it, e.g. for hashing.
pub fn unpack_layer<R: Read>(
    reader: R,
    root: &Path,
    limits: Limits,
) -> Result<UnpackStats, UnpackError> {
    let root_fd = open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Io {
        path: root.to_path_buf(),
        source: e.into(),
    })?;
    let mut unpacker = Unpacker {
        root,
        root_fd,
        dirs: BTreeMap::new(),
        stats: UnpackStats::default(),
        buf: vec![0; COPY_BUF_SIZE],
        limits,
        written: 0,
        created: 0,
    };
    let mut stream = TarStream::new(BufReader::with_capacity(READ_AHEAD_SIZE, reader));
    while let Some(head) = stream.next_entry().map_err(tar_error)? {
        unpacker.entry(&head, &mut stream.data())?;
    }
    unpacker.finish()
}

/// An error of the tar framing as an unpack error.
fn tar_error(e: TarError) -> UnpackError {
    match e {
        TarError::Io(source) => UnpackError::Archive { source },
        TarError::TooLong { what, size } => UnpackError::MetadataTooLarge {
            what,
            size,
            limit: super::tarstream::MAX_META_SIZE,
        },
        TarError::Invalid(why) => UnpackError::Malformed { why },
    }
}

/// Header metadata applied to a created object.
struct Meta {
    uid: Uid,
    gid: Gid,
    mode: Mode,
    mtime: TimeSpec,
    /// `(name, value)` from `SCHILY.xattr.*` PAX records.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a name could not be normalised.
enum BadName {
    Absolute,
    Escapes,
}

/// State of one unpack.
struct Unpacker<'a> {
    root: &'a Path,
    root_fd: OwnedFd,
    /// Directories (relative to root, no trailing slash) known to be real directories because
    /// this unpack made or checked them, with the mtime to restore once all children are written
    /// (`None` for directories the tar never named). Ordered so a subtree can be dropped at once.
    dirs: BTreeMap<Vec<u8>, Option<TimeSpec>>,
    stats: UnpackStats,
    buf: Vec<u8>,
    limits: Limits,
    /// File data bytes written so far, including what was later replaced.
    written: u64,
    /// Objects created so far, including what was later replaced.
    created: u64,
}

impl Unpacker<'_> {
    /// Apply one archive entry, whose data `data` yields.
    fn entry(&mut self, head: &EntryHead, data: &mut impl Read) -> Result<(), UnpackError> {
        let kind = head.header.entry_type();
        let raw = head.path.clone();
        let rel = normalize(&raw).map_err(|bad| match bad {
            BadName::Absolute => UnpackError::AbsolutePath {
                path: to_path(&raw),
            },
            BadName::Escapes => UnpackError::PathEscapes {
                path: to_path(&raw),
            },
        })?;
        // Old (pre-POSIX) archives mark directories by a trailing slash on a type-NUL entry.
        let is_dir = kind == tar::EntryType::Directory
            || (head.header.as_bytes()[156] == 0 && raw.ends_with(b"/"));
        if rel.is_empty() {
            // The root belongs to the snapshotter; its own entry carries nothing we keep.
            return if is_dir {
                Ok(())
            } else {
                Err(UnpackError::ReplacesRoot {
                    path: to_path(&raw),
                })
            };
        }
        let (parent, base) = split_parent(&rel);
        // Nothing inside AUFS metadata directories (e.g. `.wh..wh.plnk/`) is part of the image.
        if parent
            .split(|&b| b == b'/')
            .any(|c| c.starts_with(WHITEOUT_META_PREFIX))
        {
            return Ok(());
        }
        if base == OPAQUE_MARKER {
            return self.opaque(parent, &raw);
        }
        if base.starts_with(WHITEOUT_META_PREFIX) {
            return Ok(());
        }
        let meta = read_meta(head, &raw)?;
        if let Some(name) = base.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(parent, name, &raw, &meta);
        }
        if is_dir {
            return self.directory(&rel, &raw, meta);
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file(&rel, &raw, &meta, data, head.size, head.sparse.as_ref())
            }
            tar::EntryType::Symlink => {
                let target = head
                    .link
                    .as_deref()
                    .ok_or_else(|| header_error(&raw, "symlink without a target"))?;
                self.symlink(&rel, &raw, target, &meta)
            }
            tar::EntryType::Link => {
                let target = head
                    .link
                    .as_deref()
                    .ok_or_else(|| header_error(&raw, "hardlink without a target"))?;
                self.hardlink(&rel, &raw, target)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    tar::EntryType::Char => (SFlag::S_IFCHR, device_number(&head.header, &raw)?),
                    tar::EntryType::Block => (SFlag::S_IFBLK, device_number(&head.header, &raw)?),
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.node(&rel, &raw, sflag, dev, &meta)
            }
            other => Err(UnpackError::UnsupportedEntry {
                path: to_path(&raw),
                kind: char::from(other.as_byte()),
            }),
        }
    }

    /// A directory entry: create it, or merge into an existing directory.
    fn directory(&mut self, rel: &[u8], raw: &[u8], meta: Meta) -> Result<(), UnpackError> {
        self.ensure_dirs(split_parent(rel).0, raw)?;
        if !self.dirs.contains_key(rel) {
            match mkdirat(self.root_fd.as_fd(), rel, Mode::S_IRWXU) {
                Ok(()) => {
                    self.stats.inodes += 1;
                    self.charge_inode(raw)?;
                }
                Err(Errno::EEXIST) => {
                    let st = self.lstat(rel, raw)?;
                    if file_type(&st) != SFlag::S_IFDIR {
                        self.remove_existing(rel, raw, &st)?;
                        mkdirat(self.root_fd.as_fd(), rel, Mode::S_IRWXU)
                            .map_err(|e| io_error(raw, e))?;
                        self.stats.inodes += 1;
                        self.charge_inode(raw)?;
                    }
                }
                Err(e) => return Err(io_error(raw, e)),
            }
        }
        self.chown_nofollow(rel, raw, &meta)?;
        // Mode after owner: chown may clear setgid. The object is a directory we just made or
        // checked, so following is harmless.
        fchmodat(
            self.root_fd.as_fd(),
            rel,
            meta.mode,
            FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| io_error(raw, e))?;
        self.set_xattrs_path(rel, raw, &meta.xattrs, true)?;
        // Writing children changes the mtime, so it is set in `finish`.
        self.dirs.insert(rel.to_vec(), Some(meta.mtime));
        Ok(())
    }

    /// A regular file: stream its `size` bytes of contents into a freshly created file; a
    /// sparse one puts them at its runs' offsets and leaves the rest as holes.
    fn file(
        &mut self,
        rel: &[u8],
        raw: &[u8],
        meta: &Meta,
        data: &mut impl Read,
        size: u64,
        sparse: Option<&Sparse>,
    ) -> Result<(), UnpackError> {
        self.ensure_dirs(split_parent(rel).0, raw)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = self.create(rel, raw, |dir| {
            openat(dir, rel, flags, Mode::S_IRUSR | Mode::S_IWUSR)
        })?;
        self.stats.inodes += 1;
        self.charge_inode(raw)?;
        let mut file = File::from(fd);
        let io = |source| UnpackError::Io {
            path: to_path(raw),
            source,
        };
        match sparse {
            None => self.copy(&mut file, data, size, raw)?,
            Some(sparse) => {
                for &(offset, length) in &sparse.runs {
                    file.seek(SeekFrom::Start(offset)).map_err(io)?;
                    self.copy(&mut file, data, length, raw)?;
                }
                file.set_len(sparse.real_size).map_err(io)?;
            }
        }
        fchown(&file, Some(meta.uid), Some(meta.gid)).map_err(|e| io_error(raw, e))?;
        // After chown, which clears setuid/setgid.
        fchmod(&file, meta.mode).map_err(|e| io_error(raw, e))?;
        // After chown, which drops security.capability.
        for (name, value) in &meta.xattrs {
            if let Err(e) = file.set_xattr(OsStr::from_bytes(name), value) {
                check_xattr_error(raw, name, e, true)?;
            }
        }
        futimens(&file, &meta.mtime, &meta.mtime).map_err(|e| io_error(raw, e))?;
        Ok(())
    }

    /// Copy exactly `len` bytes from `data` to `file`, within the layer's byte budget.
    fn copy(
        &mut self,
        file: &mut File,
        data: &mut impl Read,
        len: u64,
        raw: &[u8],
    ) -> Result<(), UnpackError> {
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(UnpackError::ReadData {
                        path: to_path(raw),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("stream ended after {} of {len} bytes", len - left),
                        ),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(UnpackError::ReadData {
                        path: to_path(raw),
                        source,
                    });
                }
            };
            self.written += n as u64;
            if self.written > self.limits.max_bytes {
                return Err(UnpackError::TooManyBytes {
                    path: to_path(raw),
                    limit: self.limits.max_bytes,
                });
            }
            file.write_all(&self.buf[..n])
                .map_err(|source| UnpackError::Io {
                    path: to_path(raw),
                    source,
                })?;
            self.stats.bytes += n as u64;
            left -= n as u64;
        }
        Ok(())
    }

    /// Count one created object against the layer's budget.
    fn charge_inode(&mut self, raw: &[u8]) -> Result<(), UnpackError> {
        self.created += 1;
        if self.created > self.limits.max_inodes {
            return Err(UnpackError::TooManyInodes {
                path: to_path(raw),
                limit: self.limits.max_inodes,
            });
        }
        Ok(())
    }

    /// A symlink: any target is allowed, since it is only ever created, never followed.
    fn symlink(
        &mut self,
        rel: &[u8],
        raw: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        self.ensure_dirs(split_parent(rel).0, raw)?;
        self.create(rel, raw, |dir| symlinkat(target, dir, rel))?;
        self.chown_nofollow(rel, raw, meta)?;
        self.set_xattrs_path(rel, raw, &meta.xattrs, false)?;
        self.utimes_nofollow(rel, raw, meta.mtime)?;
        self.stats.inodes += 1;
        self.charge_inode(raw)
    }

    /// A hardlink to an object already unpacked in this layer. The shared inode keeps the
    /// target's metadata.
    fn hardlink(&mut self, rel: &[u8], raw: &[u8], link: &[u8]) -> Result<(), UnpackError> {
        let target = normalize(link).map_err(|_| UnpackError::HardlinkOutside {
            path: to_path(raw),
            target: to_path(link),
        })?;
        if target.is_empty() {
            return Err(UnpackError::HardlinkToDirectory {
                path: to_path(raw),
                target: to_path(link),
            });
        }
        self.check_link_target(&target, raw, link)?;
        if target == rel {
            // A link to itself that exists already: nothing to do.
            return Ok(());
        }
        self.ensure_dirs(split_parent(rel).0, raw)?;
        // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, never what it points to.
        self.create(rel, raw, |dir| {
            linkat(dir, &target[..], dir, rel, AtFlags::empty())
        })?;
        // A name costs the node a directory entry even though it shares the inode.
        self.charge_inode(raw)
    }

    /// A character or block device or a FIFO.
    fn node(
        &mut self,
        rel: &[u8],
        raw: &[u8],
        kind: SFlag,
        dev: libc::dev_t,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        self.ensure_dirs(split_parent(rel).0, raw)?;
        self.create(rel, raw, |dir| {
            mknodat(dir, rel, kind, Mode::S_IRUSR | Mode::S_IWUSR, dev)
        })?;
        self.chown_nofollow(rel, raw, meta)?;
        // We just created this node (not a symlink), so following is harmless.
        fchmodat(
            self.root_fd.as_fd(),
            rel,
            meta.mode,
            FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| io_error(raw, e))?;
        self.set_xattrs_path(rel, raw, &meta.xattrs, false)?;
        self.utimes_nofollow(rel, raw, meta.mtime)?;
        self.stats.inodes += 1;
        self.charge_inode(raw)
    }

    /// `parent/.wh.name`: an overlayfs whiteout (char device 0/0) at `parent/name`.
    fn whiteout(
        &mut self,
        parent: &[u8],
        name: &[u8],
        raw: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        match name {
            b"" | b"." => return Err(UnpackError::InvalidWhiteout { path: to_path(raw) }),
            b".." => return Err(UnpackError::PathEscapes { path: to_path(raw) }),
            _ => {}
        }
        let target = join(parent, name);
        self.ensure_dirs(parent, raw)?;
        self.create(&target, raw, |dir| {
            mknodat(
                dir,
                &target[..],
                SFlag::S_IFCHR,
                Mode::empty(),
                makedev(0, 0),
            )
        })?;
        self.chown_nofollow(&target, raw, meta)?;
        self.stats.inodes += 1;
        self.charge_inode(raw)
    }

    /// `dir/.wh..wh..opq`: mark `dir` (created if absent) opaque.
    fn opaque(&mut self, dir: &[u8], raw: &[u8]) -> Result<(), UnpackError> {
        self.ensure_dirs(dir, raw)?;
        let path = if dir.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(OsStr::from_bytes(dir))
        };
        xattr::set(path, OPAQUE_XATTR, b"y").map_err(|source| UnpackError::Xattr {
            path: to_path(raw),
            name: OPAQUE_XATTR.to_string(),
            source,
        })
    }

    /// Run `op` (an exclusive create of `rel`); if something is already there, remove it (a
    /// later entry wins) and run `op` once more.
    fn create<T>(
        &mut self,
        rel: &[u8],
        raw: &[u8],
        op: impl Fn(BorrowedFd<'_>) -> nix::Result<T>,
    ) -> Result<T, UnpackError> {
        match op(self.root_fd.as_fd()) {
            Err(Errno::EEXIST) => {
                let st = self.lstat(rel, raw)?;
                self.remove_existing(rel, raw, &st)?;
                op(self.root_fd.as_fd())
            }
            other => other,
        }
        .map_err(|e| io_error(raw, e))
    }

    /// Remove `rel` (described by `st`), recursively if it is a directory, and take what it
    /// occupied off the stats.
    fn remove_existing(
        &mut self,
        rel: &[u8],
        raw: &[u8],
        st: &FileStat,
    ) -> Result<(), UnpackError> {
        if file_type(st) == SFlag::S_IFDIR {
            let (bytes, inodes) =
                remove_tree(&self.root.join(OsStr::from_bytes(rel))).map_err(|source| {
                    UnpackError::Io {
                        path: to_path(raw),
                        source,
                    }
                })?;
            self.forget_dirs(rel);
            self.stats.bytes = self.stats.bytes.saturating_sub(bytes);
            self.stats.inodes = self.stats.inodes.saturating_sub(inodes);
        } else {
            unlinkat(self.root_fd.as_fd(), rel, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| io_error(raw, e))?;
            // Another link keeps the inode (and its bytes) alive.
            if st.st_nlink == 1 {
                self.stats.inodes = self.stats.inodes.saturating_sub(1);
                if file_type(st) == SFlag::S_IFREG {
                    let size = u64::try_from(st.st_size).unwrap_or(0);
                    self.stats.bytes = self.stats.bytes.saturating_sub(size);
                }
            }
        }
        Ok(())
    }

    /// Drop `rel` and everything below it from the known directories.
    fn forget_dirs(&mut self, rel: &[u8]) {
        self.dirs.remove(rel);
        let prefix = join(rel, b"");
        let below: Vec<Vec<u8>> = self
            .dirs
            .range::<[u8], _>((Bound::Included(&prefix[..]), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.dirs.remove(&k);
        }
    }

    /// Where the not-yet-known components of `dir` begin (a byte offset), or `None` if `dir`
    /// is the root or a known directory. Ancestors of a known directory are known too.
    fn first_unknown(&self, dir: &[u8]) -> Option<usize> {
        if dir.is_empty() || self.dirs.contains_key(dir) {
            return None;
        }
        let mut end = dir.len();
        while let Some(slash) = dir[..end].iter().rposition(|&b| b == b'/') {
            if self.dirs.contains_key(&dir[..slash]) {
                return Some(slash + 1);
            }
            end = slash;
        }
        Some(0)
    }

    /// Make every component of `dir` a real directory, creating missing ones (mode 0755) and
    /// refusing symlinks and non-directories.
    fn ensure_dirs(&mut self, dir: &[u8], raw: &[u8]) -> Result<(), UnpackError> {
        let Some(mut pos) = self.first_unknown(dir) else {
            return Ok(());
        };
        loop {
            let end = component_end(dir, pos);
            let prefix = &dir[..end];
            match mkdirat(
                self.root_fd.as_fd(),
                prefix,
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) => {
                    // The process umask may have narrowed 0755.
                    fchmodat(
                        self.root_fd.as_fd(),
                        prefix,
                        Mode::from_bits_truncate(0o755),
                        FchmodatFlags::FollowSymlink,
                    )
                    .map_err(|e| io_error(raw, e))?;
                    self.stats.inodes += 1;
                    self.charge_inode(raw)?;
                }
                Err(Errno::EEXIST) => {
                    let st = self.lstat(prefix, raw)?;
                    match file_type(&st) {
                        SFlag::S_IFDIR => {}
                        SFlag::S_IFLNK => {
                            return Err(UnpackError::ThroughSymlink {
                                path: to_path(raw),
                                link: to_path(prefix),
                            });
                        }
                        _ => {
                            return Err(UnpackError::NotADirectory {
                                path: to_path(raw),
                                parent: to_path(prefix),
                            });
                        }
                    }
                }
                Err(e) => return Err(io_error(raw, e)),
            }
            self.dirs.insert(prefix.to_vec(), None);
            if end == dir.len() {
                return Ok(());
            }
            pos = end + 1;
        }
    }

    /// Check that hardlink target `target` exists, is not a directory, and that no parent of
    /// it is a symlink. `link` is the target as the archive spells it.
    fn check_link_target(
        &mut self,
        target: &[u8],
        raw: &[u8],
        link: &[u8],
    ) -> Result<(), UnpackError> {
        let missing = || UnpackError::HardlinkMissing {
            path: to_path(raw),
            target: to_path(link),
        };
        let parent = split_parent(target).0;
        if let Some(mut pos) = self.first_unknown(parent) {
            loop {
                let end = component_end(parent, pos);
                let prefix = &parent[..end];
                let st = match fstatat(self.root_fd.as_fd(), prefix, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(Errno::ENOENT) => return Err(missing()),
                    Err(e) => return Err(io_error(raw, e)),
                };
                match file_type(&st) {
                    SFlag::S_IFDIR => {}
                    SFlag::S_IFLNK => {
                        return Err(UnpackError::HardlinkThroughSymlink {
                            path: to_path(raw),
                            target: to_path(link),
                            link: to_path(prefix),
                        });
                    }
                    _ => return Err(missing()),
                }
                self.dirs.insert(prefix.to_vec(), None);
                if end == parent.len() {
                    break;
                }
                pos = end + 1;
            }
        }
        match fstatat(self.root_fd.as_fd(), target, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if file_type(&st) == SFlag::S_IFDIR => Err(UnpackError::HardlinkToDirectory {
                path: to_path(raw),
                target: to_path(link),
            }),
            Ok(_) => Ok(()),
            Err(Errno::ENOENT) => Err(missing()),
            Err(e) => Err(io_error(raw, e)),
        }
    }

    /// `lstat` of `rel`.
    fn lstat(&self, rel: &[u8], raw: &[u8]) -> Result<FileStat, UnpackError> {
        fstatat(self.root_fd.as_fd(), rel, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| io_error(raw, e))
    }

    /// `lchown` of `rel` to the header's numeric owner.
    fn chown_nofollow(&self, rel: &[u8], raw: &[u8], meta: &Meta) -> Result<(), UnpackError> {
        fchownat(
            self.root_fd.as_fd(),
            rel,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_error(raw, e))
    }

    /// Set atime and mtime of `rel` without following a symlink.
    fn utimes_nofollow(&self, rel: &[u8], raw: &[u8], mtime: TimeSpec) -> Result<(), UnpackError> {
        utimensat(
            self.root_fd.as_fd(),
            rel,
            &mtime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| io_error(raw, e))
    }

    /// `lsetxattr` each of `xattrs` on `rel`; `dir_or_file` says whether `user.*` is allowed.
    fn set_xattrs_path(
        &self,
        rel: &[u8],
        raw: &[u8],
        xattrs: &[(Vec<u8>, Vec<u8>)],
        dir_or_file: bool,
    ) -> Result<(), UnpackError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        // There is no lsetxattrat; the path is ours and its parents are checked.
        let path = self.root.join(OsStr::from_bytes(rel));
        for (name, value) in xattrs {
            if let Err(e) = xattr::set(&path, OsStr::from_bytes(name), value) {
                check_xattr_error(raw, name, e, dir_or_file)?;
            }
        }
        Ok(())
    }

    /// Restore directory mtimes, now that no more children will be written.
    fn finish(self) -> Result<UnpackStats, UnpackError> {
        for (rel, mtime) in &self.dirs {
            if let Some(mtime) = mtime {
                self.utimes_nofollow(rel, rel, *mtime)?;
            }
        }
        Ok(self.stats)
    }
}

/// Parse the metadata of an entry from its header and PAX records.
fn read_meta(head: &EntryHead, raw: &[u8]) -> Result<Meta, UnpackError> {
    let bad = |source| UnpackError::Header {
        path: to_path(raw),
        source,
    };
    let header = &head.header;
    let old = header.as_old();
    let uid = u32::try_from(or_zero(header.uid(), &old.uid).map_err(bad)?)
        .map_err(|_| header_error(raw, "uid does not fit in 32 bits"))?;
    let gid = u32::try_from(or_zero(header.gid(), &old.gid).map_err(bad)?)
        .map_err(|_| header_error(raw, "gid does not fit in 32 bits"))?;
    let mode = or_zero(header.mode(), &old.mode).map_err(bad)?;
    let mode = Mode::from_bits_truncate(mode & 0o7777);
    let secs = i64::try_from(or_zero(header.mtime(), &old.mtime).map_err(bad)?)
        .map_err(|_| header_error(raw, "mtime out of range"))?;
    let mut mtime = TimeSpec::new(secs, 0);
    let mut xattrs = Vec::new();
    for (key, value) in &head.pax {
        if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
            // Overlay metadata must come only from whiteouts, never from the image.
            if !name.is_empty() && !name.starts_with(OVERLAY_XATTR_PREFIX) {
                xattrs.push((name.to_vec(), value.clone()));
            }
        } else if key == b"mtime" {
            mtime = parse_pax_time(value).ok_or_else(|| header_error(raw, "invalid PAX mtime"))?;
        }
    }
    Ok(Meta {
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(gid),
        mode,
        mtime,
        xattrs,
    })
}

/// The device number of a char or block device entry.
fn device_number(header: &tar::Header, raw: &[u8]) -> Result<libc::dev_t, UnpackError> {
    let bad = |source| UnpackError::Header {
        path: to_path(raw),
        source,
    };
    let bytes = header.as_bytes();
    let major = or_zero(header.device_major(), &bytes[329..337]).map_err(bad)?;
    let minor = or_zero(header.device_minor(), &bytes[337..345]).map_err(bad)?;
    Ok(makedev(
        major.unwrap_or(0).into(),
        minor.unwrap_or(0).into(),
    ))
}

/// A numeric header field, reading an empty one (all NULs or spaces) as zero as GNU tar and
/// Go's archive/tar do, where the tar crate refuses it.
fn or_zero<T: Default>(parsed: io::Result<T>, field: &[u8]) -> io::Result<T> {
    match parsed {
        Err(_) if field.iter().all(|&b| b == 0 || b == b' ') => Ok(T::default()),
        other => other,
    }
}

/// Parse a PAX time, `[-]seconds[.fraction]`.
fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    let text = std::str::from_utf8(value).ok()?;
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let negative = whole.starts_with('-');
    let mut secs: i64 = whole.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    if negative && nanos > 0 {
        secs = secs.checked_sub(1)?;
        nanos = 1_000_000_000 - nanos;
    }
    Some(TimeSpec::new(secs, nanos))
}

/// Normalise an archive name to a root-relative path: strip leading `./`, drop empty and `.`
/// components and trailing slashes; refuse absolute names and `..`.
fn normalize(name: &[u8]) -> Result<Vec<u8>, BadName> {
    let mut rest = name;
    while let Some(r) = rest.strip_prefix(b"./") {
        rest = r;
    }
    if rest.first() == Some(&b'/') {
        return Err(BadName::Absolute);
    }
    let mut out = Vec::with_capacity(rest.len());
    for component in rest.split(|&b| b == b'/') {
        match component {
            b"" | b"." => continue,
            b".." => return Err(BadName::Escapes),
            _ => {}
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(component);
    }
    Ok(out)
}

/// Split a normalised path into its parent (empty for the root) and final component.
fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (b"", rel),
    }
}

/// `parent/name` (just `name` under the root).
fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
    out.extend_from_slice(parent);
    if !parent.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// End offset of the component of `path` starting at `pos`.
fn component_end(path: &[u8], pos: usize) -> usize {
    path[pos..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(path.len(), |i| pos + i)
}

/// The file type bits of a stat.
fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Remove a directory tree without following symlinks, returning the regular-file bytes and
/// inodes freed. Iterative, so a deep hostile tree cannot overflow the stack.
fn remove_tree(top: &Path) -> io::Result<(u64, u64)> {
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![(top.to_path_buf(), false)];
    while let Some((dir, emptied)) = stack.pop() {
        if emptied {
            std::fs::remove_dir(&dir)?;
            inodes += 1;
            continue;
        }
        stack.push((dir.clone(), true));
        for child in std::fs::read_dir(&dir)? {
            let child = child?;
            let path = child.path();
            if child.file_type()?.is_dir() {
                stack.push((path, false));
                continue;
            }
            let md = std::fs::symlink_metadata(&path)?;
            std::fs::remove_file(&path)?;
            if md.nlink() == 1 {
                inodes += 1;
                if md.is_file() {
                    bytes += md.len();
                }
            }
        }
    }
    Ok((bytes, inodes))
}

/// Decide whether a failed xattr write stops the unpack. Tolerated, as containerd does: a
/// filesystem without the namespace (`EOPNOTSUPP`), and `user.*` on objects other than regular
/// files and directories, which the kernel refuses (`EPERM`).
fn check_xattr_error(
    raw: &[u8],
    name: &[u8],
    e: io::Error,
    dir_or_file: bool,
) -> Result<(), UnpackError> {
    let errno = e.raw_os_error();
    if errno == Some(libc::EOPNOTSUPP)
        || (errno == Some(libc::EPERM) && !dir_or_file && name.starts_with(b"user."))
    {
        return Ok(());
    }
    Err(UnpackError::Xattr {
        path: to_path(raw),
        name: String::from_utf8_lossy(name).into_owned(),
        source: e,
    })
}

/// A path from raw archive bytes (not necessarily UTF-8).
fn to_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// An `Io` error for entry `raw`.
fn io_error(raw: &[u8], errno: Errno) -> UnpackError {
    UnpackError::Io {
        path: to_path(raw),
        source: errno.into(),
    }
}

/// A `Header` error for entry `raw`.
fn header_error(raw: &[u8], why: &str) -> UnpackError {
    UnpackError::Header {
        path: to_path(raw),
        source: io::Error::new(io::ErrorKind::InvalidData, why.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    const MTIME: u64 = 1_600_000_000;

    /// An in-memory layer tar, written header by header so hostile names get through.
    struct Layer(tar::Builder<Vec<u8>>);

    fn header(kind: tar::EntryType, name: &[u8], mode: u32) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(0);
        let field = &mut h.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name);
        h
    }

    fn with_link(mut h: tar::Header, target: &[u8]) -> tar::Header {
        let field = &mut h.as_old_mut().linkname;
        field.fill(0);
        field[..target.len()].copy_from_slice(target);
        h
    }

    fn owned(mut h: tar::Header, uid: u64, gid: u64, mtime: u64) -> tar::Header {
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h
    }

    impl Layer {
        fn new() -> Self {
            Layer(tar::Builder::new(Vec::new()))
        }
        fn add(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
            h.set_size(data.len() as u64);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
            self.add(
                header(tar::EntryType::Directory, name.as_bytes(), mode),
                b"",
            )
        }
        fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
            self.add(header(tar::EntryType::Regular, name.as_bytes(), mode), data)
        }
        fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            let h = header(tar::EntryType::Symlink, name.as_bytes(), 0o777);
            self.add(with_link(h, target.as_bytes()), b"")
        }
        fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
            let h = header(tar::EntryType::Link, name.as_bytes(), 0o644);
            self.add(with_link(h, target.as_bytes()), b"")
        }
        fn fifo(&mut self, name: &str) -> &mut Self {
            self.add(header(tar::EntryType::Fifo, name.as_bytes(), 0o644), b"")
        }
        /// A PAX extended header describing the next entry.
        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            let mut data = Vec::new();
            for (key, value) in records {
                let base = key.len() + value.len() + 3;
                let mut len = base + base.to_string().len();
                if len.to_string().len() != base.to_string().len() {
                    len = base + len.to_string().len();
                }
                data.extend_from_slice(format!("{len} {key}=").as_bytes());
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            self.add(header(tar::EntryType::XHeader, b"PaxHeader", 0o644), &data)
        }
        fn bytes(&mut self) -> Vec<u8> {
            self.0
                .get_mut()
                .clone()
                .into_iter()
                .chain([0u8; 1024])
                .collect()
        }
    }

    /// A root to unpack into, beside a sentinel directory that must never change.
    struct Fixture {
        dir: tempfile::TempDir,
        root: PathBuf,
        sentinel: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            let sentinel = dir.path().join("sentinel");
            fs::create_dir(&root).unwrap();
            fs::create_dir(&sentinel).unwrap();
            fs::write(sentinel.join("secret"), b"keep").unwrap();
            Fixture {
                dir,
                root,
                sentinel,
            }
        }
        fn unpack(&self, layer: &mut Layer) -> Result<UnpackStats, UnpackError> {
            unpack_layer(&layer.bytes()[..], &self.root, Limits::default())
        }
        fn at(&self, rel: &str) -> PathBuf {
            self.root.join(rel)
        }
        fn lstat(&self, rel: &str) -> fs::Metadata {
            fs::symlink_metadata(self.at(rel)).unwrap()
        }
        fn exists(&self, rel: &str) -> bool {
            fs::symlink_metadata(self.at(rel)).is_ok()
        }
        /// Nothing outside root was created or changed.
        fn assert_outside_untouched(&self) {
            let names = |p: &Path| -> BTreeSet<String> {
                fs::read_dir(p)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            };
            assert_eq!(
                names(self.dir.path()),
                BTreeSet::from(["root".into(), "sentinel".into()])
            );
            assert_eq!(names(&self.sentinel), BTreeSet::from(["secret".into()]));
            let secret = self.sentinel.join("secret");
            assert_eq!(fs::read(&secret).unwrap(), b"keep");
            let md = fs::metadata(&secret).unwrap();
            assert_eq!((md.nlink(), md.uid(), md.mode() & 0o7777), (1, 0, 0o644));
            assert!(!Path::new("/pwned").exists());
        }
    }

    /// A predicate on the error an unpack must fail with.
    type Expect = fn(&UnpackError) -> bool;

    fn mode(md: &fs::Metadata) -> u32 {
        md.permissions().mode() & 0o7777
    }

    #[test]
    fn files_dirs_modes_owners_and_mtimes() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.add(
            owned(
                header(tar::EntryType::Directory, b"./etc/", 0o750),
                1000,
                2000,
                1_000,
            ),
            b"",
        );
        l.add(
            owned(
                header(tar::EntryType::Regular, b"./etc/hosts", 0o640),
                1,
                2,
                2_000,
            ),
            b"127.0.0.1 localhost\n",
        );
        l.file("a/b/c/deep", 0o600, b"xyz");
        let stats = fx.unpack(&mut l).unwrap();

        let etc = fx.lstat("etc");
        assert!(etc.is_dir());
        assert_eq!(
            (mode(&etc), etc.uid(), etc.gid(), etc.mtime()),
            (0o750, 1000, 2000, 1_000)
        );
        let hosts = fx.lstat("etc/hosts");
        assert_eq!(
            fs::read(fx.at("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        assert_eq!(
            (mode(&hosts), hosts.uid(), hosts.gid(), hosts.mtime()),
            (0o640, 1, 2, 2_000)
        );
        // Parents the tar never named are 0755 root-owned directories.
        for implicit in ["a", "a/b", "a/b/c"] {
            let md = fx.lstat(implicit);
            assert!(md.is_dir());
            assert_eq!((mode(&md), md.uid()), (0o755, 0));
        }
        assert_eq!(mode(&fx.lstat("a/b/c/deep")), 0o600);
        assert_eq!(
            stats,
            UnpackStats {
                bytes: 23,
                inodes: 6
            }
        );
    }

    #[test]
    fn directory_mtime_is_restored_after_children_are_written() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.add(
            owned(header(tar::EntryType::Directory, b"d/", 0o755), 0, 0, 1_234),
            b"",
        );
        l.file("d/f", 0o644, b"x")
            .file("d/e/g", 0o644, b"y")
            .symlink("d/s", "f");
        fx.unpack(&mut l).unwrap();
        assert_eq!(fx.lstat("d").mtime(), 1_234);
        assert_eq!(fx.lstat("d/f").mtime(), MTIME as i64);
        assert_eq!(fx.lstat("d/s").mtime(), MTIME as i64);
    }

    #[test]
    fn setuid_setgid_and_sticky_survive_chown() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.add(
            owned(
                header(tar::EntryType::Regular, b"bin/su", 0o4755),
                1000,
                1000,
                MTIME,
            ),
            b"su",
        );
        l.add(
            owned(
                header(tar::EntryType::Regular, b"bin/wall", 0o2755),
                0,
                5,
                MTIME,
            ),
            b"w",
        );
        l.add(
            owned(
                header(tar::EntryType::Directory, b"shared", 0o2775),
                1000,
                50,
                MTIME,
            ),
            b"",
        );
        l.add(header(tar::EntryType::Directory, b"tmp", 0o1777), b"");
        fx.unpack(&mut l).unwrap();
        let su = fx.lstat("bin/su");
        assert_eq!((mode(&su), su.uid(), su.gid()), (0o4755, 1000, 1000));
        assert_eq!(mode(&fx.lstat("bin/wall")), 0o2755);
        let shared = fx.lstat("shared");
        assert_eq!(
            (mode(&shared), shared.uid(), shared.gid()),
            (0o2775, 1000, 50)
        );
        assert_eq!(mode(&fx.lstat("tmp")), 0o1777);
    }

    #[test]
    fn symlinks_keep_any_target_and_are_never_followed() {
        let fx = Fixture::new();
        let secret = fx.sentinel.join("secret");
        let mut l = Layer::new();
        l.symlink("bin/sh", "/bin/busybox");
        // Owner, time and xattrs go to the link itself, not to what it points at.
        l.pax(&[("SCHILY.xattr.user.x", b"1")]);
        l.add(
            owned(
                with_link(
                    header(tar::EntryType::Symlink, b"s", 0o777),
                    secret.as_os_str().as_bytes(),
                ),
                1000,
                1000,
                5,
            ),
            b"",
        );
        let stats = fx.unpack(&mut l).unwrap();
        assert_eq!(
            fs::read_link(fx.at("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let s = fx.lstat("s");
        assert!(s.file_type().is_symlink());
        assert_eq!((s.uid(), s.gid(), s.mtime()), (1000, 1000, 5));
        assert_eq!(stats.inodes, 3);
        fx.assert_outside_untouched();
        assert_ne!(fs::metadata(&secret).unwrap().mtime(), 5);
    }

    #[test]
    fn hardlinks_share_the_inode_and_count_once() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.file("usr/bin/a", 0o755, b"binary")
            .hardlink("usr/bin/b", "usr/bin/a");
        l.hardlink("./c", "./usr/bin/a");
        l.symlink("sym", "/nowhere").hardlink("sym2", "sym");
        let stats = fx.unpack(&mut l).unwrap();
        let a = fx.lstat("usr/bin/a");
        assert_eq!(a.ino(), fx.lstat("usr/bin/b").ino());
        assert_eq!(a.ino(), fx.lstat("c").ino());
        assert_eq!(a.nlink(), 3);
        // A link to a symlink links the symlink itself, not its (missing) target.
        let sym2 = fx.lstat("sym2");
        assert!(sym2.file_type().is_symlink());
        assert_eq!(sym2.ino(), fx.lstat("sym").ino());
        assert_eq!(
            stats,
            UnpackStats {
                bytes: 6,
                inodes: 4
            }
        );
    }

    #[test]
    fn devices_and_fifos() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        let mut null = header(tar::EntryType::Char, b"dev/null", 0o666);
        null.set_device_major(1).unwrap();
        null.set_device_minor(3).unwrap();
        let mut loop0 = header(tar::EntryType::Block, b"dev/loop0", 0o660);
        loop0.set_device_major(7).unwrap();
        loop0.set_device_minor(0).unwrap();
        l.add(null, b"").add(loop0, b"");
        l.add(
            owned(header(tar::EntryType::Fifo, b"run/fifo", 0o620), 7, 8, 9),
            b"",
        );
        let stats = fx.unpack(&mut l).unwrap();
        let null = fx.lstat("dev/null");
        assert!(null.file_type().is_char_device());
        assert_eq!((null.rdev(), mode(&null)), (makedev(1, 3), 0o666));
        let loop0 = fx.lstat("dev/loop0");
        assert!(loop0.file_type().is_block_device());
        assert_eq!((loop0.rdev(), mode(&loop0)), (makedev(7, 0), 0o660));
        let fifo = fx.lstat("run/fifo");
        assert!(fifo.file_type().is_fifo());
        assert_eq!(
            (mode(&fifo), fifo.uid(), fifo.gid(), fifo.mtime()),
            (0o620, 7, 8, 9)
        );
        assert_eq!(stats.inodes, 5);
    }

    #[test]
    fn pax_xattrs_and_mtime() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.pax(&[
            ("SCHILY.xattr.user.foo", b"bar\0baz"),
            (
                "SCHILY.xattr.security.capability",
                b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            ),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
            ("mtime", b"1234.5"),
        ]);
        l.file("ping", 0o755, b"ping");
        l.pax(&[("SCHILY.xattr.user.dir", b"d")]);
        l.dir("d", 0o755);
        fx.unpack(&mut l).unwrap();
        let ping = fx.at("ping");
        assert_eq!(xattr::get(&ping, "user.foo").unwrap().unwrap(), b"bar\0baz");
        assert!(xattr::get(&ping, "security.capability").unwrap().is_some());
        // Overlay metadata from the image itself is dropped.
        assert_eq!(xattr::get(&ping, "trusted.overlay.redirect").unwrap(), None);
        let md = fx.lstat("ping");
        assert_eq!((md.mtime(), md.mtime_nsec()), (1234, 500_000_000));
        assert_eq!(xattr::get(fx.at("d"), "user.dir").unwrap().unwrap(), b"d");
    }

    #[test]
    fn pax_times_parse() {
        let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec(), t.tv_nsec()));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("12.000000001999"), Some((12, 1)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("1.x"), None);
        assert_eq!(t(""), None);
    }

    #[test]
    fn whiteout_becomes_a_0_0_char_device() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.dir("etc", 0o755);
        l.add(
            owned(
                header(tar::EntryType::Regular, b"etc/.wh.passwd", 0o644),
                3,
                4,
                MTIME,
            ),
            b"",
        );
        l.file("gone/.wh.sub", 0o644, b"");
        let stats = fx.unpack(&mut l).unwrap();
        for (rel, uid) in [("etc/passwd", 3), ("gone/sub", 0)] {
            let md = fx.lstat(rel);
            assert!(md.file_type().is_char_device());
            assert_eq!((md.rdev(), mode(&md), md.uid()), (0, 0, uid));
        }
        assert!(!fx.exists("etc/.wh.passwd"));
        assert_eq!(
            stats,
            UnpackStats {
                bytes: 0,
                inodes: 4
            }
        );
    }

    #[test]
    fn opaque_marker_sets_the_overlay_xattr() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.dir("var", 0o700).file("var/.wh..wh..opq", 0o644, b"");
        l.file("new/dir/.wh..wh..opq", 0o644, b"");
        l.file(".wh..wh..opq", 0o644, b"");
        fx.unpack(&mut l).unwrap();
        for dir in ["var", "new/dir", ""] {
            let value = xattr::get(fx.at(dir), OPAQUE_XATTR).unwrap();
            assert_eq!(value.as_deref(), Some(&b"y"[..]), "{dir}");
        }
        assert_eq!(mode(&fx.lstat("var")), 0o700);
        assert!(!fx.exists("var/.wh..wh..opq"));
    }

    #[test]
    fn aufs_metadata_is_ignored() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.dir(".wh..wh.plnk", 0o700)
            .file(".wh..wh.plnk/123.456", 0o644, b"x");
        l.file("a/.wh..wh.aufs", 0o644, b"")
            .file(".wh..wh.orph/x/y", 0o644, b"");
        let stats = fx.unpack(&mut l).unwrap();
        assert_eq!(fs::read_dir(&fx.root).unwrap().count(), 0);
        assert_eq!(stats, UnpackStats::default());
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        // File, then directory.
        l.file("x", 0o644, b"12345")
            .dir("x", 0o711)
            .file("x/y", 0o644, b"1");
        // Directory with children, then file.
        l.dir("d", 0o755)
            .file("d/a", 0o644, b"aaaa")
            .file("d/sub/b", 0o644, b"bb");
        l.file("d", 0o600, b"now a file");
        // Symlink, then directory: the directory replaces the link, not its target.
        l.symlink("s", "/etc")
            .dir("s", 0o755)
            .file("s/inside", 0o644, b"");
        // Two versions of one file, the second wins.
        l.file("f", 0o644, b"old contents").file("f", 0o640, b"new");
        // Directory on directory merges.
        l.dir("m", 0o755)
            .file("m/keep", 0o644, b"k")
            .dir("m", 0o700);
        let stats = fx.unpack(&mut l).unwrap();
        assert!(fx.lstat("x").is_dir());
        assert_eq!(mode(&fx.lstat("x")), 0o711);
        assert_eq!(fs::read(fx.at("d")).unwrap(), b"now a file");
        assert!(fx.lstat("s").is_dir());
        assert!(fx.exists("s/inside"));
        assert_eq!(fs::read(fx.at("f")).unwrap(), b"new");
        assert_eq!(mode(&fx.lstat("f")), 0o640);
        assert_eq!(mode(&fx.lstat("m")), 0o700);
        assert!(fx.exists("m/keep"));
        // x, x/y, d, s, s/inside, f, m, m/keep; bytes: 1 + 10 + 3 + 1.
        assert_eq!(
            stats,
            UnpackStats {
                bytes: 15,
                inodes: 8
            }
        );
        fx.assert_outside_untouched();
    }

    #[test]
    fn replacing_one_name_of_a_hardlinked_file_keeps_the_other() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.file("a", 0o644, b"first").hardlink("b", "a");
        l.file("a", 0o644, b"second!");
        let stats = fx.unpack(&mut l).unwrap();
        assert_eq!(fs::read(fx.at("b")).unwrap(), b"first");
        assert_eq!(fs::read(fx.at("a")).unwrap(), b"second!");
        assert_eq!(
            stats,
            UnpackStats {
                bytes: 12,
                inodes: 2
            }
        );
        // Replacing the last name frees the inode.
        let fx = Fixture::new();
        l.file("b", 0o644, b"");
        assert_eq!(
            fx.unpack(&mut l).unwrap(),
            UnpackStats {
                bytes: 7,
                inodes: 2
            }
        );
    }

    #[test]
    fn replaced_directory_is_no_longer_trusted() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.dir("d", 0o755).file("d/f", 0o644, b"");
        l.symlink("d", fx.sentinel.to_str().unwrap());
        l.file("d/pwned", 0o644, b"x");
        let err = fx.unpack(&mut l).unwrap_err();
        assert!(
            matches!(&err, UnpackError::ThroughSymlink { path, link } if path == Path::new("d/pwned") && link == Path::new("d")),
            "{err}"
        );
        fx.assert_outside_untouched();
    }

    #[test]
    fn hostile_names_are_refused() {
        for (name, absolute) in [
            (&b"../x"[..], false),
            (b"a/../../x", false),
            (b"./../x", false),
            (b"a/b/..", false),
            (b"/abs", true),
            (b".//etc/passwd", true),
        ] {
            for kind in [
                tar::EntryType::Regular,
                tar::EntryType::Directory,
                tar::EntryType::Symlink,
            ] {
                let fx = Fixture::new();
                let mut l = Layer::new();
                l.add(with_link(header(kind, name, 0o644), b"t"), b"x");
                let err = fx.unpack(&mut l).unwrap_err();
                let path = to_path(name);
                match &err {
                    UnpackError::AbsolutePath { path: p } if absolute => assert_eq!(*p, path),
                    UnpackError::PathEscapes { path: p } if !absolute => assert_eq!(*p, path),
                    other => panic!("{}: {other}", path.display()),
                }
                assert!(err.is_invalid_layer());
                fx.assert_outside_untouched();
            }
        }
    }

    #[test]
    fn hostile_pax_and_gnu_long_names_are_refused() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.pax(&[("path", b"../../pwned")])
            .file("innocent", 0o644, b"x");
        let err = fx.unpack(&mut l).unwrap_err();
        assert!(
            matches!(&err, UnpackError::PathEscapes { path } if path == Path::new("../../pwned")),
            "{err}"
        );
        fx.assert_outside_untouched();

        let fx = Fixture::new();
        let mut l = Layer::new();
        let long = format!("/{}", "p".repeat(200));
        l.add(
            header(tar::EntryType::GNULongName, b"././@LongLink", 0o644),
            long.as_bytes(),
        );
        l.file("innocent", 0o644, b"x");
        let err = fx.unpack(&mut l).unwrap_err();
        assert!(matches!(err, UnpackError::AbsolutePath { .. }), "{err}");
        fx.assert_outside_untouched();

        let fx = Fixture::new();
        let mut l = Layer::new();
        l.pax(&[("linkpath", b"../../sentinel/secret")])
            .hardlink("x", "innocent");
        let err = fx.unpack(&mut l).unwrap_err();
        assert!(matches!(err, UnpackError::HardlinkOutside { .. }), "{err}");
        fx.assert_outside_untouched();
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        let abs = Fixture::new();
        let targets = [
            ("link", abs.sentinel.to_str().unwrap().to_string()),
            ("link", "../sentinel".to_string()),
            ("a/b/link", "../../../sentinel".to_string()),
            ("link", "..".to_string()),
        ];
        for (link, target) in targets {
            for kind in [
                tar::EntryType::Regular,
                tar::EntryType::Directory,
                tar::EntryType::Symlink,
                tar::EntryType::Fifo,
            ] {
                let fx = Fixture::new();
                let mut l = Layer::new();
                l.symlink(link, &target);
                let name = format!("{link}/pwned");
                l.add(with_link(header(kind, name.as_bytes(), 0o644), b"x"), b"x");
                let err = fx.unpack(&mut l).unwrap_err();
                assert!(
                    matches!(&err, UnpackError::ThroughSymlink { path, link: l }
                        if *path == Path::new(&name) && *l == Path::new(link)),
                    "{target}: {err}"
                );
                fx.assert_outside_untouched();
            }
        }
        // Whiteouts and opaque markers are checked the same way.
        for name in ["link/.wh.secret", "link/.wh..wh..opq", "link/sub/.wh.x"] {
            let fx = Fixture::new();
            let mut l = Layer::new();
            l.symlink("link", fx.sentinel.to_str().unwrap())
                .file(name, 0o644, b"");
            let err = fx.unpack(&mut l).unwrap_err();
            assert!(
                matches!(err, UnpackError::ThroughSymlink { .. }),
                "{name}: {err}"
            );
            fx.assert_outside_untouched();
            assert_eq!(xattr::get(&fx.sentinel, OPAQUE_XATTR).unwrap(), None);
        }
    }

    #[test]
    fn hostile_hardlinks_are_refused() {
        let check = |target: &str, expect: Expect| {
            let fx = Fixture::new();
            let mut l = Layer::new();
            l.dir("etc", 0o755).file("etc/real", 0o644, b"r");
            l.symlink("link", fx.sentinel.to_str().unwrap());
            l.symlink("rel", "../sentinel");
            l.hardlink("etc/stolen", target);
            let err = fx.unpack(&mut l).unwrap_err();
            assert!(expect(&err), "{target}: {err}");
            assert!(!fx.exists("etc/stolen"));
            fx.assert_outside_untouched();
        };
        check("../../etc/passwd", |e| {
            matches!(e, UnpackError::HardlinkOutside { .. })
        });
        check("etc/../../sentinel/secret", |e| {
            matches!(e, UnpackError::HardlinkOutside { .. })
        });
        check("/etc/passwd", |e| {
            matches!(e, UnpackError::HardlinkOutside { .. })
        });
        check(
            "link/secret",
            |e| matches!(e, UnpackError::HardlinkThroughSymlink { link, .. } if link == Path::new("link")),
        );
        check("rel/secret", |e| {
            matches!(e, UnpackError::HardlinkThroughSymlink { .. })
        });
        check("etc/missing", |e| {
            matches!(e, UnpackError::HardlinkMissing { .. })
        });
        check("nodir/missing", |e| {
            matches!(e, UnpackError::HardlinkMissing { .. })
        });
        check("etc/real/below", |e| {
            matches!(e, UnpackError::HardlinkMissing { .. })
        });
        check("etc", |e| {
            matches!(e, UnpackError::HardlinkToDirectory { .. })
        });
        check("./", |e| {
            matches!(e, UnpackError::HardlinkToDirectory { .. })
        });
    }

    #[test]
    fn invalid_whiteouts_and_parents_are_refused() {
        let cases: [(&str, Expect); 4] = [
            ("a/.wh...", |e| matches!(e, UnpackError::PathEscapes { .. })),
            (".wh.", |e| matches!(e, UnpackError::InvalidWhiteout { .. })),
            ("a/.wh..", |e| {
                matches!(e, UnpackError::InvalidWhiteout { .. })
            }),
            (
                "file/below",
                |e| matches!(e, UnpackError::NotADirectory { parent, .. } if parent == Path::new("file")),
            ),
        ];
        for (name, expect) in cases {
            let fx = Fixture::new();
            let mut l = Layer::new();
            l.file("file", 0o644, b"").file(name, 0o644, b"");
            let err = fx.unpack(&mut l).unwrap_err();
            assert!(expect(&err), "{name}: {err}");
            fx.assert_outside_untouched();
        }
    }

    #[test]
    fn root_entries_and_unsupported_types() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.add(
            owned(header(tar::EntryType::Directory, b"./", 0o700), 5, 5, 5),
            b"",
        );
        l.file("f", 0o644, b"");
        assert_eq!(fx.unpack(&mut l).unwrap().inodes, 1);
        // The snapshotter owns the root's metadata.
        assert_eq!(fs::metadata(&fx.root).unwrap().uid(), 0);

        let fx = Fixture::new();
        let mut l = Layer::new();
        l.file("./", 0o644, b"");
        assert!(matches!(
            fx.unpack(&mut l),
            Err(UnpackError::ReplacesRoot { .. })
        ));

        let fx = Fixture::new();
        let mut l = Layer::new();
        l.add(header(tar::EntryType::new(b'V'), b"label", 0o644), b"");
        assert!(matches!(
            fx.unpack(&mut l),
            Err(UnpackError::UnsupportedEntry { kind: 'V', .. })
        ));
    }

    #[test]
    fn gzip_stream_with_large_file_and_long_and_binary_names() {
        use flate2::read::GzDecoder;
        use flate2::write::GzEncoder;
        use std::io::Write as _;

        let fx = Fixture::new();
        let big: Vec<u8> = (0..3 * COPY_BUF_SIZE + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(big.len() as u64);
        b.append_data(&mut h, "big", &big[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(4);
        b.append_data(&mut h, &long, &b"long"[..]).unwrap();
        let tar_bytes = {
            let mut l = Layer(b);
            l.add(
                header(tar::EntryType::Regular, b"caf\xe9", 0o644),
                b"latin1",
            );
            l.bytes()
        };
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_bytes).unwrap();
        let gz = gz.finish().unwrap();

        let stats = unpack_layer(GzDecoder::new(&gz[..]), &fx.root, Limits::default()).unwrap();
        assert_eq!(fs::read(fx.at("big")).unwrap(), big);
        assert_eq!(fs::read(fx.at(&long)).unwrap(), b"long");
        assert_eq!(
            fs::read(fx.root.join(OsStr::from_bytes(b"caf\xe9"))).unwrap(),
            b"latin1"
        );
        assert_eq!(stats.bytes, big.len() as u64 + 4 + 6);
        assert_eq!(stats.inodes, 4);
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.file("f", 0o644, &[7u8; 4096]);
        let bytes = l.bytes();
        let err = unpack_layer(&bytes[..512 + 1000], &fx.root, Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                UnpackError::ReadData { .. } | UnpackError::Archive { .. }
            ),
            "{err}"
        );
        assert!(!err.is_invalid_layer());
    }

    /// A stream that is `head` followed by `zeros` zero bytes, generated as it is read, and
    /// counts what was read from it.
    struct Generated {
        head: Vec<u8>,
        at: usize,
        zeros: u64,
        read: std::rc::Rc<std::cell::Cell<u64>>,
    }

    impl Generated {
        fn new(head: Vec<u8>, zeros: u64) -> (Self, std::rc::Rc<std::cell::Cell<u64>>) {
            let read = std::rc::Rc::new(std::cell::Cell::new(0));
            let g = Generated {
                head,
                at: 0,
                zeros,
                read: read.clone(),
            };
            (g, read)
        }
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = if self.at < self.head.len() {
                let n = buf.len().min(self.head.len() - self.at);
                buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
                self.at += n;
                n
            } else {
                let n = buf
                    .len()
                    .min(usize::try_from(self.zeros).unwrap_or(usize::MAX));
                buf[..n].fill(0);
                self.zeros -= n as u64;
                n
            };
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }

    /// A header block announcing `size` bytes, checksummed.
    fn block(mut h: tar::Header, size: u64) -> Vec<u8> {
        h.set_size(size);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn metadata_records_over_1_mib_are_refused_before_they_are_read() {
        const TWO_GIB: u64 = 2 << 30;
        for (flag, what) in [
            (b'x', "PAX extended header"),
            (b'g', "PAX global header"),
            (b'L', "GNU long name"),
            (b'K', "GNU long link name"),
        ] {
            let fx = Fixture::new();
            let h = header(tar::EntryType::new(flag), b"././@LongLink", 0o644);
            let (stream, read) = Generated::new(block(h, TWO_GIB), TWO_GIB + 1024);
            let err = unpack_layer(stream, &fx.root, Limits::default()).unwrap_err();
            assert!(
                matches!(&err, UnpackError::MetadataTooLarge { what: w, size, limit }
                    if *w == what && *size == TWO_GIB && *limit == 1 << 20),
                "{what}: {err}"
            );
            assert!(err.is_invalid_layer());
            // Refused from its header: no more than one read-ahead of the record was read.
            assert!(
                read.get() <= 512 + READ_AHEAD_SIZE as u64,
                "{what}: {} bytes read",
                read.get()
            );
            assert_eq!(fs::read_dir(&fx.root).unwrap().count(), 0);
            fx.assert_outside_untouched();
        }
    }

    #[test]
    fn metadata_records_up_to_1_mib_are_read() {
        // A PAX header of exactly 1 MiB: a long comment, then the path.
        let path_record = b"22 path=exactly-1-mib\n";
        let comment_len = (1 << 20) - path_record.len();
        let value_len = comment_len - format!("{comment_len} comment=\n").len();
        let mut data = format!("{comment_len} comment=").into_bytes();
        data.extend(std::iter::repeat_n(b'c', value_len));
        data.push(b'\n');
        data.extend_from_slice(path_record);
        assert_eq!(data.len(), 1 << 20);
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.add(header(tar::EntryType::XHeader, b"PaxHeader", 0o644), &data)
            .file("short", 0o644, b"x");
        fx.unpack(&mut l).unwrap();
        assert_eq!(fs::read(fx.at("exactly-1-mib")).unwrap(), b"x");
        // One byte more is refused.
        data.insert(0, b' ');
        let fx = Fixture::new();
        let mut l = Layer::new();
        l.add(header(tar::EntryType::XHeader, b"PaxHeader", 0o644), &data)
            .file("short", 0o644, b"x");
        let err = fx.unpack(&mut l).unwrap_err();
        assert!(
            matches!(err, UnpackError::MetadataTooLarge { size, .. } if size == (1 << 20) + 1),
            "{err}"
        );
    }

    const HUNDRED_GIB: u64 = 100 << 30;

    /// Old GNU sparse entry `name` of apparent size `real` with `runs`, 4 in the header and the
    /// rest in extension blocks, followed by its data (each run filled with its index + 1).
    fn old_gnu_sparse(l: &mut Layer, name: &str, real: u64, runs: &[(u64, u64)]) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_mode(0o640);
        h.set_mtime(MTIME);
        h.set_path(name).unwrap();
        let stored: u64 = runs.iter().map(|r| r.1).sum();
        h.set_size(stored);
        let mut ext_blocks = Vec::new();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.set_real_size(real);
            for (slot, &(off, len)) in gnu.sparse.iter_mut().zip(runs) {
                slot.set_offset(off);
                slot.set_length(len);
            }
            gnu.set_is_extended(runs.len() > 4);
            let rest: Vec<_> = runs.iter().skip(4).collect();
            let chunks: Vec<_> = rest.chunks(21).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let mut ext = tar::GnuExtSparseHeader::new();
                for (slot, &&(off, len)) in ext.sparse.iter_mut().zip(chunk.iter()) {
                    slot.set_offset(off);
                    slot.set_length(len);
                }
                ext.set_is_extended(i + 1 < chunks.len());
                ext_blocks.extend_from_slice(ext.as_bytes());
            }
        }
        h.set_cksum();
        let mut data = Vec::new();
        for (i, &(_, len)) in runs.iter().enumerate() {
            data.extend(std::iter::repeat_n(i as u8 + 1, len as usize));
        }
        let raw = l.0.get_mut();
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(&ext_blocks);
        raw.extend_from_slice(&data);
        raw.resize(raw.len().div_ceil(512) * 512, 0);
    }

    /// The file at `rel` is `real` bytes long, occupies little disk, and holds run `i` filled
    /// with `i + 1` and zeros elsewhere (checked at the runs' edges and between them).
    fn assert_sparse(fx: &Fixture, rel: &str, real: u64, runs: &[(u64, u64)]) {
        use std::os::unix::fs::FileExt as _;
        let md = fx.lstat(rel);
        assert_eq!(md.len(), real);
        let data: u64 = runs.iter().map(|r| r.1).sum();
        assert!(
            md.blocks() * 512 <= data + 64 * 1024 * runs.len() as u64,
            "{} blocks allocated",
            md.blocks()
        );
        let f = File::open(fx.at(rel)).unwrap();
        let byte = |at: u64| {
            let mut b = [9u8];
            f.read_exact_at(&mut b, at).unwrap();
            b[0]
        };
        for (i, &(off, len)) in runs.iter().enumerate() {
            if len > 0 {
                assert_eq!((byte(off), byte(off + len - 1)), (i as u8 + 1, i as u8 + 1));
            }
            if off + len < real {
                assert_eq!(byte(off + len), 0);
            }
        }
    }

    #[test]
    fn gnu_sparse_file_of_100_gib_is_written_with_holes() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        // Seven runs: four in the header, three in an extension block; the last one ends the
        // file, the others are spread over it.
        let mut runs: Vec<(u64, u64)> = (0..6).map(|i| (i * (16 << 30), 1000 + i)).collect();
        runs.push((HUNDRED_GIB - 700, 700));
        old_gnu_sparse(&mut l, "big/sparse", HUNDRED_GIB, &runs);
        l.file("after", 0o644, b"framing holds");
        let stats = fx.unpack(&mut l).unwrap();
        assert_sparse(&fx, "big/sparse", HUNDRED_GIB, &runs);
        assert_eq!(mode(&fx.lstat("big/sparse")), 0o640);
        assert_eq!(fs::read(fx.at("after")).unwrap(), b"framing holds");
        let data: u64 = runs.iter().map(|r| r.1).sum();
        assert_eq!(
            stats,
            UnpackStats {
                bytes: data + 13,
                inodes: 3
            }
        );
        // A hole at the end: the size still comes out right.
        let fx = Fixture::new();
        let mut l = Layer::new();
        old_gnu_sparse(&mut l, "tail-hole", HUNDRED_GIB, &[(0, 10)]);
        fx.unpack(&mut l).unwrap();
        assert_sparse(&fx, "tail-hole", HUNDRED_GIB, &[(0, 10)]);
    }

    #[test]
    fn pax_sparse_formats_are_written_with_holes() {
        let runs = [(0u64, 5u64), (HUNDRED_GIB - 5, 5)];
        let data = [[1u8; 5], [2u8; 5]].concat();
        // 1.0: the map opens the data.
        let fx = Fixture::new();
        let mut l = Layer::new();
        let real = HUNDRED_GIB.to_string();
        l.pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"v1/sparse"),
            ("GNU.sparse.realsize", real.as_bytes()),
        ]);
        let mut body = format!("2\n0\n5\n{}\n5\n", HUNDRED_GIB - 5).into_bytes();
        body.resize(512, 0);
        body.extend_from_slice(&data);
        l.add(
            header(tar::EntryType::Regular, b"GNUSparseFile.0/sparse", 0o644),
            &body,
        );
        // 0.1: the map in one record.
        let map = format!("0,5,{},5", HUNDRED_GIB - 5);
        l.pax(&[
            ("GNU.sparse.size", real.as_bytes()),
            ("GNU.sparse.numblocks", b"2"),
            ("GNU.sparse.map", map.as_bytes()),
            ("GNU.sparse.name", b"v01"),
        ]);
        l.add(header(tar::EntryType::Regular, b"ignored", 0o644), &data);
        // 0.0: offset and numbytes records in pairs.
        let last = (HUNDRED_GIB - 5).to_string();
        l.pax(&[
            ("GNU.sparse.size", real.as_bytes()),
            ("GNU.sparse.numblocks", b"2"),
            ("GNU.sparse.offset", b"0"),
            ("GNU.sparse.numbytes", b"5"),
            ("GNU.sparse.offset", last.as_bytes()),
            ("GNU.sparse.numbytes", b"5"),
        ]);
        l.add(header(tar::EntryType::Regular, b"v00", 0o644), &data);
        let stats = fx.unpack(&mut l).unwrap();
        for rel in ["v1/sparse", "v01", "v00"] {
            assert_sparse(&fx, rel, HUNDRED_GIB, &runs);
        }
        assert!(!fx.exists("GNUSparseFile.0") && !fx.exists("ignored"));
        assert_eq!(stats.bytes, 30);
    }

    #[test]
    fn hostile_sparse_maps_are_refused() {
        let malformed = |e: &UnpackError| matches!(e, UnpackError::Malformed { .. });
        // Overlapping runs, a run past the end, more or less data than the map describes.
        for runs in [&[(0u64, 10u64), (5, 10)][..], &[(HUNDRED_GIB - 5, 10)]] {
            let fx = Fixture::new();
            let mut l = Layer::new();
            old_gnu_sparse(&mut l, "s", HUNDRED_GIB, runs);
            let err = fx.unpack(&mut l).unwrap_err();
            assert!(malformed(&err), "{runs:?}: {err}");
            assert!(err.is_invalid_layer());
        }
        for stored in [9u64, 11] {
            let fx = Fixture::new();
            let mut l = Layer::new();
            let map = "0,10";
            l.pax(&[
                ("GNU.sparse.size", b"100"),
                ("GNU.sparse.numblocks", b"1"),
                ("GNU.sparse.map", map.as_bytes()),
            ]);
            l.add(
                header(tar::EntryType::Regular, b"s", 0o644),
                &vec![1u8; stored as usize],
            );
            let err = fx.unpack(&mut l).unwrap_err();
            assert!(malformed(&err), "{stored}: {err}");
        }
        // A 1.0 map that claims more entries than 1 MiB holds.
        let fx = Fixture::new();
        let mut pax = Layer::new();
        pax.pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")]);
        let mut head = pax.0.get_mut().clone();
        head.extend(block(header(tar::EntryType::Regular, b"s", 0o644), 1 << 40));
        let mut map = b"1000000000\n".to_vec();
        map.resize(512, 0);
        head.extend(map);
        // Then lines of zeros, without end.
        let (stream, read) = Generated::new(head, 1 << 40);
        // Zeros hold no newline, so blocks are read until the limit.
        let err = unpack_layer(stream, &fx.root, Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                UnpackError::MetadataTooLarge {
                    what: "GNU sparse map",
                    ..
                }
            ),
            "{err}"
        );
        assert!(read.get() < (1 << 20) + 4 * READ_AHEAD_SIZE as u64);
        // Old GNU extension blocks without end.
        let fx = Fixture::new();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_path("s").unwrap();
        h.as_gnu_mut().unwrap().set_real_size(0);
        h.as_gnu_mut().unwrap().set_is_extended(true);
        let mut ext = tar::GnuExtSparseHeader::new();
        ext.set_is_extended(true);
        let mut head = block(h, 0);
        for _ in 0..4096 {
            head.extend_from_slice(ext.as_bytes());
        }
        let (stream, read) = Generated::new(head, 0);
        let err = unpack_layer(stream, &fx.root, Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                UnpackError::MetadataTooLarge {
                    what: "GNU sparse map",
                    ..
                }
            ),
            "{err}"
        );
        assert!(read.get() < (1 << 20) + 4 * READ_AHEAD_SIZE as u64);
        assert_eq!(fs::read_dir(&fx.root).unwrap().count(), 0);
    }

    #[test]
    fn byte_budget_counts_everything_written() {
        let limits = Limits {
            max_bytes: 10,
            max_inodes: 100,
        };
        let run = |l: &mut Layer| {
            let fx = Fixture::new();
            let r = unpack_layer(&l.bytes()[..], &fx.root, limits);
            fx.assert_outside_untouched();
            r
        };
        let mut l = Layer::new();
        l.file("a", 0o644, b"12345").file("b", 0o644, b"12345");
        assert_eq!(run(&mut l).unwrap().bytes, 10);
        let mut l = Layer::new();
        l.file("a", 0o644, b"12345").file("b", 0o644, b"123456");
        let err = run(&mut l).unwrap_err();
        assert!(
            matches!(&err, UnpackError::TooManyBytes { path, limit: 10 } if path == Path::new("b")),
            "{err}"
        );
        assert!(err.is_invalid_layer());
        // Rewriting one file still spends the budget.
        let mut l = Layer::new();
        l.file("a", 0o644, b"123456").file("a", 0o644, b"123456");
        assert!(matches!(run(&mut l), Err(UnpackError::TooManyBytes { .. })));
        // A sparse file's holes are free, its data is not.
        let mut l = Layer::new();
        old_gnu_sparse(&mut l, "s", HUNDRED_GIB, &[(0, 5), (HUNDRED_GIB - 5, 5)]);
        assert_eq!(run(&mut l).unwrap().bytes, 10);
        let mut l = Layer::new();
        old_gnu_sparse(&mut l, "s", HUNDRED_GIB, &[(0, 5), (HUNDRED_GIB - 6, 6)]);
        assert!(matches!(run(&mut l), Err(UnpackError::TooManyBytes { .. })));
    }

    #[test]
    fn inode_budget_counts_every_object_and_name() {
        let limits = Limits {
            max_bytes: 1 << 20,
            max_inodes: 4,
        };
        let run = |l: &mut Layer| {
            let fx = Fixture::new();
            let r = unpack_layer(&l.bytes()[..], &fx.root, limits);
            fx.assert_outside_untouched();
            r
        };
        // Implicit parents count: d, d/e, d/e/f, g.
        let mut l = Layer::new();
        l.file("d/e/f", 0o644, b"").symlink("g", "d");
        assert_eq!(run(&mut l).unwrap().inodes, 4);
        let mut l = Layer::new();
        l.file("d/e/f", 0o644, b"").symlink("g", "d").fifo("h");
        let err = run(&mut l).unwrap_err();
        assert!(
            matches!(&err, UnpackError::TooManyInodes { path, limit: 4 } if path == Path::new("h")),
            "{err}"
        );
        assert!(err.is_invalid_layer());
        // Hardlinks and whiteouts count too.
        let mut l = Layer::new();
        l.file("a", 0o644, b"")
            .hardlink("b", "a")
            .hardlink("c", "a")
            .file(".wh.x", 0o644, b"")
            .hardlink("d", "a");
        assert!(matches!(
            run(&mut l),
            Err(UnpackError::TooManyInodes { .. })
        ));
    }

    #[test]
    fn header_only_entries_carry_no_data_whatever_their_size() {
        // As Go's archive/tar reads them: the next header follows at once.
        let fx = Fixture::new();
        let mut l = Layer::new();
        let raw = l.0.get_mut();
        for (kind, name) in [
            (tar::EntryType::Directory, &b"dir"[..]),
            (tar::EntryType::Symlink, b"link"),
        ] {
            raw.extend(block(with_link(header(kind, name, 0o755), b"dir"), 4096));
        }
        l.file("dir/f", 0o644, b"data");
        fx.unpack(&mut l).unwrap();
        assert!(fx.lstat("dir").is_dir());
        assert!(fx.lstat("link").is_symlink());
        assert_eq!(fs::read(fx.at("dir/f")).unwrap(), b"data");
    }
}
