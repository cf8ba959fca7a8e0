//! StartContainer.

use k8s_cri::v1::{StartContainerRequest, StartContainerResponse};

use std::sync::Arc;

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Arc<Daemon>,
    req: StartContainerRequest,
) -> Result<StartContainerResponse, Error> {
    daemon.start_container(&req.container_id).await?;
    Ok(StartContainerResponse {})
}
