//! [`Cgroup`]: one container's cgroup, `linux.cgroupsPath` under every hierarchy root — the v1
//! directories (one per mounted hierarchy, and the unified one on hybrid hosts) or the v2
//! directory.
//!
//! [`Cgroup::create`] makes the path (parents included, as runc's cgroupfs driver);
//! [`Cgroup::apply`] writes `linux.resources`; [`Cgroup::join`] moves the caller in;
//! [`Cgroup::oom_kill_count`] reads the kernel's OOM-kill counter; [`Cgroup::destroy`] kills
//! what is left and removes the leaf (never its parents, which other containers may share).
//!
//! [`CreatedCgroup`] holds a cgroup while its container is being created: a container that
//! fails to be created leaves no cgroup behind.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::common::write_file;
use crate::error::{Error, Result, io_err};
use crate::layout::{CGROUP_ROOT, Layout, host_layout};
use crate::stats::Stats;
use crate::v1::{self, V1Cgroup, V1Mount};
use crate::v2::V2Cgroup;

/// How long [`Cgroup::destroy`] retries while the kernel still counts exiting processes.
pub const DESTROY_TIMEOUT: Duration = Duration::from_secs(5);

/// One container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    V1(V1Cgroup),
    V2(V2Cgroup),
}

impl Cgroup {
    /// The container cgroup for `cgroups_path` on this host (no side effects).
    pub fn for_host(cgroups_path: &Path) -> Result<Cgroup> {
        let root = Path::new(CGROUP_ROOT);
        match host_layout()? {
            Layout::Unified => Cgroup::v2(root, cgroups_path),
            layout => {
                let mounts = berth_sys::mountinfo::read_self()
                    .map_err(io_err(|| "reading /proc/self/mountinfo".into()))?;
                let hierarchies = v1::hierarchies(&mounts);
                if hierarchies.is_empty() {
                    return Err(Error::Unsupported(format!(
                        "no cgroup v1 hierarchy is mounted (under {CGROUP_ROOT})"
                    )));
                }
                let unified = (layout == Layout::Hybrid).then(|| root.join("unified"));
                Cgroup::v1(&hierarchies, unified.as_deref(), cgroups_path)
            }
        }
    }

    /// The container cgroup in the given v1 hierarchies (and the hybrid v2 tree at `unified`).
    pub fn v1(mounts: &[V1Mount], unified: Option<&Path>, cgroups_path: &Path) -> Result<Cgroup> {
        let rel = relative_cgroup_path(cgroups_path)?;
        Ok(Cgroup::V1(V1Cgroup::new(mounts, unified, &rel)))
    }

    /// The container cgroup in the v2 hierarchy mounted at `root`.
    pub fn v2(root: &Path, cgroups_path: &Path) -> Result<Cgroup> {
        let rel = relative_cgroup_path(cgroups_path)?;
        Ok(Cgroup::V2(V2Cgroup::new(root, &rel)))
    }

    /// Every directory of the container's cgroup.
    pub fn dirs(&self) -> Vec<&Path> {
        match self {
            Cgroup::V1(v1) => v1.dirs(),
            Cgroup::V2(v2) => vec![v2.dir.as_path()],
        }
    }

    /// Create the cgroup and its missing parents. v1: cpuset parents get their parent's cpus
    /// and mems (an empty cpuset takes no process). v2: the parents' controllers are enabled
    /// for their children.
    pub fn create(&mut self) -> Result<()> {
        match self {
            Cgroup::V1(v1) => v1.create(),
            Cgroup::V2(v2) => v2.create(),
        }
    }

    /// Move the calling process into the cgroup (every hierarchy).
    pub fn join(&self) -> Result<()> {
        self.add_process(0)
    }

