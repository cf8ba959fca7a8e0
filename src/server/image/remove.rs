use k8s_cri::v1::{RemoveImageRequest, RemoveImageResponse};

use super::convert::image_name;
use crate::daemon::Daemon;
use crate::error::Error;

/// Removing an absent image succeeds (the call is idempotent, as in containerd).
pub async fn remove_image(
    daemon: &Daemon,
    req: RemoveImageRequest,
) -> Result<RemoveImageResponse, Error> {
    let name = image_name(&req.image);
    if name.is_empty() {
        return Err(Error::InvalidArgument("image is required".into()));
    }
    daemon.images.remove(&name).await?;
    Ok(RemoveImageResponse {})
}
