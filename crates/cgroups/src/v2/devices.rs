//! v2 device rules: enforced by an eBPF program attached to the cgroup, which berth does not
//! load yet. The rules are logged and skipped.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::controller::Controller;
use crate::error::Result;

pub struct Devices;

impl Controller for Devices {
    fn name(&self) -> &'static str {
        "devices"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.devices().as_ref().is_some_and(|d| !d.is_empty())
    }

    fn apply(&self, _: &Path, _: &LinuxResources) -> Result<()> {
        tracing::info!(
            "cgroup v2: device rules need an eBPF program, not supported yet: not enforced"
        );
        Ok(())
    }
}
