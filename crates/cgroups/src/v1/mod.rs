//! cgroup v1 (legacy and hybrid hosts): one hierarchy per controller or group of controllers,
//! each mounted on its own; the container has a directory in each.
//!
//! A controller's files are written in the hierarchy that carries it; when none does, what the
//! spec asks of it is logged and skipped (a v1 host may mount any subset).

mod cpu;
mod cpuacct;
pub(crate) mod cpuset;
mod devices;
mod hugetlb;
mod memory;
mod pids;

use std::path::{Path, PathBuf};

use berth_sys::mountinfo::MountInfo;
use oci_spec::runtime::LinuxResources;

use crate::common::mkdir_all;
use crate::controller::Controller;
use crate::error::{Error, Result};
use crate::layout::CGROUP_ROOT;
use crate::stats::Stats;

pub use devices::v1_device_rule;

/// Every v1 controller, in the order their files are written.
pub const CONTROLLERS: &[&dyn Controller] = &[
    &cpu::Cpu,
    &cpuacct::Cpuacct,
    &cpuset::Cpuset,
    &memory::Memory,
    &hugetlb::Hugetlb,
    &pids::Pids,
    &devices::Devices,
];

/// The controllers a v1 mount can carry (everything else in its options is a mount option).
const SUBSYSTEMS: [&str; 14] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
}

/// The v1 hierarchies among `mounts` (the process's mountinfo), one mount each (the one under
/// [`CGROUP_ROOT`] when a hierarchy is mounted twice); named hierarchies
/// (`name=systemd`) are left out.
pub fn hierarchies(mounts: &[MountInfo]) -> Vec<V1Mount> {
    let mut found: Vec<((u32, u32), V1Mount)> = Vec::new();
    for m in mounts.iter().filter(|m| m.fs_type == "cgroup") {
        let controllers: Vec<String> = m
            .super_options
            .split(',')
            .filter(|o| SUBSYSTEMS.contains(o))
            .map(str::to_string)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        let dev = (m.major, m.minor);
        let mount = V1Mount {
            controllers,
            mountpoint: m.mount_point.clone(),
        };
        match found.iter_mut().find(|(d, _)| *d == dev) {
            Some((_, m)) => {
                if !m.mountpoint.starts_with(CGROUP_ROOT)
                    && mount.mountpoint.starts_with(CGROUP_ROOT)
                {
                    *m = mount;
                }
            }
            None => found.push((dev, mount)),
        }
    }
    found.into_iter().map(|(_, m)| m).collect()
}

/// A v1 hierarchy's directory for the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Dir {
    pub controllers: Vec<String>,
    /// The hierarchy's root (its mount point).
    pub root: PathBuf,
    /// The container's cgroup in it.
    pub dir: PathBuf,
}

/// The container's directories on a v1 (legacy or hybrid) host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Cgroup {
    pub hierarchies: Vec<V1Dir>,
    /// Hybrid hosts: the container's cgroup in the controller-less v2 tree: (root, dir).
    pub unified: Option<(PathBuf, PathBuf)>,
}

impl V1Cgroup {
    /// The cgroup at `rel` (relative, plain) in each of `mounts` (and the hybrid v2 tree at
    /// `unified`).
    pub fn new(mounts: &[V1Mount], unified: Option<&Path>, rel: &Path) -> V1Cgroup {
        V1Cgroup {
            hierarchies: mounts
                .iter()
                .map(|m| V1Dir {
                    controllers: m.controllers.clone(),
                    root: m.mountpoint.clone(),
                    dir: m.mountpoint.join(rel),
                })
                .collect(),
            unified: unified.map(|u| (u.to_path_buf(), u.join(rel))),
        }
    }

    /// Every directory: one per hierarchy, then the unified one.
    pub fn dirs(&self) -> Vec<&Path> {
        self.hierarchies
            .iter()
            .map(|h| h.dir.as_path())
            .chain(self.unified.iter().map(|(_, d)| d.as_path()))
            .collect()
    }

