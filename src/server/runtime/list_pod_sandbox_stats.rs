//! ListPodSandboxStats.

use k8s_cri::v1::{ListPodSandboxStatsRequest, ListPodSandboxStatsResponse, PodSandboxFilter};

use super::convert::pod_sandbox_stats;
use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: ListPodSandboxStatsRequest,
) -> Result<ListPodSandboxStatsResponse, Error> {
    let filter = req.filter.map(|f| PodSandboxFilter {
        id: f.id,
        state: None,
        label_selector: f.label_selector,
    });
    let mut stats = Vec::new();
    for rec in daemon.sandboxes.list(filter.as_ref()) {
        stats.push(pod_sandbox_stats(daemon, rec).await);
    }
    Ok(ListPodSandboxStatsResponse { stats })
}
