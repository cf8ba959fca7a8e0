//! Reading and writing cgroupfs files, and the value formats both versions share.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result, io_err};

/// Write a cgroup file that must exist (cgroupfs creates them; a missing one is a missing
/// controller).
pub(crate) fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    let res = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| {
        let hint = if source.kind() == io::ErrorKind::NotFound {
            " (is its controller enabled?)"
        } else {
            ""
        };
        Error::Io {
            context: format!("writing {value:?} to {}{hint}", path.display()),
            source,
        }
    })
}

pub(crate) fn read_file(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(io_err(|| format!("reading {}", path.display())))
}

/// A file's text for stats: empty if it cannot be read.
pub(crate) fn read_or_empty(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// A single-number file for stats: 0 if it cannot be read or is not a number (`max`).
pub(crate) fn read_u64(dir: &Path, file: &str) -> u64 {
    read_or_empty(dir, file).trim().parse().unwrap_or(0)
}

/// The value of `key` in a flat-keyed file (`key value` lines).
pub(crate) fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// The `oom_kill` counter of a flat-keyed file; None if the file or the key is missing (an
/// old kernel).
pub(crate) fn oom_kill_count(dir: &Path, file: &str) -> Result<Option<u64>> {
    let path = dir.join(file);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(|| format!("reading {}", path.display()))(e)),
    };
    Ok(flat_keyed(&text, "oom_kill"))
}

pub(crate) fn mkdir(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(io_err(|| format!("creating {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Create `dir` and its missing parents. An empty ancestor removed by someone else between
/// two of the mkdirs (a berthd that stops removes berth's empty top-level cgroups) is created
/// again.
pub(crate) fn mkdir_all(dir: &Path) -> Result<()> {
    let mut attempts = 0;
    loop {
        match fs::create_dir_all(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < MKDIR_ATTEMPTS => {
                attempts += 1;
            }
            res => return res.map_err(io_err(|| format!("creating {}", dir.display()))),
        }
    }
}

/// How often a creation that lost a race with an ancestor's removal is tried again.
pub(crate) const MKDIR_ATTEMPTS: u32 = 3;

/// `pids.max` for the spec's limit (only called for a non-zero one): negative is unlimited.
pub(crate) fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".into()
    }
}

/// v2's value for a limit: -1 (or any negative) is "max".
pub(crate) fn limit_value(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// `2MB`, `1GB`, `64KB`: digits and a unit, safe in a file name.
pub(crate) fn hugepage_size(size: &str) -> Result<&str> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !unit.ends_with('B') {
        return Err(Error::InvalidSpec(format!(
            "hugepage size {size:?} is not like \"2MB\""
        )));
    }
    Ok(size)
}

/// cgroupfs directories as plain directories, for the tests of both versions.
#[cfg(test)]
pub(crate) mod test_files {
    use std::fs;
    use std::path::Path;

    use oci_spec::runtime::LinuxResources;

    pub(crate) fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    /// A directory laid out like a cgroupfs directory: `files` with their contents.
    pub(crate) fn fixture(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, value) in files {
            fs::write(dir.join(name), value).unwrap();
        }
    }

    pub(crate) fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap()
    }

    pub(crate) const V1_FILES: &[(&str, &str)] = &[
        ("cgroup.procs", ""),
        ("cpu.shares", "1024"),
        ("cpu.cfs_quota_us", "-1"),
        ("cpu.cfs_period_us", "100000"),
        ("cpuset.cpus", ""),
        ("cpuset.mems", ""),
        ("memory.limit_in_bytes", "9223372036854771712"),
        ("memory.memsw.limit_in_bytes", "9223372036854771712"),
        ("memory.soft_limit_in_bytes", "9223372036854771712"),
        (
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        ),
        ("pids.max", "max"),
        ("devices.allow", ""),
        ("devices.deny", ""),
        ("hugetlb.2MB.limit_in_bytes", ""),
    ];

    pub(crate) const V2_FILES: &[(&str, &str)] = &[
        ("cgroup.procs", ""),
        ("cgroup.controllers", "cpuset cpu io memory hugetlb pids"),
        ("cgroup.subtree_control", ""),
        ("cpu.weight", "100"),
        ("cpu.max", "max 100000"),
        ("cpuset.cpus", ""),
        ("cpuset.mems", ""),
        ("memory.max", "max"),
        ("memory.swap.max", "max"),
        ("memory.low", "0"),
        (
            "memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        ),
        ("memory.high", "max"),
        ("hugetlb.2MB.max", "max"),
        ("pids.max", "max"),
    ];
}
