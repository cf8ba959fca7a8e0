//! StartContainer.

use k8s_cri::v1::{StartContainerRequest, StartContainerResponse};

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: StartContainerRequest,
) -> Result<StartContainerResponse, Error> {
    daemon.containers.start(&req.container_id).await?;
    Ok(StartContainerResponse {})
}
