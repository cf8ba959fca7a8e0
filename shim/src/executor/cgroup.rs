//! The container's cgroup, cgroupfs driver, v1 and v2.
//!
//! - [`Layout`]: how the host mounts cgroups, detected once from `/sys/fs/cgroup`'s statfs
//!   magic: cgroup2 → [`Layout::Unified`]; tmpfs with a cgroup2 `unified/` → [`Layout::Hybrid`]
//!   (v1 controllers plus a controller-less v2 tree); anything else → [`Layout::Legacy`].
//! - [`Cgroup`]: one container's cgroup, `linux.cgroupsPath` under every hierarchy root — an enum
//!   over the v1 directories (one per mounted hierarchy, and the unified one on hybrid hosts) and
//!   the v2 directory. [`Cgroup::create`] makes the path (parents included, as runc's cgroupfs
//!   driver); [`Cgroup::apply`] writes `linux.resources`; [`Cgroup::join`] moves the caller in;
//!   [`Cgroup::oom_kill_count`] reads the kernel's OOM-kill counter; [`Cgroup::destroy`] kills
//!   what is left and removes the leaf (never its parents, which other containers may share).
//! - [`setup`] / [`CreatedCgroup`]: what the executor calls; the cgroup is removed again if the
//!   container is not created after all.
//!
//! The container's init joins its cgroup itself, first thing after the fork (see `process.rs`),
//! before it creates namespaces or runs anything of the container; the resources are applied by
//! the shim once the init reports it is set up and before it may exec (runc's order: the rootfs
//! setup may mknod and open devices the device rules would refuse).
//!
//! Not here: v2 device rules (they need an eBPF program: logged and skipped), blockIO, network
//! and rdma resources (logged and skipped), relative cgroupsPaths (refused), the systemd driver.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources};

use super::Container;

/// Where the host's cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The controllers a v1 mount can carry (everything else in its options is a mount option).
const V1_CONTROLLERS: [&str; 14] = [
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
/// How long [`Cgroup::destroy`] retries while the kernel still counts exiting processes.
pub const DESTROY_TIMEOUT: Duration = Duration::from_secs(5);

/// cgroup errors. The message is what berthd shows the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// rmdir refused: processes (or exiting ones) are still in it.
    #[error("removing {0}: the cgroup still has processes")]
    Busy(PathBuf),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// rmdir failed only because the cgroup is not empty yet (worth retrying).
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy(_))
    }
}

impl From<Error> for super::Error {
    fn from(e: Error) -> super::Error {
        match e {
            Error::InvalidSpec(m) => super::Error::InvalidSpec(m),
            Error::Unsupported(m) => super::Error::Unsupported(m),
            Error::Io { context, source } => super::Error::Io {
                context: format!("cgroup: {context}"),
                source,
            },
            e @ Error::Busy(_) => super::Error::Init(format!("cgroup: {e}")),
        }
    }
}

fn io_err(context: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io {
        context: context(),
        source,
    }
}

/// How the host mounts its cgroup hierarchies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// v1 only: one mount per controller (or group of controllers).
    Legacy,
    /// v1 controllers, plus a cgroup2 mount at `unified/` without controllers.
    Hybrid,
    /// cgroup v2 only, at the root.
    Unified,
}

impl Layout {
    /// Classify from the root's filesystem type and whether `<root>/unified` is a cgroup2 mount.
    pub fn classify(root_is_cgroup2: bool, root_is_tmpfs: bool, unified_is_cgroup2: bool) -> Self {
        if root_is_cgroup2 {
            Layout::Unified
        } else if root_is_tmpfs && unified_is_cgroup2 {
            Layout::Hybrid
        } else {
            Layout::Legacy
        }
    }

    /// Detect the layout of the hierarchies mounted at `root`.
    pub fn detect(root: &Path) -> Result<Layout> {
        let fs = statfs(root).map_err(|e| Error::Io {
            context: format!("statfs {}", root.display()),
            source: e.into(),
        })?;
        let root_is_cgroup2 = fs.filesystem_type() == CGROUP2_SUPER_MAGIC;
        let root_is_tmpfs = fs.filesystem_type() == TMPFS_MAGIC;
        let unified_is_cgroup2 = root_is_tmpfs
            && statfs(&root.join("unified"))
                .is_ok_and(|u| u.filesystem_type() == CGROUP2_SUPER_MAGIC);
        Ok(Layout::classify(
            root_is_cgroup2,
            root_is_tmpfs,
            unified_is_cgroup2,
        ))
    }
}

