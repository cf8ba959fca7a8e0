//! ListPodSandboxMetrics: the latest periodic reading of every pod and its running containers
//! (`[metrics] collection_period_secs`), never a reading per request. A pod created since the
//! last reading appears after the next one.

use k8s_cri::v1::{ListPodSandboxMetricsRequest, ListPodSandboxMetricsResponse};

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    _req: ListPodSandboxMetricsRequest,
) -> Result<ListPodSandboxMetricsResponse, Error> {
    let latest = daemon
        .pod_metrics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(ListPodSandboxMetricsResponse {
        pod_metrics: latest.as_ref().clone(),
    })
}
