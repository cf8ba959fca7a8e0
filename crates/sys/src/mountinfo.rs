//! `/proc/<pid>/mountinfo` (proc(5)), parsed once for everyone who reads it (the cgroup
//! hierarchies, the rootfs's propagation, bind propagation checks, berthd's unmounts, the
//! tests): one line per mount, fields separated by spaces, paths with space, tab, newline and
//! backslash escaped as `\ooo`.
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2) (3)  (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
//! ```

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// The calling process's mount table.
pub const SELF: &str = "/proc/self/mountinfo";

/// One mount, one line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `st_dev` of the filesystem: the same for every mount of one filesystem (or hierarchy).
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem this mount shows at its mount point (a bind's source).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,relatime`), as written.
    pub mount_options: String,
    /// `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options (`rw,memory` for a cgroup hierarchy), as written: a path inside
    /// stays escaped, so a comma still separates options.
    pub super_options: String,
}

impl MountInfo {
    /// One line; None if it is not a mountinfo line.
    pub fn parse_line(line: &str) -> Option<MountInfo> {
        let fields: Vec<&str> = line.split(' ').collect();
        // The optional fields end with a lone "-" (no escaped path can be one).
        let sep = 6 + fields.get(6..)?.iter().position(|f| *f == "-")?;
        let (major, minor) = fields[2].split_once(':')?;
        let after = &fields[sep + 1..];
        Some(MountInfo {
            mount_id: fields[0].parse().ok()?,
            parent_id: fields[1].parse().ok()?,
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
            root: unescape_path(fields[3]),
            mount_point: unescape_path(fields[4]),
            mount_options: fields[5].to_string(),
            optional: fields[6..sep].iter().map(|f| f.to_string()).collect(),
            fs_type: unescape_mountinfo(after.first()?),
            source: unescape_mountinfo(after.get(1)?),
            super_options: after.get(2).copied().unwrap_or_default().to_string(),
        })
    }

    /// In a shared peer group (`shared:N`): mounts and unmounts below it propagate out.
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|f| f.starts_with("shared:"))
    }

    /// A slave of a peer group (`master:N`): mounts and unmounts propagate in.
    pub fn is_slave(&self) -> bool {
        self.optional.iter().any(|f| f.starts_with("master:"))
    }
}

/// Every mount in a mountinfo text, in its order (lines that do not parse are left out).
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(MountInfo::parse_line).collect()
}

/// The calling process's mounts ([`SELF`]).
pub fn read_self() -> io::Result<Vec<MountInfo>> {
    Ok(parse(&std::fs::read_to_string(SELF)?))
}

/// The mount holding `path` (absolute, as the kernel sees it: resolve symlinks first): the
/// deepest mount point that is `path` or a directory above it, compared component by component
/// (`/tmp/priv` does not hold `/tmp/private`); of mounts stacked on one mount point, the last
/// (topmost).
pub fn mount_holding<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let mut best: Option<(&MountInfo, usize)> = None;
    for m in mounts {
        if !path.starts_with(&m.mount_point) {
            continue;
        }
        let depth = m.mount_point.components().count();
        if best.is_none_or(|(_, d)| depth >= d) {
            best = Some((m, depth));
        }
    }
    best.map(|(m, _)| m)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape_mountinfo(s: &str) -> String {
    String::from_utf8_lossy(&unescape(s)).into_owned()
}

/// A path field, byte for byte (a path need not be UTF-8).
fn unescape_path(s: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(s)))
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            // The kernel writes at most \377; anything above wraps instead of overflowing.
            let v = (u32::from(b[i + 1] - b'0') << 6)
                | (u32::from(b[i + 2] - b'0') << 3)
                | u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape_mountinfo(r"/plain\04"), r"/plain\04");
    }

    #[test]
    fn parses_every_field() {
        let m = MountInfo::parse_line(
            r"36 35 98:0 /mnt\0401 /mnt2 rw,noatime shared:4 master:1 - ext3 /dev/ro\040ot rw,errors=continue",
        )
        .unwrap();
        assert_eq!(
            m,
            MountInfo {
                mount_id: 36,
                parent_id: 35,
                major: 98,
                minor: 0,
                root: "/mnt 1".into(),
                mount_point: "/mnt2".into(),
                mount_options: "rw,noatime".into(),
                optional: vec!["shared:4".into(), "master:1".into()],
                fs_type: "ext3".into(),
                source: "/dev/ro ot".into(),
                super_options: "rw,errors=continue".into(),
            }
        );
        assert!(m.is_shared() && m.is_slave());
        let none = MountInfo::parse_line("30 22 0:25 / /tmp rw - tmpfs tmpfs rw").unwrap();
        assert!(none.optional.is_empty() && !none.is_shared() && !none.is_slave());
        for bad in [
            "",
            "30 22 0:25 / /tmp rw tmpfs tmpfs rw",
            "x 22 0:25 / /t rw - t t rw",
        ] {
            assert_eq!(MountInfo::parse_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths_need_not_be_utf8() {
        let m = MountInfo::parse_line(r"1 0 0:1 / /a\377b rw - tmpfs tmpfs rw").unwrap();
        assert_eq!(m.mount_point.as_os_str().as_encoded_bytes(), b"/a\xffb");
    }

    #[test]
    fn the_mount_holding_a_path() {
        let info = parse(
            "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
31 30 0:26 / /tmp/p\\040q rw master:7 - tmpfs tmpfs rw
32 30 0:27 / /tmp/priv rw - tmpfs tmpfs rw
33 30 0:28 / /tmp/priv rw shared:9 master:3 - tmpfs tmpfs rw
",
        );
        let at = |p: &str| {
            let m = mount_holding(&info, Path::new(p)).unwrap();
            (m.mount_point.clone(), m.optional.clone())
        };
        assert_eq!(at("/etc/x"), (PathBuf::from("/"), vec!["shared:1".into()]));
        assert_eq!(
            at("/tmp/a"),
            (PathBuf::from("/tmp"), vec!["shared:5".into()])
        );
        assert_eq!(at("/tmp/p q/r").0, PathBuf::from("/tmp/p q"));
        assert_eq!(at("/tmp/p q/r").1, vec!["master:7".to_string()]);
        // Stacked mounts: the topmost (last) one counts.
        assert_eq!(
            at("/tmp/priv/x").1,
            vec!["shared:9".to_string(), "master:3".into()]
        );
        assert_eq!(at("/tmp/private").0, PathBuf::from("/tmp"));
        assert_eq!(at("/tmp/priv").0, PathBuf::from("/tmp/priv"));
        assert!(mount_holding(&info[1..], Path::new("/etc")).is_none());
    }

    #[test]
    fn reads_this_process() {
        let mounts = read_self().unwrap();
        assert!(mount_holding(&mounts, Path::new("/")).is_some());
    }
}