/// The host's layout at [`CGROUP_ROOT`], detected on first use.
pub fn host_layout() -> Result<Layout> {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    if let Some(l) = LAYOUT.get() {
        return Ok(*l);
    }
    let l = Layout::detect(Path::new(CGROUP_ROOT))?;
    Ok(*LAYOUT.get_or_init(|| l))
}

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
}

/// The v1 hierarchies in `/proc/self/mountinfo` text, one mount each (the one under
/// [`CGROUP_ROOT`] when a hierarchy is mounted twice); named hierarchies (`name=systemd`) are
/// left out.
pub fn parse_v1_mounts(mountinfo: &str) -> Vec<V1Mount> {
    let mut found: Vec<(String, V1Mount)> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 || right[0] != "cgroup" {
            continue;
        }
        let controllers: Vec<String> = right[2]
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o))
            .map(str::to_string)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        let dev = left[2].to_string();
        let mount = V1Mount {
            controllers,
            mountpoint: PathBuf::from(berth_sys::mountinfo::unescape_mountinfo(left[4])),
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

/// `linux.cgroupsPath` as a path relative to a hierarchy root: absolute, plain components.
pub fn relative_cgroup_path(path: &Path) -> Result<PathBuf> {
    let bad = |why: &str| {
        Err(Error::InvalidSpec(format!(
            "linux.cgroupsPath {}: {why}",
            path.display()
        )))
    };
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

/// A cgroup's CPU and memory readings; bytes, and nanoseconds of CPU time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub cpu_usage_ns: u64,
    pub memory_usage: u64,
    /// Usage minus the inactive file cache (cAdvisor's and the kubelet's working set).
    pub memory_working_set: u64,
    pub memory_rss: u64,
    /// 0: no limit.
    pub memory_limit: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub swap_usage: u64,
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

/// The container's directory on a v2 host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Cgroup {
    pub root: PathBuf,
    pub dir: PathBuf,
}

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
                let info = fs::read_to_string("/proc/self/mountinfo")
                    .map_err(io_err(|| "reading /proc/self/mountinfo".into()))?;
                let mounts = parse_v1_mounts(&info);
                if mounts.is_empty() {
                    return Err(Error::Unsupported(format!(
                        "no cgroup v1 hierarchy is mounted (under {CGROUP_ROOT})"
                    )));
                }
                let unified = (layout == Layout::Hybrid).then(|| root.join("unified"));
                Cgroup::v1(&mounts, unified.as_deref(), cgroups_path)
            }
        }
    }

    /// The container cgroup in the given v1 hierarchies (and the hybrid v2 tree at `unified`).
    pub fn v1(mounts: &[V1Mount], unified: Option<&Path>, cgroups_path: &Path) -> Result<Cgroup> {
        let rel = relative_cgroup_path(cgroups_path)?;
        Ok(Cgroup::V1(V1Cgroup {
            hierarchies: mounts
                .iter()
                .map(|m| V1Dir {
                    controllers: m.controllers.clone(),
                    root: m.mountpoint.clone(),
                    dir: m.mountpoint.join(&rel),
                })
                .collect(),
            unified: unified.map(|u| (u.to_path_buf(), u.join(&rel))),
        }))
    }

    /// The container cgroup in the v2 hierarchy mounted at `root`.
    pub fn v2(root: &Path, cgroups_path: &Path) -> Result<Cgroup> {
        let rel = relative_cgroup_path(cgroups_path)?;
        Ok(Cgroup::V2(V2Cgroup {
            root: root.to_path_buf(),
            dir: root.join(rel),
        }))
    }

    /// Every directory of the container's cgroup.
    pub fn dirs(&self) -> Vec<&Path> {
        match self {
            Cgroup::V1(v1) => v1
                .hierarchies
                .iter()
                .map(|h| h.dir.as_path())
                .chain(v1.unified.iter().map(|(_, d)| d.as_path()))
                .collect(),
            Cgroup::V2(v2) => vec![v2.dir.as_path()],
        }
    }

    /// Create the cgroup and its missing parents. v1: cpuset parents get their parent's cpus
    /// and mems (an empty cpuset takes no process). v2: the parents' controllers are enabled
    /// for their children.
    pub fn create(&mut self) -> Result<()> {
        match self {
            Cgroup::V1(v1) => {
                for h in &v1.hierarchies {
                    mkdir_all(&h.dir)?;
                    if h.controllers.iter().any(|c| c == "cpuset") {
                        for file in ["cpuset.cpus", "cpuset.mems"] {
                            copy_down_if_empty(&h.root, &h.dir, file)?;
                        }
                    }
                }
                // Hybrid: the v2 tree only mirrors membership; never fail a container over it.
                if let Some((_, dir)) = &v1.unified
                    && let Err(e) = mkdir_all(dir)
                {
                    tracing::warn!("{e}; the container is not placed in the unified hierarchy");
                    v1.unified = None;
                }
                Ok(())
            }
            Cgroup::V2(v2) => {
                let rel = v2
                    .dir
                    .strip_prefix(&v2.root)
                    .unwrap_or(&v2.dir)
                    .to_path_buf();
                let mut parent = v2.root.clone();
                for c in rel.components() {
                    enable_controllers(&parent);
                    parent.push(c);
                    mkdir(&parent)?;
                }
                Ok(())
            }
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
                .map_err(|e| prefix(e, "joining the container's cgroup"))?;
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

    /// How many processes the kernel OOM-killed in this cgroup; None without a memory
    /// controller.
    pub fn oom_kill_count(&self) -> Result<Option<u64>> {
        let (dir, file) = match self {
            Cgroup::V1(v1) => match v1.dir_of("memory") {
                Some(d) => (d, "memory.oom_control"),
                None => return Ok(None),
            },
            Cgroup::V2(v2) => (v2.dir.as_path(), "memory.events"),
        };
        let path = dir.join(file);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(|| format!("reading {}", path.display()))(e)),
        };
        Ok(flat_keyed(&text, "oom_kill"))
    }

    /// CPU and memory readings (what the kernel has; missing files read as 0).
    pub fn stats(&self) -> Stats {
        let read = |dir: Option<&Path>, file: &str| -> String {
            dir.and_then(|d| fs::read_to_string(d.join(file)).ok())
                .unwrap_or_default()
        };
        let num = |text: String| text.trim().parse::<u64>().unwrap_or(0);
        match self {
            Cgroup::V1(v1) => {
                let mem = v1.dir_of("memory");
                let stat = read(mem, "memory.stat");
                let usage = num(read(mem, "memory.usage_in_bytes"));
                let inactive = flat_keyed(&stat, "total_inactive_file").unwrap_or(0);
                let limit = num(read(mem, "memory.limit_in_bytes"));
                let memsw = num(read(mem, "memory.memsw.usage_in_bytes"));
                Stats {
                    cpu_usage_ns: num(read(v1.dir_of("cpuacct"), "cpuacct.usage")),
                    memory_usage: usage,
                    memory_working_set: usage.saturating_sub(inactive),
                    memory_rss: flat_keyed(&stat, "total_rss").unwrap_or(0),
                    // v1 says "unlimited" with a page-rounded i64::MAX.
                    memory_limit: if limit >= 1 << 62 { 0 } else { limit },
                    page_faults: flat_keyed(&stat, "total_pgfault").unwrap_or(0),
                    major_page_faults: flat_keyed(&stat, "total_pgmajfault").unwrap_or(0),
                    swap_usage: memsw.saturating_sub(usage),
                }
            }
            Cgroup::V2(v2) => {
                let dir = Some(v2.dir.as_path());
                let stat = read(dir, "memory.stat");
                let usage = num(read(dir, "memory.current"));
                let inactive = flat_keyed(&stat, "inactive_file").unwrap_or(0);
                let cpu = read(dir, "cpu.stat");
                Stats {
                    cpu_usage_ns: flat_keyed(&cpu, "usage_usec").unwrap_or(0) * 1000,
                    memory_usage: usage,
                    memory_working_set: usage.saturating_sub(inactive),
                    memory_rss: flat_keyed(&stat, "anon").unwrap_or(0),
                    memory_limit: num(read(dir, "memory.max")),
                    page_faults: flat_keyed(&stat, "pgfault").unwrap_or(0),
                    major_page_faults: flat_keyed(&stat, "pgmajfault").unwrap_or(0),
                    swap_usage: num(read(dir, "memory.swap.current")),
                }
            }
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

    /// Kill whatever is left in the cgroup and remove it, retrying up to `timeout` while the
    /// kernel releases the processes. Blocks: for callers with nothing else to do (the children
    /// must be reaped by someone else, or already).
    pub fn destroy(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.kill(libc::SIGKILL)?;
            match self.remove() {
                Err(e) if e.is_busy() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                res => return res,
            }
        }
    }
}

