//! v2 `cpu`: the weight (from v1 shares) and `cpu.max` (quota and period), and the CPU time
//! used.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::common::{flat_keyed, read_or_empty, write_file};
use crate::controller::Controller;
use crate::error::Result;
use crate::stats::Stats;

pub struct Cpu;

impl Controller for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.cpu().is_some()
    }

    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(cpu) = r.cpu() else {
            return Ok(());
        };
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
        Ok(())
    }

    fn stats(&self, dir: &Path, stats: &mut Stats) {
        let cpu = read_or_empty(dir, "cpu.stat");
        stats.cpu_usage_ns = flat_keyed(&cpu, "usage_usec").unwrap_or(0) * 1000;
    }
}

/// cgroup v2's cpu.weight (1..10000) for v1 cpu.shares (2..262144), as runc and crun.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
