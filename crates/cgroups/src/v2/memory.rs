//! v2 `memory`: `memory.max`, `memory.swap.max` (from the spec's memory + swap), `memory.low`,
//! the memory readings and the OOM-kill counter.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::common::{flat_keyed, limit_value, read_or_empty, read_u64, write_file};
use crate::controller::Controller;
use crate::error::{Error, Result};
use crate::stats::Stats;

pub struct Memory;

impl Controller for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.memory().is_some()
    }

    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(mem) = r.memory() else {
            return Ok(());
        };
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
        Ok(())
    }

    fn stats(&self, dir: &Path, stats: &mut Stats) {
        let stat = read_or_empty(dir, "memory.stat");
        let usage = read_u64(dir, "memory.current");
        let inactive = flat_keyed(&stat, "inactive_file").unwrap_or(0);
        stats.memory_usage = usage;
        stats.memory_working_set = usage.saturating_sub(inactive);
        stats.memory_rss = flat_keyed(&stat, "anon").unwrap_or(0);
        stats.memory_limit = read_u64(dir, "memory.max");
        stats.page_faults = flat_keyed(&stat, "pgfault").unwrap_or(0);
        stats.major_page_faults = flat_keyed(&stat, "pgmajfault").unwrap_or(0);
        stats.swap_usage = read_u64(dir, "memory.swap.current");
    }
}

/// The OOM-kill counter (`memory.events`); None on kernels without it.
pub(super) fn oom_kill_count(dir: &Path) -> Result<Option<u64>> {
    crate::common::oom_kill_count(dir, "memory.events")
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
