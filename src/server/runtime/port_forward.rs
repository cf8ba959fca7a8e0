//! PortForward: validate, and answer the streaming server's URL for the session.

use k8s_cri::v1::{PortForwardRequest, PortForwardResponse};

use super::stream_token::issue;
use crate::daemon::Daemon;
use crate::error::Error;
use crate::sandbox::SandboxState;
use crate::streaming::Pending;

pub async fn handle(
    daemon: &Daemon,
    req: PortForwardRequest,
) -> Result<PortForwardResponse, Error> {
    let sb = daemon.sandboxes.get(&req.pod_sandbox_id)?;
    if sb.state != SandboxState::Ready {
        return Err(Error::FailedPrecondition(format!(
            "pod sandbox {} is not ready",
            sb.id
        )));
    }
    if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(Error::InvalidArgument(format!("invalid port {p}")));
    }
    let url = issue(daemon, Pending::PortForward { sandbox_id: sb.id })?;
    Ok(PortForwardResponse { url })
}