impl V1Cgroup {
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

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        if let Some(cpu) = r.cpu() {
            let wants_cpu = cpu.shares().is_some_and(|s| s > 0)
                || cpu.period().is_some_and(|p| p > 0)
                || cpu.quota().is_some_and(|q| q != 0);
            if wants_cpu && let Some(dir) = self.dir_for("cpu", "cpu shares/quota") {
                if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
                    write_file(dir, "cpu.shares", &shares.to_string())?;
                }
                // The period first: the kernel checks the quota against it.
                if let Some(period) = cpu.period().filter(|p| *p > 0) {
                    write_file(dir, "cpu.cfs_period_us", &period.to_string())?;
                }
                if let Some(quota) = cpu.quota().filter(|q| *q != 0) {
                    write_file(dir, "cpu.cfs_quota_us", &quota.max(-1).to_string())?;
                }
            }
            let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
            let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
            if (cpus.is_some() || mems.is_some())
                && let Some(dir) = self.dir_for("cpuset", "cpuset cpus/mems")
            {
                if let Some(cpus) = cpus {
                    write_file(dir, "cpuset.cpus", cpus)?;
                }
                if let Some(mems) = mems {
                    write_file(dir, "cpuset.mems", mems)?;
                }
            }
        }
        if let Some(mem) = r.memory()
            && (mem.limit().is_some() || mem.swap().is_some() || mem.reservation().is_some())
            && let Some(dir) = self.dir_for("memory", "memory limits")
        {
            v1_memory(dir, mem)?;
        }
        if let Some(limits) = r.hugepage_limits().as_deref().filter(|l| !l.is_empty())
            && let Some(dir) = self.dir_for("hugetlb", "hugepage limits")
        {
            for l in limits {
                let size = hugepage_size(l.page_size())?;
                write_file(
                    dir,
                    &format!("hugetlb.{size}.limit_in_bytes"),
                    &l.limit().to_string(),
                )?;
                // Reservation limits where the kernel has them (what the spec asks for first).
                let rsvd = format!("hugetlb.{size}.rsvd.limit_in_bytes");
                if dir.join(&rsvd).exists() {
                    write_file(dir, &rsvd, &l.limit().to_string())?;
                }
            }
        }
        if let Some(pids) = r.pids().filter(|p| p.limit() != 0)
            && let Some(dir) = self.dir_for("pids", "pids limit")
        {
            write_file(dir, "pids.max", &pids_max(pids.limit()))?;
        }
        if let Some(rules) = r.devices().as_deref().filter(|d| !d.is_empty())
            && let Some(dir) = self.dir_for("devices", "device rules")
        {
            for rule in rules {
                let (file, line) = v1_device_rule(rule)?;
                write_file(dir, file, &line)?;
            }
        }
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::InvalidSpec(
                "linux.resources.unified needs a cgroup v2 host; this one is v1".into(),
            ));
        }
        Ok(())
    }
}

