//! [`HelperCgroup`]: a cgroup of its own, outside berthd's, for each long-lived process berthd
//! starts (a container's shim, a pod's pod-init), with the cgroupfs driver.
//!
//! A process stays in its parent's cgroup. Left in berthd's, a shim belongs to berthd's systemd
//! unit, and `systemctl restart berthd` under the default `KillMode=control-group` kills every
//! shim and pod-init with it. CRI-O moves conmon out the same way (`conmon_cgroup`); containerd
//! leaves its shims in place and relies on `KillMode=process`. berth does both: the unit says
//! `KillMode=process`, and the helpers leave anyway, so any `KillMode` keeps containers running.
//!
//! The cgroup is `/berth-shims/<name>` in every mounted hierarchy: the v2 one (the one systemd
//! tracks units by on unified and hybrid hosts), and on v1 every hierarchy, the named
//! `name=systemd` one included (cpuset levels get their parent's cpus and mems, or nothing
//! could join them). No controller is enabled below `/berth-shims` and nothing is limited: the
//! helpers are only accounted apart. The leaf is removed once its process is gone; `rmdir`
//! refuses a cgroup that still has processes, so sweeping every leaf is safe.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::common::{mkdir_all, write_file};
use crate::error::{Error, Result, io_err};
use crate::layout::CGROUP_ROOT;

/// The directory, under each hierarchy's root, that holds the helpers' cgroups.
pub const HELPERS_DIR: &str = "berth-shims";

/// One mounted hierarchy: its mount point and whether it has the v1 cpuset controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub root: PathBuf,
    pub cpuset: bool,
}

/// One helper process's cgroup: `<root>/berth-shims/<name>` in every hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperCgroup {
    hierarchies: Vec<Hierarchy>,
    name: String,
}

impl HelperCgroup {
    /// The cgroup `name` (a container id, `pod-<sandbox id>`) in the host's hierarchies.
    pub fn for_host(name: &str) -> Result<HelperCgroup> {
        HelperCgroup::new(host_hierarchies()?, name)
    }

    /// The cgroup `name` in the given hierarchies.
    pub fn new(hierarchies: Vec<Hierarchy>, name: &str) -> Result<HelperCgroup> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::InvalidSpec(format!(
                "helper cgroup name {name:?} is not one path component"
            )));
        }
        Ok(HelperCgroup {
            hierarchies,
            name: name.to_string(),
        })
    }

    /// Its directory in every hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.root.join(HELPERS_DIR).join(&self.name))
            .collect()
    }

    /// Create the cgroup and move process `pid` into it, hierarchy by hierarchy.
    pub fn place(&self, pid: i32) -> Result<()> {
        for h in &self.hierarchies {
            let dir = h.root.join(HELPERS_DIR).join(&self.name);
            // Another berthd's sweep may remove the new, still empty directory between the
            // mkdir and the write: create it again.
            let mut attempts = 0;
            loop {
                mkdir_all(&dir)?;
                if h.cpuset {
                    crate::v1::cpuset::fill_parents(&h.root, &dir)?;
                }
                match write_file(&dir, "cgroup.procs", &pid.to_string()) {
                    Ok(()) => break,
                    Err(Error::Io { source, .. })
                        if source.kind() == io::ErrorKind::NotFound && attempts < 3 =>
                    {
                        attempts += 1;
                    }
                    Err(e) => {
                        return Err(e.context("moving a berth helper out of berthd's cgroup"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Remove the cgroup: [`Error::Busy`] while its process (or one it forked) still lives.
    pub fn remove(&self) -> Result<()> {
        let mut busy = None;
        for dir in self.dirs() {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    busy.get_or_insert(dir);
                }
                Err(e) => return Err(io_err(|| format!("removing {}", dir.display()))(e)),
            }
        }
        match busy {
            Some(dir) => Err(Error::Busy(dir)),
            None => Ok(()),
        }
    }
}

/// Remove every helper cgroup whose process is gone (the others refuse); returns how many went.
pub fn sweep(hierarchies: &[Hierarchy]) -> usize {
    let mut removed = 0;
    for h in hierarchies {
        let Ok(entries) = fs::read_dir(h.root.join(HELPERS_DIR)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) && fs::remove_dir(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// Remove each of the top-level cgroups `names` (e.g. [`HELPERS_DIR`], the cgroupfs driver's
/// default container parent) in every hierarchy where it is empty (berthd's shutdown: a node
/// with no container keeps no cgroup of berth's). One that still holds a cgroup stays (`rmdir`
/// refuses it); whatever needs it later creates it again. Returns how many went.
pub fn remove_empty_parents(hierarchies: &[Hierarchy], names: &[&str]) -> usize {
    hierarchies
        .iter()
        .flat_map(|h| names.iter().map(|n| h.root.join(n)))
        .filter(|dir| fs::remove_dir(dir).is_ok())
        .count()
}

/// The host's mounted hierarchies under [`CGROUP_ROOT`]: the v2 one and every v1 one (named
/// ones such as `name=systemd` too), one mount per hierarchy.
pub fn host_hierarchies() -> Result<Vec<Hierarchy>> {
    let mounts = berth_sys::mountinfo::read_self()
        .map_err(io_err(|| "reading /proc/self/mountinfo".into()))?;
    let mut seen: Vec<(u32, u32)> = Vec::new();
    let mut found = Vec::new();
    for m in &mounts {
        if !(m.fs_type == "cgroup" || m.fs_type == "cgroup2")
            || !m.mount_point.starts_with(CGROUP_ROOT)
            || m.root != Path::new("/")
            || seen.contains(&(m.major, m.minor))
        {
            continue;
        }
        seen.push((m.major, m.minor));
        found.push(Hierarchy {
            root: m.mount_point.clone(),
            cpuset: m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == "cpuset"),
        });
    }
    if found.is_empty() {
        return Err(Error::Unsupported(format!(
            "no cgroup hierarchy is mounted under {CGROUP_ROOT}"
        )));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_component() {
        for bad in ["", ".", "..", "a/b"] {
            assert!(HelperCgroup::new(vec![], bad).is_err(), "{bad:?}");
        }
        let h = HelperCgroup::new(
            vec![Hierarchy {
                root: "/sys/fs/cgroup/pids".into(),
                cpuset: false,
            }],
            "abc",
        )
        .unwrap();
        assert_eq!(
            h.dirs(),
            vec![PathBuf::from("/sys/fs/cgroup/pids/berth-shims/abc")]
        );
    }

    #[test]
    fn only_empty_parents_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let h = |name: &str| Hierarchy {
            root: dir.path().join(name),
            cpuset: false,
        };
        let hs = vec![h("a"), h("b"), h("c")];
        fs::create_dir_all(dir.path().join("a").join(HELPERS_DIR)).unwrap();
        fs::create_dir_all(dir.path().join("b").join(HELPERS_DIR).join("ctr")).unwrap();
        fs::create_dir_all(dir.path().join("b").join("berth")).unwrap();
        fs::create_dir_all(dir.path().join("c").join("berth").join("ctr")).unwrap();
        assert_eq!(remove_empty_parents(&hs, &[HELPERS_DIR, "berth"]), 2);
        assert!(!dir.path().join("a").join(HELPERS_DIR).exists());
        assert!(!dir.path().join("b").join("berth").exists());
        assert!(dir.path().join("b").join(HELPERS_DIR).join("ctr").exists());
        assert!(dir.path().join("c").join("berth").join("ctr").exists());
    }
}
