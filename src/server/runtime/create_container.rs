//! CreateContainer: validate the request, then the daemon creates the container (rolled back on
//! failure).

use k8s_cri::v1::{CreateContainerRequest, CreateContainerResponse};

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: CreateContainerRequest,
) -> Result<CreateContainerResponse, Error> {
    let config = req
        .config
        .ok_or_else(|| Error::InvalidArgument("CreateContainer needs a config".into()))?;
    // Only the metadata itself is required, as containerd: its name may be empty.
    if config.metadata.is_none() {
        return Err(Error::InvalidArgument(
            "container config has no metadata".into(),
        ));
    }
    let rec = daemon
        .containers
        .create(
            &daemon.sandboxes,
            &daemon.images,
            &req.pod_sandbox_id,
            config,
        )
        .await?;
    Ok(CreateContainerResponse {
        container_id: rec.id,
    })
}