/// memory.limit_in_bytes, memory.memsw.limit_in_bytes (memory + swap), soft limit. The kernel
/// keeps memsw >= limit at every step, so the order depends on the current limit (as runc).
fn v1_memory(dir: &Path, mem: &LinuxMemory) -> Result<()> {
    let limit = mem.limit().filter(|l| *l != 0);
    let mut swap = mem.swap().filter(|s| *s != 0);
    for (name, v) in [
        ("limit", limit),
        ("swap", swap),
        ("reservation", mem.reservation()),
    ] {
        if v.is_some_and(|v| v < -1) {
            return Err(Error::InvalidSpec(format!(
                "linux.resources.memory.{name} {v:?} is negative"
            )));
        }
    }
    let memsw = "memory.memsw.limit_in_bytes";
    let has_memsw = dir.join(memsw).exists();
    if swap.is_some() && !has_memsw {
        tracing::warn!("swap accounting is off in this kernel: memory.swap not applied");
        swap = None;
    }
    if limit == Some(-1) && swap.is_none() && has_memsw {
        swap = Some(-1);
    }
    match (limit, swap) {
        (Some(l), Some(s)) => {
            if l != -1 && s != -1 && s < l {
                return Err(Error::InvalidSpec(format!(
                    "linux.resources.memory.swap {s} is below the memory limit {l} (it is memory + swap)"
                )));
            }
            let current = read_file(dir, "memory.limit_in_bytes")?;
            let current: u64 = current.trim().parse().unwrap_or(u64::MAX);
            if s == -1 || current < s as u64 {
                write_file(dir, memsw, &s.to_string())?;
                write_file(dir, "memory.limit_in_bytes", &l.to_string())?;
            } else {
                write_file(dir, "memory.limit_in_bytes", &l.to_string())?;
                write_file(dir, memsw, &s.to_string())?;
            }
        }
        (Some(l), None) => write_file(dir, "memory.limit_in_bytes", &l.to_string())?,
        (None, Some(s)) => write_file(dir, memsw, &s.to_string())?,
        (None, None) => {}
    }
    if let Some(r) = mem.reservation().filter(|r| *r != 0) {
        write_file(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    Ok(())
}

/// A device rule as a line for v1's devices.allow / devices.deny.
pub fn v1_device_rule(rule: &LinuxDeviceCgroup) -> Result<(&'static str, String)> {
    let file = if rule.allow() {
        "devices.allow"
    } else {
        "devices.deny"
    };
    let access = rule
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    if !access.chars().all(|c| "rwm".contains(c)) {
        return Err(Error::InvalidSpec(format!(
            "device rule access {access:?} is not a subset of \"rwm\""
        )));
    }
    let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        // The kernel reads "a" as every device and every access, whatever follows.
        LinuxDeviceType::A => return Ok((file, "a".into())),
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => {
            return Err(Error::InvalidSpec(
                "device rules cannot name FIFOs (type \"p\")".into(),
            ));
        }
    };
    let num = |n: Option<i64>| match n {
        None | Some(-1) => Ok("*".to_string()),
        Some(n) if n >= 0 => Ok(n.to_string()),
        Some(n) => Err(Error::InvalidSpec(format!("device number {n} is negative"))),
    };
    Ok((
        file,
        format!(
            "{typ} {}:{} {access}",
            num(rule.major())?,
            num(rule.minor())?
        ),
    ))
}

/// cgroup v2's cpu.weight (1..10000) for v1 cpu.shares (2..262144), as runc and crun.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// memory.swap.max for the spec's memory.swap, which is memory + swap (v1's meaning), as runc
/// converts it. None: leave it.
pub fn v2_swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>> {
    let limit = limit.unwrap_or(0);
    let swap = swap.unwrap_or(0);
    if limit == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    match swap {
        0 => Ok(None),
        -1 => Ok(Some("max".into())),
        s if s < -1 => Err(Error::InvalidSpec(format!(
            "linux.resources.memory.swap {s} is negative"
        ))),
        s => {
            if limit <= 0 {
                return Err(Error::InvalidSpec(
                    "linux.resources.memory.swap needs a memory limit".into(),
                ));
            }
            if s < limit {
                return Err(Error::InvalidSpec(format!(
                    "linux.resources.memory.swap {s} is below the memory limit {limit} (it is memory + swap)"
                )));
            }
            Ok(Some((s - limit).to_string()))
        }
    }
}

fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".into()
    }
}

