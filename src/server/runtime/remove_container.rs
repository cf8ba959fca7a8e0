//! RemoveContainer.

use k8s_cri::v1::{RemoveContainerRequest, RemoveContainerResponse};

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: RemoveContainerRequest,
) -> Result<RemoveContainerResponse, Error> {
    if req.container_id.is_empty() {
        return Err(Error::InvalidArgument("container id is required".into()));
    }
    daemon.remove_container(&req.container_id).await?;
    Ok(RemoveContainerResponse {})
}
