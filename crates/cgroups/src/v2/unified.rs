//! `linux.resources.unified`: controller files written verbatim, after the typed fields they
//! override (as runc). Only `<controller>.<file>` names in the container's directory.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::common::write_file;
use crate::error::{Error, Result};

/// Write the unified keys, sorted (one order whatever the map's).
pub(super) fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
    let Some(unified) = r.unified() else {
        return Ok(());
    };
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for key in keys {
        if key.is_empty()
            || key.contains('/')
            || !key.contains('.')
            || key.starts_with('.')
            || key.starts_with("cgroup.")
        {
            return Err(Error::InvalidSpec(format!(
                "linux.resources.unified key {key:?} is not a controller file"
            )));
        }
        write_file(dir, key, &unified[key])?;
    }
    Ok(())
}