/// `2MB`, `1GB`, `64KB`: digits and a unit, safe in a file name.
fn hugepage_size(size: &str) -> Result<&str> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !unit.ends_with('B') {
        return Err(Error::InvalidSpec(format!(
            "hugepage size {size:?} is not like \"2MB\""
        )));
    }
    Ok(size)
}

impl V2Cgroup {
    fn apply(&self, r: &LinuxResources) -> Result<()> {
        let dir = self.dir.as_path();
        if let Some(cpu) = r.cpu() {
            if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
                write_file(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
            }
            let quota = cpu.quota().unwrap_or(0);
            let period = cpu.period().unwrap_or(0);
            if quota != 0 || period != 0 {
                let mut max = if quota > 0 {
                    quota.to_string()
                } else {
                    "max".to_string()
                };
                if period != 0 {
                    max = format!("{max} {period}");
                }
                write_file(dir, "cpu.max", &max)?;
            }
            if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
                write_file(dir, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
                write_file(dir, "cpuset.mems", mems)?;
            }
        }
        if let Some(mem) = r.memory() {
            let limit = mem.limit().filter(|l| *l != 0);
            match limit {
                Some(l) if l < -1 => {
                    return Err(Error::InvalidSpec(format!(
                        "linux.resources.memory.limit {l} is negative"
                    )));
                }
                Some(l) => write_file(dir, "memory.max", &limit_value(l))?,
                None => {}
            }
            if let Some(swap) = v2_swap_max(limit, mem.swap())? {
                write_file(dir, "memory.swap.max", &swap)?;
            }
            if let Some(low) = mem.reservation().filter(|r| *r != 0) {
                write_file(dir, "memory.low", &limit_value(low))?;
            }
        }
        for l in r.hugepage_limits().iter().flatten() {
            let size = hugepage_size(l.page_size())?;
            write_file(dir, &format!("hugetlb.{size}.max"), &limit_value(l.limit()))?;
            let rsvd = format!("hugetlb.{size}.rsvd.max");
            if dir.join(&rsvd).exists() {
                write_file(dir, &rsvd, &limit_value(l.limit()))?;
            }
        }
        if let Some(pids) = r.pids().filter(|p| p.limit() != 0) {
            write_file(dir, "pids.max", &pids_max(pids.limit()))?;
        }
        if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            tracing::info!(
                "cgroup v2: device rules need an eBPF program, not supported yet: not enforced"
            );
        }
        // Verbatim, last: they override what the typed fields wrote (as runc).
        if let Some(unified) = r.unified() {
            let mut keys: Vec<&String> = unified.keys().collect();
            keys.sort();
            for key in keys {
                if key.is_empty()
                    || key.contains('/')
                    || !key.contains('.')
                    || key.starts_with('.')
                    || key.starts_with("cgroup.")
                {
                    return Err(Error::InvalidSpec(format!(
                        "linux.resources.unified key {key:?} is not a controller file"
                    )));
                }
                write_file(dir, key, &unified[key])?;
            }
        }
        Ok(())
    }
}

