//! ListMetricDescriptors: the cAdvisor-compatible metrics ListPodSandboxMetrics reports.

use k8s_cri::v1::{ListMetricDescriptorsRequest, ListMetricDescriptorsResponse};

use crate::daemon::Daemon;
use crate::daemon::pod_metrics::descriptors;
use crate::error::Error;

pub async fn handle(
    _daemon: &Daemon,
    _req: ListMetricDescriptorsRequest,
) -> Result<ListMetricDescriptorsResponse, Error> {
    Ok(ListMetricDescriptorsResponse {
        descriptors: descriptors(),
    })
}
