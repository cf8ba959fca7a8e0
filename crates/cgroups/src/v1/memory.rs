//! v1 `memory`: the limit, memory + swap, the soft limit (`linux.resources.memory`), the
//! memory readings and the OOM-kill counter.

use std::path::Path;

use oci_spec::runtime::{LinuxMemory, LinuxResources};

use crate::common::{flat_keyed, read_file, read_or_empty, read_u64, write_file};
use crate::controller::Controller;
use crate::error::{Error, Result};
use crate::stats::Stats;

pub struct Memory;

impl Controller for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn what(&self) -> &'static str {
        "memory limits"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.memory().as_ref().is_some_and(|mem| {
            mem.limit().is_some() || mem.swap().is_some() || mem.reservation().is_some()
        })
    }

    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        match r.memory() {
            Some(mem) => apply_memory(dir, mem),
            None => Ok(()),
        }
    }

    fn stats(&self, dir: &Path, stats: &mut Stats) {
        let stat = read_or_empty(dir, "memory.stat");
        let usage = read_u64(dir, "memory.usage_in_bytes");
        let inactive = flat_keyed(&stat, "total_inactive_file").unwrap_or(0);
        let limit = read_u64(dir, "memory.limit_in_bytes");
        let memsw = read_u64(dir, "memory.memsw.usage_in_bytes");
        stats.memory_usage = usage;
        stats.memory_working_set = usage.saturating_sub(inactive);
        stats.memory_rss = flat_keyed(&stat, "total_rss").unwrap_or(0);
        // v1 says "unlimited" with a page-rounded i64::MAX.
        stats.memory_limit = if limit >= 1 << 62 { 0 } else { limit };
        stats.page_faults = flat_keyed(&stat, "total_pgfault").unwrap_or(0);
        stats.major_page_faults = flat_keyed(&stat, "total_pgmajfault").unwrap_or(0);
        stats.swap_usage = memsw.saturating_sub(usage);
    }
}

/// The OOM-kill counter (`memory.oom_control`); None on kernels without it.
pub(super) fn oom_kill_count(dir: &Path) -> Result<Option<u64>> {
    crate::common::oom_kill_count(dir, "memory.oom_control")
}

/// memory.limit_in_bytes, memory.memsw.limit_in_bytes (memory + swap), soft limit. The kernel
/// keeps memsw >= limit at every step, so the order depends on the current limit (as runc).
fn apply_memory(dir: &Path, mem: &LinuxMemory) -> Result<()> {
    let limit = mem.limit().filter(|l| *l != 0);
    let mut swap = mem.swap().filter(|s| *s != 0);
    for (name, v) in [
        ("limit", limit),
        ("swap", swap),
        ("reservation", mem.reservation()),
    ] {
        if v.is_some_and(|v| v < -1) {
            return Err(Error::InvalidSpec(format!(
                "linux.resources.memory.{name} {v:?} is negative"
            )));
        }
    }
    let memsw = "memory.memsw.limit_in_bytes";
    let has_memsw = dir.join(memsw).exists();
    if swap.is_some() && !has_memsw {
        tracing::warn!("swap accounting is off in this kernel: memory.swap not applied");
        swap = None;
    }
    if limit == Some(-1) && swap.is_none() && has_memsw {
        swap = Some(-1);
    }
    match (limit, swap) {
        (Some(l), Some(s)) => {
            if l != -1 && s != -1 && s < l {
                return Err(Error::InvalidSpec(format!(
                    "linux.resources.memory.swap {s} is below the memory limit {l} (it is memory + swap)"
                )));
            }
            let current = read_file(dir, "memory.limit_in_bytes")?;
            let current: u64 = current.trim().parse().unwrap_or(u64::MAX);
            if s == -1 || current < s as u64 {
                write_file(dir, memsw, &s.to_string())?;
                write_file(dir, "memory.limit_in_bytes", &l.to_string())?;
            } else {
                write_file(dir, "memory.limit_in_bytes", &l.to_string())?;
                write_file(dir, memsw, &s.to_string())?;
            }
        }
        (Some(l), None) => write_file(dir, "memory.limit_in_bytes", &l.to_string())?,
        (None, Some(s)) => write_file(dir, memsw, &s.to_string())?,
        (None, None) => {}
    }
    if let Some(r) = mem.reservation().filter(|r| *r != 0) {
        write_file(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::common::test_files::{V1_FILES, fixture, read};

    #[test]
    fn v1_memory_order_keeps_memsw_above_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        fixture(dir, V1_FILES);
        // Raising both from 20 MiB (memsw goes first on a real kernel).
        fs::write(dir.join("memory.limit_in_bytes"), "20971520").unwrap();
        fs::write(dir.join("memory.memsw.limit_in_bytes"), "20971520").unwrap();
        let mem: LinuxMemory =
            serde_json::from_str(r#"{"limit": 41943040, "swap": 41943040}"#).unwrap();
        apply_memory(dir, &mem).unwrap();
        assert_eq!(read(dir, "memory.limit_in_bytes"), "41943040");
        assert_eq!(read(dir, "memory.memsw.limit_in_bytes"), "41943040");
        // Without swap accounting, swap is skipped (with a warning), the limit still applies.
        fs::remove_file(dir.join("memory.memsw.limit_in_bytes")).unwrap();
        let mem: LinuxMemory =
            serde_json::from_str(r#"{"limit": 10485760, "swap": 20971520}"#).unwrap();
        apply_memory(dir, &mem).unwrap();
        assert_eq!(read(dir, "memory.limit_in_bytes"), "10485760");
        assert!(!dir.join("memory.memsw.limit_in_bytes").exists());
    }
}
