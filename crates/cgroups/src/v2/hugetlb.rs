//! v2 `hugetlb`: hugepage limits per page size (`linux.resources.hugepageLimits`).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::common::{hugepage_size, limit_value, write_file};
use crate::controller::Controller;
use crate::error::Result;

pub struct Hugetlb;

impl Controller for Hugetlb {
    fn name(&self) -> &'static str {
        "hugetlb"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.hugepage_limits()
            .as_deref()
            .is_some_and(|l| !l.is_empty())
    }

    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        for l in r.hugepage_limits().iter().flatten() {
            let size = hugepage_size(l.page_size())?;
            write_file(dir, &format!("hugetlb.{size}.max"), &limit_value(l.limit()))?;
            // Reservation limits where the kernel has them (what the spec asks for first).
            let rsvd = format!("hugetlb.{size}.rsvd.max");
            if dir.join(&rsvd).exists() {
                write_file(dir, &rsvd, &limit_value(l.limit()))?;
            }
        }
        Ok(())
    }
}
