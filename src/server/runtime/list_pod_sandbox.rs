//! ListPodSandbox.

use k8s_cri::v1::{ListPodSandboxRequest, ListPodSandboxResponse};

use super::convert::pod_sandbox;
use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: ListPodSandboxRequest,
) -> Result<ListPodSandboxResponse, Error> {
    let items = daemon
        .sandboxes
        .list(req.filter.as_ref())
        .iter()
        .map(pod_sandbox)
        .collect();
    Ok(ListPodSandboxResponse { items })
}
