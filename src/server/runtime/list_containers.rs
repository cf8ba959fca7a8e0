//! ListContainers.

use k8s_cri::v1::{Container, ListContainersRequest, ListContainersResponse};

use super::convert::image_fields;
use crate::container::cri_state;
use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: ListContainersRequest,
) -> Result<ListContainersResponse, Error> {
    let containers = daemon
        .containers
        .list(req.filter.as_ref())
        .iter()
        .map(|r| {
            let (image, image_ref) = image_fields(daemon, r);
            Container {
                id: r.id.clone(),
                pod_sandbox_id: r.sandbox_id.clone(),
                metadata: r.config.metadata.clone(),
                image,
                image_ref,
                state: cri_state(r.state),
                created_at: r.created_at,
                labels: r.config.labels.clone(),
                annotations: r.config.annotations.clone(),
                image_id: r.image_id.clone(),
            }
        })
        .collect();
    Ok(ListContainersResponse { containers })
}
