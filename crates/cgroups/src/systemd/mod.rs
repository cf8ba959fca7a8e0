//! The systemd cgroup driver's naming and properties (runc's and containerd's conventions).
//!
//! With `[cgroup] driver = "systemd"` a container's `linux.cgroupsPath` is
//! `<slice>:<prefix>:<name>` (e.g. `kubepods-burstable-pod<uid>.slice:berth:<id>`): the
//! container is the transient scope unit `<prefix>-<name>.scope` in that slice, whose cgroup
//! is the slice's expanded path plus the scope (`/kubepods.slice/kubepods-burstable.slice/
//! kubepods-burstable-pod<uid>.slice/berth-<id>.scope`). Everything here is pure: the path
//! a cgroupfs reader or writer uses ([`cgroups_path_dir`], what [`crate::relative_cgroup_path`]
//! answers for a systemd path), the unit's name, and the unit properties for
//! `linux.resources` ([`resource_properties`]). berthd starts, updates and stops the units over
//! D-Bus ([`dbus`], feature `dbus`); berth-shim still creates and joins the same cgroup
//! directory itself, so a container is set up the same way under either driver.

#[cfg(feature = "dbus")]
pub mod dbus;

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::v2::cpu::shares_to_weight;
use crate::v2::memory::v2_swap_max;

/// The slice berth puts containers in under the systemd driver when the pod names none.
pub const DEFAULT_SLICE: &str = "berth.slice";
/// The prefix of berth's scope units: `berth-<container id>.scope`.
pub const SCOPE_PREFIX: &str = "berth";

/// A `<slice>:<prefix>:<name>` cgroups path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdPath {
    pub slice: String,
    pub prefix: String,
    pub name: String,
}

impl SystemdPath {
    /// Parse `<slice>:<prefix>:<name>`; None for anything else (a cgroupfs path starts with
    /// `/`, so the two never meet).
    pub fn parse(path: &str) -> Option<SystemdPath> {
        if path.starts_with('/') {
            return None;
        }
        let mut parts = path.split(':');
        let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(SystemdPath {
            slice: slice.to_string(),
            prefix: prefix.to_string(),
            name: name.to_string(),
        })
    }

    /// The container's unit: `<prefix>-<name>.scope` (a name that is itself a slice names
    /// that slice, as runc).
    pub fn unit(&self) -> String {
        if self.name.ends_with(".slice") {
            return self.name.clone();
        }
        if self.prefix.is_empty() {
            format!("{}.scope", self.name)
        } else {
            format!("{}-{}.scope", self.prefix, self.name)
        }
    }

    /// The slice the unit goes in (an empty slice: berth's default).
    pub fn slice(&self) -> &str {
        if self.slice.is_empty() {
            DEFAULT_SLICE
        } else {
            &self.slice
        }
    }

    /// The cgroup directory, relative to the hierarchy root.
    pub fn dir(&self) -> Result<PathBuf> {
        let unit = self.unit();
        check_unit_name(&unit)?;
        let slice = expand_slice(self.slice())?;
        if unit.ends_with(".slice") {
            return expand_slice(&unit);
        }
        Ok(slice.join(unit))
    }
}

/// The cgroupfs directory (relative to a hierarchy root) of a `<slice>:<prefix>:<name>` path;
/// None if `path` is not one.
pub fn cgroups_path_dir(path: &str) -> Option<Result<PathBuf>> {
    SystemdPath::parse(path).map(|p| p.dir())
}

/// The cgroupsPath for container `id` in a pod whose `cgroup_parent` is `parent`, under the
/// systemd driver: the parent's last component when it is a slice (kubelet's
/// `kubepods-burstable-pod<uid>.slice`, critest's `/test.slice`), as containerd; None when
/// the parent is a plain cgroupfs path (it is then used as one).
pub fn container_cgroups_path(parent: &str, id: &str) -> Option<String> {
    let base = parent
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    if parent.is_empty() {
        return Some(format!("{DEFAULT_SLICE}:{SCOPE_PREFIX}:{id}"));
    }
    base.ends_with(".slice")
        .then(|| format!("{base}:{SCOPE_PREFIX}:{id}"))
}

