//! StopPodSandbox.

use k8s_cri::v1::{StopPodSandboxRequest, StopPodSandboxResponse};

use std::sync::Arc;

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Arc<Daemon>,
    req: StopPodSandboxRequest,
) -> Result<StopPodSandboxResponse, Error> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Error::InvalidArgument("pod sandbox id is required".into()));
    }
    daemon.stop_pod(&req.pod_sandbox_id).await?;
    Ok(StopPodSandboxResponse {})
}
