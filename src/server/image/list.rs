use k8s_cri::v1::{ListImagesRequest, ListImagesResponse};

use super::convert::to_cri;
use crate::daemon::Daemon;
use crate::error::Error;

/// All images, or the one a filter reference names (by tag, digest or id).
pub fn list_images(daemon: &Daemon, req: ListImagesRequest) -> Result<ListImagesResponse, Error> {
    let wanted = req
        .filter
        .and_then(|f| f.image)
        .map(|s| s.image)
        .filter(|s| !s.is_empty());
    let images = match wanted {
        Some(name) => daemon.images.resolve(&name).iter().map(to_cri).collect(),
        None => daemon.images.list().iter().map(to_cri).collect(),
    };
    Ok(ListImagesResponse { images })
}
