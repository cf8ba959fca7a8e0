//! The [`Controller`] trait: one cgroup controller's part of `linux.resources` and its readings.
//!
//! A controller is a unit struct in its own file (`v1/<name>.rs`, `v2/<name>.rs`) and one entry
//! in that version's `CONTROLLERS` list, which also fixes the order of the writes.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Result;
use crate::stats::Stats;

/// One cgroup controller.
pub trait Controller: Sync {
    /// The kernel's name for it: on v1 the hierarchy holding its files, on v2 its entry in
    /// `cgroup.controllers`.
    fn name(&self) -> &'static str;

    /// What it applies, in words ("memory limits"): said when a v1 host mounts no hierarchy
    /// for it.
    fn what(&self) -> &'static str {
        self.name()
    }

    /// Whether `r` asks anything of it.
    fn needs(&self, r: &LinuxResources) -> bool;

    /// Write its part of `r` into the container's directory `dir` (only called if it
    /// [`needs`](Controller::needs) to).
    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()>;

    /// Add its readings of `dir` to `stats` (what the kernel has; missing files read as 0).
    fn stats(&self, _dir: &Path, _stats: &mut Stats) {}
}