    /// Move process `pid` (0: the caller) into the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        for dir in self.dirs() {
            write_file(dir, "cgroup.procs", &pid.to_string())
                .map_err(|e| e.context("joining the container's cgroup"))?;
        }
        Ok(())
    }

    /// Write `linux.resources`.
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        if r.block_io().is_some() || r.network().is_some() || r.rdma().is_some() {
            tracing::warn!("linux.resources blockIO, network and rdma are not applied");
        }
        match self {
            Cgroup::V1(v1) => v1.apply(r),
            Cgroup::V2(v2) => v2.apply(r),
        }
    }

    /// The file the kernel notifies (inotify IN_MODIFY) when it OOM-kills in this cgroup:
    /// `memory.events` on v2; None on v1 (its `memory.oom_control` is an eventfd interface).
    pub fn oom_events_file(&self) -> Option<std::path::PathBuf> {
        match self {
            Cgroup::V1(_) => None,
            Cgroup::V2(v2) => Some(v2.dir.join("memory.events")),
        }
    }

    /// The `oom_kill` count in an `oom_events_file` (of this cgroup or another); None when the
    /// file is not there (the cgroup is gone).
    pub fn read_oom_kill(file: &std::path::Path) -> Result<Option<u64>> {
        match (file.parent(), file.file_name().and_then(|n| n.to_str())) {
            (Some(dir), Some(name)) => crate::common::oom_kill_count(dir, name),
            _ => Ok(None),
        }
    }

    /// How many processes the kernel OOM-killed in this cgroup; None without a memory
    /// controller.
    pub fn oom_kill_count(&self) -> Result<Option<u64>> {
        match self {
            Cgroup::V1(v1) => v1.oom_kill_count(),
            Cgroup::V2(v2) => v2.oom_kill_count(),
        }
    }

    /// CPU and memory readings (what the kernel has; missing files read as 0).
    pub fn stats(&self) -> Stats {
        match self {
            Cgroup::V1(v1) => v1.stats(),
            Cgroup::V2(v2) => v2.stats(),
        }
    }

    /// Tasks in the cgroup and its descendants (`pids.current`); None without a pids
    /// controller.
    pub fn pids_current(&self) -> Option<u64> {
        let dir = match self {
            Cgroup::V1(v1) => v1.dir_of("pids")?,
            Cgroup::V2(v2) => v2.dir.as_path(),
        };
        fs::read_to_string(dir.join("pids.current"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The processes in the cgroup (host pids).
    pub fn procs(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for dir in self.dirs() {
            let path = dir.join("cgroup.procs");
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(|| format!("reading {}", path.display()))(e)),
            };
            for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        Ok(pids)
    }

    /// Send `sig` to every process in the cgroup.
    // kill(2) through libc.
    #[allow(unsafe_code)]
    pub fn kill(&self, sig: i32) -> Result<()> {
        for pid in self.procs()? {
            // SAFETY: kill takes plain integers.
            if pid > 0 && unsafe { libc::kill(pid, sig) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) {
                    tracing::warn!("kill {pid} {sig}: {e}");
                }
            }
        }
        Ok(())
    }

    /// One attempt at removing the container's directories (not their parents). Already gone
    /// is fine; [`Error::Busy`] while processes (even exiting ones) remain.
    pub fn remove(&self) -> Result<()> {
        let mut busy = None;
        for dir in self.dirs() {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    busy.get_or_insert_with(|| dir.to_path_buf());
                }
                Err(e) => return Err(io_err(|| format!("removing {}", dir.display()))(e)),
            }
        }
        match busy {
            Some(dir) => Err(Error::Busy(dir)),
            None => Ok(()),
        }
    }

    /// SIGKILL every process in the cgroup with none escaping by forking meanwhile: the kernel's
    /// `cgroup.kill` where a v2 directory has it (also the hybrid host's unified one, which
    /// holds the same processes); else the processes are frozen (v2 `cgroup.freeze`, v1
    /// freezer), killed and thawed (killed processes only die once thawed); else one pass over
    /// `cgroup.procs`.
    pub fn kill_all(&self) -> Result<()> {
        let unified = match self {
            Cgroup::V1(v1) => v1.unified.as_ref().map(|(_, d)| d.as_path()),
            Cgroup::V2(v2) => Some(v2.dir.as_path()),
        };
        if let Some(dir) = unified
            && dir.join("cgroup.kill").exists()
        {
            match fs::write(dir.join("cgroup.kill"), "1") {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => tracing::warn!("cgroup.kill in {}: {e}", dir.display()),
            }
        }
        let freezer = match self {
            Cgroup::V1(v1) => v1
                .dir_of("freezer")
                .map(|d| (d.join("freezer.state"), "FROZEN", "THAWED")),
            Cgroup::V2(v2) => Some((v2.dir.join("cgroup.freeze"), "1", "0")),
        }
        .filter(|(file, _, _)| file.exists());
        let Some((file, frozen, thawed)) = freezer else {
            return self.kill(libc::SIGKILL);
        };
        let froze = fs::write(&file, frozen).is_ok();
        if froze {
            // v1 reports FREEZING until every task stopped; v2 says so in cgroup.events.
            let deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < deadline && !self.frozen(&file) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let killed = self.kill(libc::SIGKILL);
        if froze {
            let _ = fs::write(&file, thawed);
        }
        killed
    }

    /// Whether the freeze written to `file` has taken hold.
    fn frozen(&self, file: &Path) -> bool {
        match self {
            Cgroup::V1(_) => fs::read_to_string(file).is_ok_and(|s| s.trim() == "FROZEN"),
            Cgroup::V2(v2) => fs::read_to_string(v2.dir.join("cgroup.events"))
                .is_ok_and(|s| s.lines().any(|l| l.trim() == "frozen 1")),
        }
    }

    /// Kill whatever is left in the cgroup and remove it, retrying up to `timeout` while the
    /// kernel releases the processes. Blocks: for callers with nothing else to do (the children
    /// must be reaped by someone else, or already).
    pub fn destroy(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.kill_all()?;
            match self.remove() {
                Err(e) if e.is_busy() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                res => return res,
            }
        }
    }
}

