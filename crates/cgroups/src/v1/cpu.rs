//! v1 `cpu`: CFS shares, period and quota (`linux.resources.cpu`).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::common::write_file;
use crate::controller::Controller;
use crate::error::Result;

pub struct Cpu;

impl Controller for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn what(&self) -> &'static str {
        "cpu shares/quota"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.cpu().as_ref().is_some_and(|cpu| {
            cpu.shares().is_some_and(|s| s > 0)
                || cpu.period().is_some_and(|p| p > 0)
                || cpu.quota().is_some_and(|q| q != 0)
        })
    }

    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(cpu) = r.cpu() else {
            return Ok(());
        };
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
        Ok(())
    }
}
