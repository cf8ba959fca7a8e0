//! A user-namespaced pod's id mappings (KEP-127) as the container's `linux.uidMappings` and
//! `linux.gidMappings`.

use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};

use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;
use crate::sandbox::userns::IdRange;

/// One mapping range as OCI writes it.
pub fn id_mapping(range: &IdRange) -> Result<LinuxIdMapping, SpecError> {
    Ok(LinuxIdMappingBuilder::default()
        .container_id(range.container)
        .host_id(range.host)
        .size(range.size)
        .build()?)
}

/// The pod's mappings, when it has its own user namespace.
pub fn with_user_namespace(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    if let Some(u) = req.pod_userns() {
        draft
            .linux
            .set_uid_mappings(Some(vec![id_mapping(&u.uid)?]));
        draft
            .linux
            .set_gid_mappings(Some(vec![id_mapping(&u.gid)?]));
    }
    Ok(())
}
