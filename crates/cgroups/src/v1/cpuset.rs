//! v1 `cpuset`: the CPUs and memory nodes (`linux.resources.cpu.cpus` / `mems`), and the
//! parents' values copied down at creation (an empty cpuset takes no process).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::common::{read_file, write_file};
use crate::controller::Controller;
use crate::error::Result;

pub struct Cpuset;

impl Controller for Cpuset {
    fn name(&self) -> &'static str {
        "cpuset"
    }

    fn what(&self) -> &'static str {
        "cpuset cpus/mems"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.cpu().as_ref().is_some_and(|cpu| {
            cpu.cpus().as_deref().is_some_and(|s| !s.is_empty())
                || cpu.mems().as_deref().is_some_and(|s| !s.is_empty())
        })
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

/// Give every level from the hierarchy's `root` down to the new `dir` its parent's cpus and
/// mems where it has none.
pub(crate) fn fill_parents(root: &Path, dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        copy_down_if_empty(root, dir, file)?;
    }
    Ok(())
}

/// Give every level from `root` down to `dir` its parent's `file` when it is empty.
fn copy_down_if_empty(root: &Path, dir: &Path, file: &str) -> Result<()> {
    let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
    let mut parent_value = read_file(root, file)?;
    let mut current = root.to_path_buf();
    for c in rel.components() {
        current.push(c);
        let value = read_file(&current, file)?;
        if value.trim().is_empty() {
            write_file(&current, file, parent_value.trim())?;
        } else {
            parent_value = value;
        }
    }
    Ok(())
}
