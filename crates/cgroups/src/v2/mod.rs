//! cgroup v2 (unified hosts): one hierarchy, one directory for the container, every enabled
//! controller's files in it.
//!
//! The typed fields are written controller by controller, then `linux.resources.unified`
//! verbatim ([`unified`]), which overrides them (as runc).

mod bpf;
pub(crate) mod cpu;
mod cpuset;
mod devices;
mod hugetlb;
pub(crate) mod memory;
mod pids;
mod unified;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::common::{MKDIR_ATTEMPTS, mkdir, read_file, write_file};
use crate::controller::Controller;
use crate::error::{Error, Result};
use crate::stats::Stats;

pub use cpu::shares_to_weight;
pub use memory::v2_swap_max;

/// Every v2 controller, in the order their files are written.
pub const CONTROLLERS: &[&dyn Controller] = &[
    &cpu::Cpu,
    &cpuset::Cpuset,
    &memory::Memory,
    &hugetlb::Hugetlb,
    &pids::Pids,
    &devices::Devices,
];

/// The container's directory on a v2 host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Cgroup {
    pub root: PathBuf,
    pub dir: PathBuf,
}

impl V2Cgroup {
    /// The cgroup at `rel` (relative, plain) in the hierarchy mounted at `root`.
    pub fn new(root: &Path, rel: &Path) -> V2Cgroup {
        V2Cgroup {
            root: root.to_path_buf(),
            dir: root.join(rel),
        }
    }

    /// Create the directory and its missing parents, each parent's controllers enabled for
    /// its children. An empty ancestor removed meanwhile by someone else (a berthd that stops
    /// removes berth's empty top-level cgroups) is created again.
    pub fn create(&self) -> Result<()> {
        let mut attempts = 0;
        loop {
            match self.create_once() {
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && attempts < MKDIR_ATTEMPTS =>
                {
                    attempts += 1;
                }
                res => return res,
            }
        }
    }

    fn create_once(&self) -> Result<()> {
        let rel = self
            .dir
            .strip_prefix(&self.root)
            .unwrap_or(&self.dir)
            .to_path_buf();
        let mut parent = self.root.clone();
        for c in rel.components() {
            enable_controllers(&parent);
            parent.push(c);
            mkdir(&parent)?;
        }
        Ok(())
    }

    /// Write `linux.resources`: controller by controller, then the unified keys.
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        let dir = self.dir.as_path();
        for c in CONTROLLERS {
            if c.needs(r) {
                c.apply(dir, r)?;
            }
        }
        unified::apply(dir, r)
    }

    /// Every controller's readings.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for c in CONTROLLERS {
            c.stats(&self.dir, &mut stats);
        }
        stats
    }

    /// The memory controller's OOM-kill counter; None on kernels without it.
    pub fn oom_kill_count(&self) -> Result<Option<u64>> {
        memory::oom_kill_count(&self.dir)
    }
}

/// Let `dir`'s children use every controller `dir` has. Failures only warn: writing the
/// resource files reports a missing controller, and only if the container needs it.
fn enable_controllers(dir: &Path) {
    let (Ok(available), Ok(enabled)) = (
        read_file(dir, "cgroup.controllers"),
        read_file(dir, "cgroup.subtree_control"),
    ) else {
        tracing::warn!("cannot read the controllers of {}", dir.display());
        return;
    };
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for c in available.split_whitespace() {
        if !enabled.contains(&c)
            && let Err(e) = write_file(dir, "cgroup.subtree_control", &format!("+{c}"))
        {
            tracing::warn!("enabling the {c} controller: {e}");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::common::test_files::{V2_FILES, fixture, read, resources};
    use crate::error::Error;

    /// A v2 hierarchy at `root` with every file, down to the container's leaf `path`.
    pub(crate) fn v2_fixture(root: &Path, path: &str) -> V2Cgroup {
        fixture(root, V2_FILES);
        let mut dir = root.to_path_buf();
        for c in Path::new(path).components().skip(1) {
            dir.push(c);
            fixture(&dir, V2_FILES);
        }
        V2Cgroup::new(root, Path::new(path).strip_prefix("/").unwrap())
    }

    #[test]
    fn v2_create_enables_controllers_in_parents() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("cg");
        fixture(&root, V2_FILES);
        let cg = V2Cgroup::new(&root, Path::new("kubepods/pod1/c1"));
        cg.create().unwrap();
        assert!(root.join("kubepods/pod1/c1").is_dir());
        // A fixture file is overwritten by each write: the last controller is what is left.
        assert_eq!(read(&root, "cgroup.subtree_control"), "+pids");
        // The new directories have no files in a fixture: nothing more is enabled below.
        assert_eq!(cg.dir, root.join("kubepods/pod1/c1"));
    }

    #[test]
    fn v2_apply_writes_every_file() {
        let d = tempfile::tempdir().unwrap();
        let cg = v2_fixture(d.path(), "/berth/c1");
        cg.apply(&resources(
            r#"{
                "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
                "memory": {"limit": 33554432, "swap": 67108864, "reservation": 1048576},
                "pids": {"limit": 100},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
                "unified": {"memory.high": "30000000", "cpu.weight": "7"}
            }"#,
        ))
        .unwrap();
        let leaf = d.path().join("berth/c1");
        assert_eq!(read(&leaf, "cpu.weight"), "7", "unified overrides");
        assert_eq!(read(&leaf, "cpu.max"), "50000 100000");
        assert_eq!(read(&leaf, "cpuset.cpus"), "0-1");
        assert_eq!(read(&leaf, "cpuset.mems"), "0");
        assert_eq!(read(&leaf, "memory.max"), "33554432");
        assert_eq!(read(&leaf, "memory.swap.max"), "33554432");
        assert_eq!(read(&leaf, "memory.low"), "1048576");
        assert_eq!(read(&leaf, "memory.high"), "30000000");
        assert_eq!(read(&leaf, "hugetlb.2MB.max"), "4194304");
        assert_eq!(read(&leaf, "pids.max"), "100");

        cg.apply(&resources(
            r#"{"cpu": {"shares": 1024, "quota": -1}, "memory": {"limit": -1}}"#,
        ))
        .unwrap();
        assert_eq!(read(&leaf, "cpu.weight"), "39");
        assert_eq!(read(&leaf, "cpu.max"), "max");
        assert_eq!(read(&leaf, "memory.max"), "max");
        assert_eq!(read(&leaf, "memory.swap.max"), "max");

        for key in ["cgroup.procs", "../x.max", "memory", ""] {
            let json = serde_json::json!({"unified": {key: "1"}}).to_string();
            let err = cg.apply(&resources(&json)).unwrap_err();
            assert!(matches!(err, Error::InvalidSpec(_)), "{key}: {err}");
        }
        let err = cg
            .apply(&resources(r#"{"unified": {"io.max": "8:0 rbps=1"}}"#))
            .unwrap_err();
        assert!(
            err.to_string().contains("is its controller enabled"),
            "{err}"
        );
        let err = cg
            .apply(&resources(
                r#"{"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]}"#,
            ))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    }
}