/// A cgroup [`CreatedCgroup::create`] made: destroyed (with [`DESTROY_TIMEOUT`]) on drop unless
/// [`kept`](CreatedCgroup::keep).
#[derive(Debug)]
pub struct CreatedCgroup {
    cgroup: Cgroup,
    kept: bool,
}

impl CreatedCgroup {
    /// Create `cgroup` (see [`Cgroup::create`]); if that fails, whatever part was made goes
    /// again (the leaves only: parents may be shared).
    pub fn create(mut cgroup: Cgroup) -> Result<CreatedCgroup> {
        if let Err(e) = cgroup.create() {
            let _ = cgroup.remove();
            return Err(e);
        }
        Ok(CreatedCgroup {
            cgroup,
            kept: false,
        })
    }

    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// The container exists: its cgroup outlives this guard (its owner removes it at the end).
    pub fn keep(mut self) -> Cgroup {
        self.kept = true;
        self.cgroup.clone()
    }
}

impl Drop for CreatedCgroup {
    fn drop(&mut self) {
        if !self.kept
            && let Err(e) = self.cgroup.destroy(DESTROY_TIMEOUT)
        {
            tracing::warn!("removing the cgroup of a container not created: {e}");
        }
    }
}

/// `linux.cgroupsPath` as a path relative to a hierarchy root: absolute, plain components.
pub fn relative_cgroup_path(path: &Path) -> Result<PathBuf> {
    let bad = |why: &str| {
        Err(Error::InvalidSpec(format!(
            "linux.cgroupsPath {}: {why}",
            path.display()
        )))
    };
    // The systemd driver's `<slice>:<prefix>:<name>`: its scope's directory.
    if let Some(dir) = path.to_str().and_then(crate::systemd::cgroups_path_dir) {
        let dir = dir?;
        let rel = dir.strip_prefix("/").unwrap_or(&dir).to_path_buf();
        if rel.as_os_str().is_empty() {
            return bad("the root cgroup cannot be a container's");
        }
        return Ok(rel);
    }
    if !path.is_absolute() {
        return bad("relative cgroup paths are not supported");
    }
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => rel.push(n),
            Component::ParentDir | Component::Prefix(_) => return bad("\"..\" is not allowed"),
        }
    }
    if rel.as_os_str().is_empty() {
        return bad("the root cgroup cannot be a container's");
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_files::read;

    fn v1_fixture(root: &Path, path: &str) -> Cgroup {
        Cgroup::V1(v1::tests::v1_fixture(root, path))
    }

    fn v2_fixture(root: &Path, path: &str) -> Cgroup {
        Cgroup::V2(crate::v2::tests::v2_fixture(root, path))
    }

    #[test]
    fn cgroups_path_must_be_absolute_and_plain() {
        assert_eq!(
            relative_cgroup_path(Path::new("/berth/c1")).unwrap(),
            PathBuf::from("berth/c1")
        );
        assert_eq!(
            relative_cgroup_path(Path::new("//kubepods/./pod/c/")).unwrap(),
            PathBuf::from("kubepods/pod/c")
        );
        // The systemd driver's form: its scope's directory.
        assert_eq!(
            relative_cgroup_path(Path::new("kubepods-pod1.slice:berth:c1")).unwrap(),
            PathBuf::from("kubepods.slice/kubepods-pod1.slice/berth-c1.scope")
        );
        for bad in [
            "berth/c1",
            "/berth/../x",
            "/",
            "",
            "a--b.slice:berth:c1",
            "x.slice:berth:../c",
            "x.slice::-.slice",
        ] {
            let err = relative_cgroup_path(Path::new(bad)).unwrap_err();
            assert!(matches!(err, Error::InvalidSpec(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn oom_kill_counters() {
        let d = tempfile::tempdir().unwrap();
        let v2 = v2_fixture(&d.path().join("v2"), "/c");
        assert_eq!(v2.oom_kill_count().unwrap(), Some(1));
        let v1 = v1_fixture(&d.path().join("v1"), "/c");
        assert_eq!(v1.oom_kill_count().unwrap(), Some(0));
        fs::write(
            d.path().join("v1/memory/c/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(v1.oom_kill_count().unwrap(), Some(2));
        // No memory hierarchy, or an old kernel without the counter: unknown.
        let none = Cgroup::v1(&[], None, Path::new("/c")).unwrap();
        assert_eq!(none.oom_kill_count().unwrap(), None);
        fs::write(
            d.path().join("v1/memory/c/memory.oom_control"),
            "under_oom 0\n",
        )
        .unwrap();
        assert_eq!(v1.oom_kill_count().unwrap(), None);
    }

    #[test]
    fn join_procs_and_remove() {
        let d = tempfile::tempdir().unwrap();
        let cg = v2_fixture(d.path(), "/berth/c1");
        cg.join().unwrap();
        assert_eq!(read(&d.path().join("berth/c1"), "cgroup.procs"), "0");
        cg.add_process(42).unwrap();
        assert_eq!(cg.procs().unwrap(), vec![42]);
        // A fixture directory has files: rmdir fails like a busy cgroup's would not; an
        // emptied one goes, the parent stays.
        let leaf = d.path().join("berth/c1");
        for e in fs::read_dir(&leaf).unwrap() {
            fs::remove_file(e.unwrap().path()).unwrap();
        }
        cg.remove().unwrap();
        assert!(!leaf.exists());
        assert!(d.path().join("berth").is_dir());
        cg.remove().unwrap();
        cg.destroy(Duration::from_millis(10)).unwrap();
    }

    #[test]
    fn a_created_cgroup_goes_unless_kept() {
        let d = tempfile::tempdir().unwrap();
        let leaf = d.path().join("berth/c1");
        let created =
            CreatedCgroup::create(Cgroup::v2(d.path(), Path::new("/berth/c1")).unwrap()).unwrap();
        assert_eq!(created.cgroup().dirs(), vec![leaf.as_path()]);
        assert!(leaf.is_dir());
        drop(created);
        assert!(!leaf.exists());
        assert!(d.path().join("berth").is_dir());

        let created =
            CreatedCgroup::create(Cgroup::v2(d.path(), Path::new("/berth/c1")).unwrap()).unwrap();
        let kept = created.keep();
        assert!(leaf.is_dir());
        kept.remove().unwrap();
    }
}
