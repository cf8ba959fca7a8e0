//! UpdateContainerResources.

use k8s_cri::v1::{UpdateContainerResourcesRequest, UpdateContainerResourcesResponse};

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: UpdateContainerResourcesRequest,
) -> Result<UpdateContainerResourcesResponse, Error> {
    let linux = req.linux.ok_or_else(|| {
        Error::InvalidArgument("UpdateContainerResources needs linux resources".into())
    })?;
    daemon
        .containers
        .update_resources(&req.container_id, &linux)
        .await?;
    Ok(UpdateContainerResourcesResponse {})
}