/// The cgroupfs directory of a pod's `cgroup_parent` under the systemd driver: a slice name
/// expands (`kubepods-besteffort-pod<uid>.slice` → `/kubepods.slice/kubepods-besteffort.slice/
/// kubepods-besteffort-pod<uid>.slice`); None when it is not a slice.
pub fn parent_dir(parent: &str) -> Option<Result<PathBuf>> {
    let base = parent
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    base.ends_with(".slice").then(|| expand_slice(base))
}

/// A slice name as its cgroup path (`a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`), with
/// systemd's rules: ends in `.slice`, no `/`, no empty dash-separated component; `-.slice` is
/// the root.
pub fn expand_slice(slice: &str) -> Result<PathBuf> {
    let bad = || {
        Err(Error::InvalidSpec(format!(
            "invalid systemd slice name {slice:?}"
        )))
    };
    let Some(stem) = slice.strip_suffix(".slice") else {
        return bad();
    };
    if slice.contains('/') || stem.is_empty() {
        return bad();
    }
    check_unit_name(slice)?;
    if stem == "-" {
        return Ok(PathBuf::from("/"));
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for component in stem.split('-') {
        if component.is_empty() {
            return bad();
        }
        prefix.push_str(component);
        path.push(format!("{prefix}.slice"));
        prefix.push('-');
    }
    Ok(path)
}

/// systemd's unit name rules: at most 255 bytes of ASCII letters, digits and `:-_.\`, and
/// something before the type suffix.
fn check_unit_name(unit: &str) -> Result<()> {
    let ok = unit.len() <= 255
        && unit.rfind('.').is_some_and(|i| i > 0)
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":-_.\\".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "{unit:?} is not a valid systemd unit name"
        )))
    }
}

/// A unit property's value, as D-Bus carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Property {
    Bool(bool),
    U64(u64),
    Str(String),
    /// `ay`: a CPU or NUMA node bitmask.
    Bytes(Vec<u8>),
    /// `au`: process ids.
    U32s(Vec<u32>),
}

/// The properties a new container scope starts with: who it is, where, its process, systemd's
/// hands off its subtree (`Delegate`), and its resources.
pub fn scope_properties(
    path: &SystemdPath,
    pid: u32,
    resources: Option<&LinuxResources>,
    unified: bool,
) -> Result<Vec<(&'static str, Property)>> {
    let mut props = vec![
        (
            "Description",
            Property::Str(format!("berth container {}", path.name)),
        ),
        ("Slice", Property::Str(path.slice().to_string())),
        ("PIDs", Property::U32s(vec![pid])),
        ("Delegate", Property::Bool(true)),
        // As runc: no ordering against shutdown.target etc.; the container's life is berth's.
        ("DefaultDependencies", Property::Bool(false)),
        ("MemoryAccounting", Property::Bool(true)),
        ("CPUAccounting", Property::Bool(true)),
        ("TasksAccounting", Property::Bool(true)),
    ];
    if unified {
        props.push(("IOAccounting", Property::Bool(true)));
    }
    if let Some(r) = resources {
        props.extend(resource_properties(r, unified)?);
    }
    Ok(props)
}

