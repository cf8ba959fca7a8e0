//! v1 `pids`: the task limit (`linux.resources.pids`).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::common::{pids_max, write_file};
use crate::controller::Controller;
use crate::error::Result;

pub struct Pids;

impl Controller for Pids {
    fn name(&self) -> &'static str {
        "pids"
    }

    fn what(&self) -> &'static str {
        "pids limit"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.pids().is_some_and(|p| p.limit() != 0)
    }

    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        if let Some(pids) = r.pids().filter(|p| p.limit() != 0) {
            write_file(dir, "pids.max", &pids_max(pids.limit()))?;
        }
        Ok(())
    }
}
