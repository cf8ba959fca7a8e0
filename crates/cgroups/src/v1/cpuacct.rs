//! v1 `cpuacct`: the CPU time the cgroup used (no resources to apply).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::common::read_u64;
use crate::controller::Controller;
use crate::error::Result;
use crate::stats::Stats;

pub struct Cpuacct;

impl Controller for Cpuacct {
    fn name(&self) -> &'static str {
        "cpuacct"
    }

    fn needs(&self, _: &LinuxResources) -> bool {
        false
    }

    fn apply(&self, _: &Path, _: &LinuxResources) -> Result<()> {
        Ok(())
    }

    fn stats(&self, dir: &Path, stats: &mut Stats) {
        stats.cpu_usage_ns = read_u64(dir, "cpuacct.usage");
    }
}