/// `linux.resources` as unit properties, so that systemd writes the same values the shim
/// wrote when it (re)realizes the unit. Only what systemd manages: memory, CPU weight/shares,
/// quota, tasks, cpuset; the rest (hugetlb, devices, unified) stays with cgroupfs.
pub fn resource_properties(
    r: &LinuxResources,
    unified: bool,
) -> Result<Vec<(&'static str, Property)>> {
    let mut props = Vec::new();
    if let Some(mem) = r.memory() {
        let limit = mem.limit();
        if let Some(l) = limit {
            let name = if unified { "MemoryMax" } else { "MemoryLimit" };
            props.push((name, Property::U64(limit_value(l))));
        }
        if unified {
            if let Some(low) = mem.reservation() {
                props.push(("MemoryLow", Property::U64(limit_value(low))));
            }
            if let Some(swap) = v2_swap_max(limit, mem.swap())? {
                let v = if swap == "max" {
                    u64::MAX
                } else {
                    swap.parse().unwrap_or(u64::MAX)
                };
                props.push(("MemorySwapMax", Property::U64(v)));
            }
        }
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
            if unified {
                props.push(("CPUWeight", Property::U64(shares_to_weight(shares))));
            } else {
                props.push(("CPUShares", Property::U64(shares)));
            }
        }
        let (quota, period) = (cpu.quota().unwrap_or(0), cpu.period().unwrap_or(0));
        if quota != 0 || period != 0 {
            if period != 0 {
                props.push(("CPUQuotaPeriodUSec", Property::U64(period)));
            }
            props.push((
                "CPUQuotaPerSecUSec",
                Property::U64(quota_per_sec(quota, period)),
            ));
        }
        if unified {
            if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.trim().is_empty()) {
                props.push(("AllowedCPUs", Property::Bytes(bitmask(cpus)?)));
            }
            if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.trim().is_empty()) {
                props.push(("AllowedMemoryNodes", Property::Bytes(bitmask(mems)?)));
            }
        }
    }
    if let Some(pids) = r.pids() {
        let limit = pids.limit();
        props.push((
            "TasksMax",
            Property::U64(if limit > 0 { limit as u64 } else { u64::MAX }),
        ));
    }
    Ok(props)
}

