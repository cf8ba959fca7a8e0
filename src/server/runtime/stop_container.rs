//! StopContainer: idempotent, as critest and containerd 2 expect.

use k8s_cri::v1::{StopContainerRequest, StopContainerResponse};

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: StopContainerRequest,
) -> Result<StopContainerResponse, Error> {
    if req.container_id.is_empty() {
        return Err(Error::InvalidArgument("container id is required".into()));
    }
    // Idempotent: a container that is gone is stopped (as critest and containerd 2 expect).
    match daemon.containers.stop(&req.container_id, req.timeout).await {
        Ok(()) | Err(crate::container::ContainerError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(StopContainerResponse {})
}
