//! ReopenContainerLog: the shim reopens the log file after kubelet rotated it.

use k8s_cri::v1::{ReopenContainerLogRequest, ReopenContainerLogResponse};

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: ReopenContainerLogRequest,
) -> Result<ReopenContainerLogResponse, Error> {
    daemon.containers.reopen_log(&req.container_id).await?;
    Ok(ReopenContainerLogResponse {})
}