/// A memory byte count: -1 (or any negative) is "no limit", systemd's `infinity`.
fn limit_value(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// `CPUQuotaPerSecUSec` for a CFS quota and period (period 0: the kernel's 100 ms), rounded up
/// to systemd's 10 ms granularity as runc does; no quota is `infinity`.
pub fn quota_per_sec(quota: i64, period: u64) -> u64 {
    let Ok(quota) = u64::try_from(quota) else {
        return u64::MAX;
    };
    if quota == 0 {
        return u64::MAX;
    }
    let period = if period == 0 { 100_000 } else { period };
    let per_sec = quota.saturating_mul(1_000_000) / period;
    per_sec.div_ceil(10_000).saturating_mul(10_000)
}

/// A cpuset list (`0-3,8`) as systemd's byte mask (byte i bit j = CPU 8i+j).
pub fn bitmask(list: &str) -> Result<Vec<u8>> {
    let bad = || Error::InvalidSpec(format!("invalid cpuset list {list:?}"));
    let mut mask: Vec<u8> = Vec::new();
    for part in list.trim().split(',') {
        let (lo, hi) = match part.trim().split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part.trim(), part.trim()),
        };
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        // Far beyond any machine; keeps a hostile list from allocating.
        if lo > hi || hi >= 8192 {
            return Err(bad());
        }
        for cpu in lo..=hi {
            if mask.len() <= cpu / 8 {
                mask.resize(cpu / 8 + 1, 0);
            }
            mask[cpu / 8] |= 1 << (cpu % 8);
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn slices_expand_as_systemd() {
        assert_eq!(expand_slice("-.slice").unwrap(), Path::new("/"));
        assert_eq!(
            expand_slice("test.slice").unwrap(),
            Path::new("/test.slice")
        );
        assert_eq!(
            expand_slice("kubepods-burstable-pod1234_5678.slice").unwrap(),
            Path::new(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice"
            )
        );
        for bad in [
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "a/b.slice",
            "a.scope",
            ".slice",
            "",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn systemd_paths_parse_and_name_their_scope() {
        let p = SystemdPath::parse("kubepods-besteffort-podabc.slice:berth:0123abcd").unwrap();
        assert_eq!(p.unit(), "berth-0123abcd.scope");
        assert_eq!(
            p.dir().unwrap(),
            Path::new(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podabc.slice/berth-0123abcd.scope"
            )
        );
        assert_eq!(
            SystemdPath::parse(":berth:x").unwrap().dir().unwrap(),
            Path::new("/berth.slice/berth-x.scope")
        );
        assert!(SystemdPath::parse("/kubepods/pod1/abc").is_none());
        assert!(SystemdPath::parse("a.slice:b").is_none());
        assert!(SystemdPath::parse("a.slice:b:c:d").is_none());
        // A unit name systemd refuses is refused here, before any D-Bus call.
        assert!(
            SystemdPath::parse("a.slice:berth:x y")
                .unwrap()
                .dir()
                .is_err()
        );
        assert!(
            SystemdPath::parse("a.slice:berth:../x")
                .unwrap()
                .dir()
                .is_err()
        );
    }

    #[test]
    fn the_container_path_follows_a_slice_parent_as_containerd() {
        assert_eq!(
            container_cgroups_path("kubepods-burstable-podu1.slice", "c1").as_deref(),
            Some("kubepods-burstable-podu1.slice:berth:c1")
        );
        assert_eq!(
            container_cgroups_path("/test.slice", "c1").as_deref(),
            Some("test.slice:berth:c1")
        );
        assert_eq!(
            container_cgroups_path("", "c1").as_deref(),
            Some("berth.slice:berth:c1")
        );
        assert_eq!(container_cgroups_path("/kubepods/pod1", "c1"), None);
        assert_eq!(
            parent_dir("kubepods-podu2.slice").unwrap().unwrap(),
            Path::new("/kubepods.slice/kubepods-podu2.slice")
        );
        assert!(parent_dir("/kubepods/pod1").is_none());
    }

    #[test]
    fn resources_become_unit_properties() {
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 104857600, "swap": 209715200, "reservation": 1048576},
            "cpu": {"shares": 512, "quota": 25000, "period": 100000, "cpus": "0-1,3"},
            "pids": {"limit": 64}
        }))
        .unwrap();
        let v2 = resource_properties(&r, true).unwrap();
        let get = |props: &[(&str, Property)], k: &str| {
            props.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        assert_eq!(get(&v2, "MemoryMax"), Some(Property::U64(104_857_600)));
        assert_eq!(get(&v2, "MemorySwapMax"), Some(Property::U64(104_857_600)));
        assert_eq!(get(&v2, "MemoryLow"), Some(Property::U64(1_048_576)));
        assert_eq!(get(&v2, "CPUWeight"), Some(Property::U64(20)));
        assert_eq!(get(&v2, "CPUQuotaPerSecUSec"), Some(Property::U64(250_000)));
        assert_eq!(get(&v2, "CPUQuotaPeriodUSec"), Some(Property::U64(100_000)));
        assert_eq!(get(&v2, "AllowedCPUs"), Some(Property::Bytes(vec![0b1011])));
        assert_eq!(get(&v2, "TasksMax"), Some(Property::U64(64)));
        let v1 = resource_properties(&r, false).unwrap();
        assert_eq!(get(&v1, "MemoryLimit"), Some(Property::U64(104_857_600)));
        assert_eq!(get(&v1, "CPUShares"), Some(Property::U64(512)));
        assert_eq!(get(&v1, "MemoryMax"), None);

        let unlimited: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": -1}, "cpu": {"quota": -1, "period": 100000}, "pids": {"limit": -1}
        }))
        .unwrap();
        let p = resource_properties(&unlimited, true).unwrap();
        assert_eq!(get(&p, "MemoryMax"), Some(Property::U64(u64::MAX)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Property::U64(u64::MAX)));
        assert_eq!(get(&p, "TasksMax"), Some(Property::U64(u64::MAX)));
    }

    #[test]
    fn quota_rounds_up_to_ten_milliseconds_and_masks_parse() {
        assert_eq!(quota_per_sec(12_345, 100_000), 130_000);
        assert_eq!(quota_per_sec(50_000, 0), 500_000);
        assert_eq!(quota_per_sec(0, 100_000), u64::MAX);
        assert_eq!(bitmask("0").unwrap(), vec![1]);
        assert_eq!(bitmask("9").unwrap(), vec![0, 2]);
        assert_eq!(bitmask("0-2, 8").unwrap(), vec![7, 1]);
        assert!(bitmask("3-1").is_err());
        assert!(bitmask("x").is_err());
        assert!(bitmask("0-100000").is_err());
    }
}
