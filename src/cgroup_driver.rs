//! The cgroup driver (`[cgroup] driver`): who owns container cgroups on this node.
//!
//! - `cgroupfs`: berth-shim creates `<cgroup_parent or /berth>/<id>` and writes its
//!   controllers; nothing else is told.
//! - `systemd`: the container's `linux.cgroupsPath` is `<pod slice>:berth:<id>`; berth-shim
//!   still makes and joins that cgroup (`/…/<pod slice>/berth-<id>.scope`) and writes the
//!   resources, then berthd makes it the transient scope unit `berth-<id>.scope` in the pod's
//!   slice over D-Bus (`StartTransientUnit` with the init's pid, `Delegate=yes` and the
//!   resources as unit properties, so systemd keeps the same values when it re-realizes the
//!   unit), updates it with `SetUnitProperties` and stops it when the container is removed.
//!
//! The driver is one per node, set once at start-up ([`init`]) from the configuration.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_cgroups::systemd::{self, SystemdPath, dbus::Systemd};
use oci_spec::runtime::LinuxResources;

use crate::config::CgroupDriver;

static DRIVER: OnceLock<Driver> = OnceLock::new();

struct Driver {
    kind: CgroupDriver,
    systemd: Systemd,
}

/// Set the node's driver (once, at start-up). The systemd driver needs systemd running the
/// machine: refused otherwise, so a misconfigured node fails at start, not at its first pod.
pub fn init(kind: CgroupDriver) -> Result<(), String> {
    if kind == CgroupDriver::Systemd && !Systemd::booted() {
        return Err(
            "[cgroup] driver = \"systemd\", but systemd does not run this machine (no /run/systemd/system)"
                .into(),
        );
    }
    let _ = DRIVER.set(Driver {
        kind,
        systemd: Systemd::new(),
    });
    Ok(())
}

/// The node's driver (cgroupfs until [`init`] says otherwise).
pub fn kind() -> CgroupDriver {
    DRIVER.get().map_or(CgroupDriver::Cgroupfs, |d| d.kind)
}

/// The cgroupfs parent of containers whose pod names none (crictl's, critest's pods; kubelet
/// always names one). berthd removes it at shutdown when it is empty.
pub const DEFAULT_PARENT: &str = "/berth";

/// `linux.cgroupsPath` for container `id` of a pod whose cgroup parent is `parent`.
pub fn container_cgroups_path(systemd_driver: bool, parent: &str, id: &str) -> String {
    if systemd_driver && let Some(p) = systemd::container_cgroups_path(parent, id) {
        return p;
    }
    let parent = if parent.is_empty() {
        DEFAULT_PARENT
    } else {
        parent
    };
    format!("{}/{}", parent.trim_end_matches('/'), id)
}

/// A pod's cgroup (where its containers' cgroups are) as a cgroupfs path, for readings.
pub fn pod_cgroup_path(parent: &str) -> Option<PathBuf> {
    if kind() == CgroupDriver::Systemd
        && let Some(dir) = systemd::parent_dir(parent)
    {
        return dir.ok();
    }
    Some(PathBuf::from(parent))
}

fn unified() -> bool {
    matches!(
        berth_cgroups::host_layout(),
        Ok(berth_cgroups::Layout::Unified)
    )
}

/// A container was created with init `pid` in the cgroup of `cgroups_path`: under the systemd
/// driver, make it its scope unit, then write the resources again through cgroupfs (systemd
/// rounds a CPU quota to 10 ms; the spec's exact values win, as runc writes both).
pub async fn container_created(
    cgroups_path: &str,
    pid: u32,
    resources: Option<&LinuxResources>,
) -> Result<(), berth_cgroups::Error> {
    let Some((d, path)) = systemd_unit(cgroups_path) else {
        return Ok(());
    };
    d.systemd
        .start_scope(&path, pid, resources, unified())
        .await?;
    if let Some(r) = resources.cloned() {
        let p = PathBuf::from(cgroups_path);
        tokio::task::spawn_blocking(move || berth_cgroups::Cgroup::for_host(&p)?.apply(&r))
            .await
            .map_err(|e| berth_cgroups::Error::Systemd(format!("applying resources: {e}")))??;
    }
    tracing::debug!(unit = %path.unit(), slice = %path.slice(), "container scope started");
    Ok(())
}

/// New resources for a running container: its unit's properties (the shim writes cgroupfs
/// afterwards).
pub async fn container_updated(
    cgroups_path: &str,
    resources: &LinuxResources,
) -> Result<(), berth_cgroups::Error> {
    let Some((d, path)) = systemd_unit(cgroups_path) else {
        return Ok(());
    };
    d.systemd.update(&path.unit(), resources, unified()).await
}

/// The container is gone: stop its unit (one whose processes all ended is already collected).
pub async fn container_removed(cgroups_path: &str) -> Result<(), berth_cgroups::Error> {
    let Some((d, path)) = systemd_unit(cgroups_path) else {
        return Ok(());
    };
    d.systemd.stop_unit(&path.unit()).await
}

/// The driver and the unit, when `cgroups_path` is a systemd one and the driver is systemd.
fn systemd_unit(cgroups_path: &str) -> Option<(&'static Driver, SystemdPath)> {
    let d = DRIVER.get().filter(|d| d.kind == CgroupDriver::Systemd)?;
    Some((d, SystemdPath::parse(cgroups_path)?))
}

/// The `linux.cgroupsPath` in a bundle's config.json.
pub fn bundle_cgroups_path(bundle: &Path) -> Option<String> {
    let b = std::fs::read(bundle.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
    v.pointer("/linux/cgroupsPath")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_per_driver() {
        assert_eq!(container_cgroups_path(false, "", "c1"), "/berth/c1");
        assert_eq!(
            container_cgroups_path(false, "/kubepods/burstable/podu1/", "c1"),
            "/kubepods/burstable/podu1/c1"
        );
        // cgroupfs keeps a slice-named parent a plain path, as it always did.
        assert_eq!(
            container_cgroups_path(false, "/test.slice", "c1"),
            "/test.slice/c1"
        );
        assert_eq!(
            container_cgroups_path(true, "kubepods-burstable-podu1.slice", "c1"),
            "kubepods-burstable-podu1.slice:berth:c1"
        );
        assert_eq!(
            container_cgroups_path(true, "", "c1"),
            "berth.slice:berth:c1"
        );
        // Not a slice: used as a cgroupfs path even under the systemd driver (containerd).
        assert_eq!(
            container_cgroups_path(true, "/custom/parent", "c1"),
            "/custom/parent/c1"
        );
    }
}