    /// The container's directory in the hierarchy carrying `controller`.
    pub fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.dir.as_path())
    }

    /// The directory for `controller`, or a warning that `what` is not applied.
    fn dir_for(&self, controller: &str, what: &str) -> Option<&Path> {
        let dir = self.dir_of(controller);
        if dir.is_none() {
            tracing::warn!("no {controller} cgroup hierarchy is mounted: {what} not applied");
        }
        dir
    }

    /// Create the directories and their missing parents; cpuset parents get their parent's
    /// cpus and mems (an empty cpuset takes no process).
    pub fn create(&mut self) -> Result<()> {
        for h in &self.hierarchies {
            mkdir_all(&h.dir)?;
            if h.controllers.iter().any(|c| c == "cpuset") {
                cpuset::fill_parents(&h.root, &h.dir)?;
            }
        }
        // Hybrid: the v2 tree only mirrors membership; never fail a container over it.
        if let Some((_, dir)) = &self.unified
            && let Err(e) = mkdir_all(dir)
        {
            tracing::warn!("{e}; the container is not placed in the unified hierarchy");
            self.unified = None;
        }
        Ok(())
    }

    /// Write `linux.resources`, controller by controller.
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        for c in CONTROLLERS {
            if c.needs(r)
                && let Some(dir) = self.dir_for(c.name(), c.what())
            {
                c.apply(dir, r)?;
            }
        }
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::InvalidSpec(
                "linux.resources.unified needs a cgroup v2 host; this one is v1".into(),
            ));
        }
        Ok(())
    }

    /// Every mounted controller's readings.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for c in CONTROLLERS {
            if let Some(dir) = self.dir_of(c.name()) {
                c.stats(dir, &mut stats);
            }
        }
        stats
    }

    /// The memory controller's OOM-kill counter; None without one.
    pub fn oom_kill_count(&self) -> Result<Option<u64>> {
        match self.dir_of("memory") {
            Some(dir) => memory::oom_kill_count(dir),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;

    use super::*;
    use crate::common::test_files::{V1_FILES, fixture, read, resources};

    /// v1 hierarchies under `root`, each with every file, and the container's leaf `path`.
    pub(crate) fn v1_fixture(root: &Path, path: &str) -> V1Cgroup {
        let mut mounts = Vec::new();
        for h in [
            "cpu,cpuacct",
            "cpuset",
            "memory",
            "pids",
            "devices",
            "hugetlb",
        ] {
            let mountpoint = root.join(h);
            fixture(&mountpoint, V1_FILES);
            fs::write(mountpoint.join("cpuset.cpus"), "0-3\n").unwrap();
            fs::write(mountpoint.join("cpuset.mems"), "0\n").unwrap();
            // What the kernel would populate in the new directories.
            let mut dir = mountpoint.clone();
            for c in Path::new(path).components().skip(1) {
                dir.push(c);
                fixture(&dir, V1_FILES);
            }
            mounts.push(V1Mount {
                controllers: h.split(',').map(str::to_string).collect(),
                mountpoint,
            });
        }
        let rel = Path::new(path).strip_prefix("/").unwrap();
        V1Cgroup::new(&mounts, None, rel)
    }

    #[test]
    fn v1_mounts_from_mountinfo() {
        let info = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime shared:5 - cgroup cgroup rw,cpuset,clone_children
90 88 0:31 / /var/lib/x\\040y rw - cgroup cgroup rw,cpuset,clone_children
91 88 0:44 / /mnt/memory\\040cg rw - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let mounts = hierarchies(&berth_sys::mountinfo::parse(info));
        assert_eq!(
            mounts,
            vec![
                V1Mount {
                    controllers: vec!["cpu".into(), "cpuacct".into()],
                    mountpoint: "/sys/fs/cgroup/cpu,cpuacct".into()
                },
                V1Mount {
                    controllers: vec!["cpuset".into()],
                    mountpoint: "/sys/fs/cgroup/cpuset".into()
                },
                V1Mount {
                    controllers: vec!["memory".into()],
                    mountpoint: "/mnt/memory cg".into()
                },
            ]
        );
    }

    #[test]
    fn v1_create_copies_cpusets_down() {
        let d = tempfile::tempdir().unwrap();
        let mut cg = v1_fixture(d.path(), "/berth/c1");
        let cpuset = d.path().join("cpuset");
        // A parent that already has its own cpus keeps them, and passes them on.
        fs::write(cpuset.join("berth/cpuset.cpus"), "1-2\n").unwrap();
        cg.create().unwrap();
        assert_eq!(read(&cpuset.join("berth"), "cpuset.cpus"), "1-2\n");
        assert_eq!(read(&cpuset.join("berth"), "cpuset.mems"), "0");
        assert_eq!(read(&cpuset.join("berth/c1"), "cpuset.cpus"), "1-2");
        assert_eq!(read(&cpuset.join("berth/c1"), "cpuset.mems"), "0");
        // Other hierarchies do not get cpuset values.
        assert_eq!(read(&d.path().join("memory/berth/c1"), "cpuset.cpus"), "");
        assert_eq!(cg.dirs().len(), 6);
    }

    #[test]
    fn v1_apply_writes_every_controller() {
        let d = tempfile::tempdir().unwrap();
        let mut cg = v1_fixture(d.path(), "/berth/c1");
        cg.create().unwrap();
        cg.apply(&resources(
            r#"{
                "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
                "memory": {"limit": 33554432, "swap": 67108864, "reservation": 1048576},
                "pids": {"limit": 100},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
                "devices": [
                    {"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
                ]
            }"#,
        ))
        .unwrap();
        let leaf = |h: &str| d.path().join(h).join("berth/c1");
        assert_eq!(read(&leaf("cpu,cpuacct"), "cpu.shares"), "512");
        assert_eq!(read(&leaf("cpu,cpuacct"), "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&leaf("cpu,cpuacct"), "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&leaf("cpuset"), "cpuset.cpus"), "0-1");
        assert_eq!(read(&leaf("cpuset"), "cpuset.mems"), "0");
        assert_eq!(read(&leaf("memory"), "memory.limit_in_bytes"), "33554432");
        assert_eq!(
            read(&leaf("memory"), "memory.memsw.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(
            read(&leaf("memory"), "memory.soft_limit_in_bytes"),
            "1048576"
        );
        assert_eq!(read(&leaf("pids"), "pids.max"), "100");
        assert_eq!(
            read(&leaf("hugetlb"), "hugetlb.2MB.limit_in_bytes"),
            "4194304"
        );
        // Each write replaces the file: the last rule is what is left.
        assert_eq!(read(&leaf("devices"), "devices.deny"), "a");
        assert_eq!(read(&leaf("devices"), "devices.allow"), "c 1:3 rwm");
        // Only the cpu hierarchy got cpu values.
        assert_eq!(read(&leaf("memory"), "cpu.shares"), "1024");

        // Unlimited memory takes the swap limit along; unified keys are refused on v1.
        cg.apply(&resources(
            r#"{"memory": {"limit": -1}, "pids": {"limit": -1}}"#,
        ))
        .unwrap();
        assert_eq!(read(&leaf("memory"), "memory.limit_in_bytes"), "-1");
        assert_eq!(read(&leaf("memory"), "memory.memsw.limit_in_bytes"), "-1");
        assert_eq!(read(&leaf("pids"), "pids.max"), "max");
        let err = cg
            .apply(&resources(r#"{"unified": {"memory.high": "1000"}}"#))
            .unwrap_err();
        assert!(err.to_string().contains("cgroup v2"), "{err}");
        let err = cg
            .apply(&resources(r#"{"memory": {"limit": 100, "swap": 50}}"#))
            .unwrap_err();
        assert!(err.to_string().contains("below the memory limit"), "{err}");
    }

    #[test]
    fn v1_missing_hierarchy_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("memory");
        fixture(&root.join("c"), V1_FILES);
        let mounts = vec![V1Mount {
            controllers: vec!["memory".into()],
            mountpoint: root.clone(),
        }];
        let cg = V1Cgroup::new(&mounts, None, Path::new("c"));
        cg.apply(&resources(
            r#"{"cpu": {"shares": 512}, "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                "memory": {"limit": 1048576}}"#,
        ))
        .unwrap();
        assert_eq!(read(&root.join("c"), "memory.limit_in_bytes"), "1048576");
    }
}
