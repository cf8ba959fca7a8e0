//! The container's cgroup limits (`linux.resources` without its device rules): CPU, memory,
//! hugepages and raw cgroup v2 files, from the CRI resources; also what
//! UpdateContainerResources sends the shim.

use std::path::Path;

use k8s_cri::v1::LinuxContainerResources;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxResources,
    LinuxResourcesBuilder,
};

use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;

/// Whether the node accounts swap in the memory controller (cgroup v1 `memory.memsw.*`, v2
/// `memory.swap.max`), as containerd checks before it defaults swap to the memory limit.
fn swap_accounting() -> bool {
    static SWAP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SWAP.get_or_init(|| {
        if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
            return true;
        }
        // v2: the file exists in every non-root cgroup when swap is accounted.
        std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
            .is_some_and(|p| {
                Path::new("/sys/fs/cgroup")
                    .join(p.trim_start_matches('/'))
                    .join("memory.swap.max")
                    .exists()
            })
    })
}

/// The limits the request sets (CRI's zero is "not set"); no device rules.
pub fn linux_resources(r: &LinuxContainerResources) -> Result<LinuxResources, SpecError> {
    let mut out = LinuxResourcesBuilder::default();
    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if let Ok(shares) = u64::try_from(r.cpu_shares)
        && shares > 0
    {
        cpu = cpu.shares(shares);
        any_cpu = true;
    }
    if r.cpu_quota != 0 {
        cpu = cpu.quota(r.cpu_quota);
        any_cpu = true;
    }
    if let Ok(period) = u64::try_from(r.cpu_period)
        && period > 0
    {
        cpu = cpu.period(period);
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
        any_cpu = true;
    }
    if any_cpu {
        out = out.cpu(cpu.build()?);
    }
    let mut memory = LinuxMemoryBuilder::default();
    let mut any_memory = false;
    if r.memory_limit_in_bytes > 0 {
        memory = memory.limit(r.memory_limit_in_bytes);
        any_memory = true;
    }
    if r.memory_swap_limit_in_bytes > 0 {
        memory = memory.swap(r.memory_swap_limit_in_bytes);
        any_memory = true;
    } else if r.memory_limit_in_bytes > 0 && swap_accounting() {
        // containerd's default: memory+swap = memory, so a limited container does not swap.
        memory = memory.swap(r.memory_limit_in_bytes);
    }
    if any_memory {
        out = out.memory(memory.build()?);
    }
    if !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|h| {
                let limit = i64::try_from(h.limit).map_err(|_| {
                    SpecError::Invalid(format!(
                        "hugepage limit {} of {} is out of range",
                        h.limit, h.page_size
                    ))
                })?;
                Ok(LinuxHugepageLimitBuilder::default()
                    .page_size(h.page_size.clone())
                    .limit(limit)
                    .build()?)
            })
            .collect::<Result<Vec<_>, SpecError>>()?;
        out = out.hugepage_limits(limits);
    }
    if !r.unified.is_empty() {
        out = out.unified(r.unified.clone());
    }
    Ok(out.build()?)
}

/// The request's limits into `linux.resources` (its device rules are the devices step's).
pub fn with_resources(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let devices = draft.resources.devices_mut().take();
    draft.resources = linux_resources(&req.resources)?;
    draft.resources.set_devices(devices);
    Ok(())
}
