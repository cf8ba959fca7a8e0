//! v1 `hugetlb`: hugepage limits per page size (`linux.resources.hugepageLimits`).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::common::{hugepage_size, write_file};
use crate::controller::Controller;
use crate::error::Result;

pub struct Hugetlb;

impl Controller for Hugetlb {
    fn name(&self) -> &'static str {
        "hugetlb"
    }

    fn what(&self) -> &'static str {
        "hugepage limits"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.hugepage_limits()
            .as_deref()
            .is_some_and(|l| !l.is_empty())
    }

    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        for l in r.hugepage_limits().iter().flatten() {
            let size = hugepage_size(l.page_size())?;
            write_file(
                dir,
                &format!("hugetlb.{size}.limit_in_bytes"),
                &l.limit().to_string(),
            )?;
            // Reservation limits where the kernel has them (what the spec asks for first).
            let rsvd = format!("hugetlb.{size}.rsvd.limit_in_bytes");
            if dir.join(&rsvd).exists() {
                write_file(dir, &rsvd, &l.limit().to_string())?;
            }
        }
        Ok(())
    }
}
