//! ContainerStats.

use k8s_cri::v1::{ContainerStatsRequest, ContainerStatsResponse};

use super::convert::container_stats;
use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: ContainerStatsRequest,
) -> Result<ContainerStatsResponse, Error> {
    let rec = daemon.containers.get(&req.container_id)?;
    let usage = daemon.containers.usage(vec![rec]).await;
    Ok(ContainerStatsResponse {
        stats: usage.first().map(container_stats),
    })
}
