//! ListContainerStats.

use k8s_cri::v1::{ContainerFilter, ListContainerStatsRequest, ListContainerStatsResponse};

use super::convert::container_stats;
use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: ListContainerStatsRequest,
) -> Result<ListContainerStatsResponse, Error> {
    let filter = req.filter.map(|f| ContainerFilter {
        id: f.id,
        state: None,
        pod_sandbox_id: f.pod_sandbox_id,
        label_selector: f.label_selector,
    });
    let records = daemon.containers.list(filter.as_ref());
    let usage = daemon.containers.usage(records).await;
    Ok(ListContainerStatsResponse {
        stats: usage.iter().map(container_stats).collect(),
    })
}
