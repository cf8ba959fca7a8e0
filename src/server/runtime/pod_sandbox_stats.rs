//! PodSandboxStats.

use k8s_cri::v1::{PodSandboxStatsRequest, PodSandboxStatsResponse};

use super::convert::pod_sandbox_stats;
use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: PodSandboxStatsRequest,
) -> Result<PodSandboxStatsResponse, Error> {
    let rec = daemon.sandboxes.get(&req.pod_sandbox_id)?;
    Ok(PodSandboxStatsResponse {
        stats: Some(pod_sandbox_stats(daemon, rec).await),
    })
}
