//! The rest of `linux`: the masked and read-only paths of /proc and /sys, the pod's sysctls
//! and the container's cgroup path.

use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;

/// containerd's default masked paths.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The request's masked and read-only paths, else containerd's; none for a privileged
/// container.
pub fn with_masked_paths(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let sec = &req.sec;
    let or_default = |asked: &[String], default: &[&str]| -> Vec<String> {
        if sec.privileged {
            Vec::new()
        } else if asked.is_empty() {
            default.iter().map(|s| s.to_string()).collect()
        } else {
            asked.to_vec()
        }
    };
    draft
        .linux
        .set_masked_paths(Some(or_default(&sec.masked_paths, DEFAULT_MASKED_PATHS)));
    draft.linux.set_readonly_paths(Some(or_default(
        &sec.readonly_paths,
        DEFAULT_READONLY_PATHS,
    )));
    Ok(())
}

/// The pod's sysctls (every container of the pod gets them, as containerd).
pub fn with_sysctls(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let sysctls = req
        .sandbox
        .config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone())
        .unwrap_or_default();
    if !sysctls.is_empty() {
        draft.linux.set_sysctl(Some(sysctls));
    }
    Ok(())
}

/// cgroupfs: `<pod's cgroup parent, else /berth>/<container id>`; systemd:
/// `<pod's slice, else berth.slice>:berth:<container id>` (see `crate::cgroup_driver`).
pub fn with_cgroups_path(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let parent = req
        .sandbox
        .config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.as_str())
        .unwrap_or("");
    let path = crate::cgroup_driver::container_cgroups_path(
        req.input.systemd_cgroup,
        parent,
        req.input.id,
    );
    // A parent the shim could not use (a slice name systemd refuses, `..`): refused here.
    berth_cgroups::relative_cgroup_path(std::path::Path::new(&path))
        .map_err(|e| SpecError::Invalid(format!("cgroup_parent {parent:?}: {e}")))?;
    draft.linux.set_cgroups_path(Some(path.into()));
    Ok(())
}