/// -1 (or any negative) is "max" in v2 files.
fn limit_value(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// The value of `key` in a flat-keyed file (`key value` lines).
fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

fn prefix(e: Error, what: &str) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: format!("{what}: {context}"),
            source,
        },
        e => e,
    }
}

/// Write a cgroup file that must exist (cgroupfs creates them; a missing one is a missing
/// controller).
fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
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

fn read_file(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(io_err(|| format!("reading {}", path.display())))
}

fn mkdir(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(io_err(|| format!("creating {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

fn mkdir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(|| format!("creating {}", dir.display())))
}

/// v1 cpuset: give every level from `root` down to `dir` its parent's `file` when it is empty.
fn copy_down_if_empty(root: &Path, dir: &Path, file: &str) -> Result<()> {
    let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
    let mut parent_value = read_file(root, file)?;
    let mut current = root.to_path_buf();
    for c in rel.components() {
        current.push(c);
        let value = read_file(&current, file)?;
        if value.trim().is_empty() {
            write_file(&current, file, parent_value.trim())?;
        } else {
            parent_value = value;
        }
    }
    Ok(())
}

/// v2: let `dir`'s children use every controller `dir` has. Failures only warn: writing the
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

/// The container's cgroup while the container is being created: removed on drop unless kept.
#[derive(Debug)]
pub struct CreatedCgroup {
    cgroup: Option<Cgroup>,
}

impl CreatedCgroup {
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Apply the container's `linux.resources`.
    pub fn apply(&self, c: &Container) -> super::Result<()> {
        if let (Some(cg), Some(r)) = (
            &self.cgroup,
            c.spec.linux().as_ref().and_then(|l| l.resources().as_ref()),
        ) {
            cg.apply(r)
                .map_err(|e| prefix(e, "applying linux.resources"))?;
        }
        Ok(())
    }

    /// The container exists: its cgroup outlives this guard (the shim removes it at the end).
    pub fn keep(mut self) -> Option<Cgroup> {
        self.cgroup.take()
    }
}

impl Drop for CreatedCgroup {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.destroy(DESTROY_TIMEOUT)
        {
            tracing::warn!("removing the cgroup of a container not created: {e}");
        }
    }
}

/// Create the cgroup `linux.cgroupsPath` names (None: the spec names none, the container runs
/// in the shim's cgroups).
pub fn setup(c: &Container) -> super::Result<CreatedCgroup> {
    let Some(path) = c
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
    else {
        tracing::info!("no linux.cgroupsPath: the container gets no cgroup of its own");
        return Ok(CreatedCgroup { cgroup: None });
    };
    let mut cg = Cgroup::for_host(path)?;
    if let Err(e) = cg.create() {
        // Whatever part was made goes again (the leaves only: parents may be shared).
        let _ = cg.remove();
        return Err(e.into());
    }
    Ok(CreatedCgroup { cgroup: Some(cg) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxResources;

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    /// A directory laid out like a cgroupfs directory: `files` with their contents.
    fn fixture(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, value) in files {
            fs::write(dir.join(name), value).unwrap();
        }
    }

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap()
    }

    const V1_FILES: &[(&str, &str)] = &[
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

    /// v1 hierarchies under `root`, each with every file, and the container's leaf `path`.
    fn v1_fixture(root: &Path, path: &str) -> Cgroup {
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
        Cgroup::v1(&mounts, None, Path::new(path)).unwrap()
    }

    const V2_FILES: &[(&str, &str)] = &[
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

    fn v2_fixture(root: &Path, path: &str) -> Cgroup {
        fixture(root, V2_FILES);
        let mut dir = root.to_path_buf();
        for c in Path::new(path).components().skip(1) {
            dir.push(c);
            fixture(&dir, V2_FILES);
        }
        Cgroup::v2(root, Path::new(path)).unwrap()
    }

    #[test]
    fn layouts() {
        assert_eq!(Layout::classify(true, false, false), Layout::Unified);
        assert_eq!(Layout::classify(false, true, true), Layout::Hybrid);
        assert_eq!(Layout::classify(false, true, false), Layout::Legacy);
        assert_eq!(Layout::classify(false, false, false), Layout::Legacy);
        // Whatever this host has, detection works on it.
        if Path::new(CGROUP_ROOT).exists() {
            host_layout().unwrap();
        }
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
        let mounts = parse_v1_mounts(info);
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
    fn cgroups_path_must_be_absolute_and_plain() {
        assert_eq!(
            relative_cgroup_path(Path::new("/berth/c1")).unwrap(),
            PathBuf::from("berth/c1")
        );
        assert_eq!(
            relative_cgroup_path(Path::new("//kubepods/./pod/c/")).unwrap(),
            PathBuf::from("kubepods/pod/c")
        );
        for bad in ["berth/c1", "/berth/../x", "/", ""] {
            let err = relative_cgroup_path(Path::new(bad)).unwrap_err();
            assert!(matches!(err, Error::InvalidSpec(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn shares_convert_to_weight_as_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // Out of the kernel's range: clamped, never underflowing.
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1 << 40), 10_000);
    }

    #[test]
    fn swap_converts_to_v2_swap_max() {
        assert_eq!(
            v2_swap_max(Some(100), Some(300)).unwrap().as_deref(),
            Some("200")
        );
        assert_eq!(
            v2_swap_max(Some(100), Some(100)).unwrap().as_deref(),
            Some("0")
        );
        assert_eq!(
            v2_swap_max(Some(100), Some(-1)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(v2_swap_max(Some(-1), None).unwrap().as_deref(), Some("max"));
        assert_eq!(v2_swap_max(Some(100), None).unwrap(), None);
        assert!(v2_swap_max(Some(100), Some(50)).is_err());
        assert!(v2_swap_max(None, Some(50)).is_err());
    }

    #[test]
    fn device_rules_in_v1_format() {
        let rule = |json: &str| -> LinuxDeviceCgroup { serde_json::from_str(json).unwrap() };
        let line = |json: &str| v1_device_rule(&rule(json)).unwrap();
        assert_eq!(
            line(r#"{"allow": false, "access": "rwm"}"#),
            ("devices.deny", "a".to_string())
        );
        assert_eq!(
            line(r#"{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}"#),
            ("devices.allow", "c 1:3 rwm".to_string())
        );
        assert_eq!(
            line(r#"{"allow": true, "type": "c", "access": "m"}"#),
            ("devices.allow", "c *:* m".to_string())
        );
        assert_eq!(
            line(r#"{"allow": true, "type": "b", "major": 8, "access": "r"}"#),
            ("devices.allow", "b 8:* r".to_string())
        );
        assert_eq!(
            line(r#"{"allow": true, "type": "c", "major": 136}"#),
            ("devices.allow", "c 136:* rwm".to_string())
        );
        assert!(v1_device_rule(&rule(r#"{"allow": true, "type": "c", "access": "x"}"#)).is_err());
        assert!(v1_device_rule(&rule(r#"{"allow": true, "type": "p"}"#)).is_err());
        assert!(v1_device_rule(&rule(r#"{"allow": true, "type": "c", "major": -5}"#)).is_err());
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
    fn v1_memory_order_keeps_memsw_above_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        fixture(dir, V1_FILES);
        // Raising both from 20 MiB (memsw goes first on a real kernel).
        fs::write(dir.join("memory.limit_in_bytes"), "20971520").unwrap();
        fs::write(dir.join("memory.memsw.limit_in_bytes"), "20971520").unwrap();
        let mem: LinuxMemory =
            serde_json::from_str(r#"{"limit": 41943040, "swap": 41943040}"#).unwrap();
        v1_memory(dir, &mem).unwrap();
        assert_eq!(read(dir, "memory.limit_in_bytes"), "41943040");
        assert_eq!(read(dir, "memory.memsw.limit_in_bytes"), "41943040");
        // Without swap accounting, swap is skipped (with a warning), the limit still applies.
        fs::remove_file(dir.join("memory.memsw.limit_in_bytes")).unwrap();
        let mem: LinuxMemory =
            serde_json::from_str(r#"{"limit": 10485760, "swap": 20971520}"#).unwrap();
        v1_memory(dir, &mem).unwrap();
        assert_eq!(read(dir, "memory.limit_in_bytes"), "10485760");
        assert!(!dir.join("memory.memsw.limit_in_bytes").exists());
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
        let cg = Cgroup::v1(&mounts, None, Path::new("/c")).unwrap();
        cg.apply(&resources(
            r#"{"cpu": {"shares": 512}, "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                "memory": {"limit": 1048576}}"#,
        ))
        .unwrap();
        assert_eq!(read(&root.join("c"), "memory.limit_in_bytes"), "1048576");
    }

    #[test]
    fn v2_create_enables_controllers_in_parents() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("cg");
        fixture(&root, V2_FILES);
        let mut cg = Cgroup::v2(&root, Path::new("/kubepods/pod1/c1")).unwrap();
        cg.create().unwrap();
        assert!(root.join("kubepods/pod1/c1").is_dir());
        // A fixture file is overwritten by each write: the last controller is what is left.
        assert_eq!(read(&root, "cgroup.subtree_control"), "+pids");
        // The new directories have no files in a fixture: nothing more is enabled below.
        assert_eq!(cg.dirs(), vec![root.join("kubepods/pod1/c1").as_path()]);
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
                "devices": [{"allow": false, "access": "rwm"}],
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
}
