//! The container's devices: the requested host devices, and the device cgroup rules (deny
//! all, allow containerd's defaults and the requested devices; allow all for a privileged
//! container, as containerd's `WithAllDevicesAllowed`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use oci_spec::runtime::{
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;

/// The devices every container may use (and create with mknod), as containerd.
const DEFAULT_RULES: &[(LinuxDeviceType, Option<i64>, Option<i64>, &str)] = &[
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"), // null
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"), // zero
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"), // full
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"), // tty
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"), // random
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"), // urandom
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"), // ptmx
    (LinuxDeviceType::C, Some(136), None, "rwm"),  // pts
    (LinuxDeviceType::C, None, None, "m"),         // mknod of any char device
    (LinuxDeviceType::B, None, None, "m"),         // and block device
    (LinuxDeviceType::C, Some(10), Some(200), "rwm"), // tun
];

/// An allow rule.
fn allow(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, SpecError> {
    let mut rule = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .access(access);
    if let Some(major) = major {
        rule = rule.major(major);
    }
    if let Some(minor) = minor {
        rule = rule.minor(minor);
    }
    Ok(rule.build()?)
}

/// `linux.devices` from the request, and `linux.resources.devices`: deny all, then allow
/// containerd's defaults and the requested devices; allow all when privileged.
pub fn with_devices(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let privileged = req.sec.privileged;
    let mut rules = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(privileged)
            .access("rwm")
            .build()?,
    ];
    if !privileged {
        for (typ, major, minor, access) in DEFAULT_RULES {
            rules.push(allow(*typ, *major, *minor, access)?);
        }
    }
    let mut devices = Vec::new();
    for d in &req.config.devices {
        let meta = std::fs::metadata(&d.host_path)
            .map_err(|e| SpecError::Invalid(format!("device {}: {e}", d.host_path)))?;
        let typ = if meta.file_type().is_char_device() {
            LinuxDeviceType::C
        } else if meta.file_type().is_block_device() {
            LinuxDeviceType::B
        } else {
            return Err(SpecError::Invalid(format!(
                "{} is not a device",
                d.host_path
            )));
        };
        let access = if d.permissions.is_empty() {
            "rwm"
        } else if d.permissions.chars().all(|c| "rwm".contains(c)) {
            d.permissions.as_str()
        } else {
            return Err(SpecError::Invalid(format!(
                "device permissions {:?} are not a subset of \"rwm\"",
                d.permissions
            )));
        };
        let rdev = meta.rdev();
        let number = |n: u64| {
            i64::try_from(n).map_err(|_| {
                SpecError::Invalid(format!("device {}: number {n} out of range", d.host_path))
            })
        };
        let major = number(nix::sys::stat::major(rdev))?;
        let minor = number(nix::sys::stat::minor(rdev))?;
        let path = if d.container_path.is_empty() {
            &d.host_path
        } else {
            &d.container_path
        };
        devices.push(
            LinuxDeviceBuilder::default()
                .path(path)
                .typ(typ)
                .major(major)
                .minor(minor)
                .file_mode(meta.mode() & 0o777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build()?,
        );
        if !privileged {
            rules.push(allow(typ, Some(major), Some(minor), access)?);
        }
    }
    draft.linux.set_devices(Some(devices));
    draft.resources.set_devices(Some(rules));
    Ok(())
}
