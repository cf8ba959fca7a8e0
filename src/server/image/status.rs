use std::collections::HashMap;

use k8s_cri::v1::{ImageStatusRequest, ImageStatusResponse};

use super::convert::{image_name, to_cri};
use crate::daemon::Daemon;
use crate::error::Error;

/// An absent image is an empty answer, not an error (kubelet relies on it before pulling).
pub fn image_status(
    daemon: &Daemon,
    req: ImageStatusRequest,
) -> Result<ImageStatusResponse, Error> {
    let name = image_name(&req.image);
    let Some(rec) = daemon.images.resolve(&name) else {
        return Ok(ImageStatusResponse::default());
    };
    let mut info = HashMap::new();
    if req.verbose {
        let config: serde_json::Value =
            serde_json::from_slice(&daemon.images.config_json(&rec.id)?).map_err(|e| {
                Error::from(crate::image::ImageError::Internal(format!(
                    "stored config of {} is not JSON: {e}",
                    rec.id
                )))
            })?;
        // The shape containerd's CRI plugin answers with.
        let verbose = serde_json::json!({
            "chainID": rec.layers.last(),
            "imageSpec": config,
        });
        info.insert("info".to_string(), verbose.to_string());
    }
    Ok(ImageStatusResponse {
        image: Some(to_cri(&rec)),
        info,
    })
}
