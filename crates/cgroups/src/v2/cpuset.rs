//! v2 `cpuset`: the CPUs and memory nodes (`linux.resources.cpu.cpus` / `mems`).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::common::write_file;
use crate::controller::Controller;
use crate::error::Result;

pub struct Cpuset;

impl Controller for Cpuset {
    fn name(&self) -> &'static str {
        "cpuset"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.cpu().is_some()
    }

    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(cpu) = r.cpu() else {
            return Ok(());
        };
        if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            write_file(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            write_file(dir, "cpuset.mems", mems)?;
        }
        Ok(())
    }
}
