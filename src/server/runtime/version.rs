//! Version: the runtime's name and versions, and the CRI API version kubelet insists on.

use k8s_cri::v1::{VersionRequest, VersionResponse};

use crate::daemon::Daemon;
use crate::error::Error;

/// The kubelet-runtime API version kubelet insists on.
const KUBELET_API_VERSION: &str = "0.1.0";

pub async fn handle(_daemon: &Daemon, _req: VersionRequest) -> Result<VersionResponse, Error> {
    Ok(VersionResponse {
        version: KUBELET_API_VERSION.to_string(),
        runtime_name: "berth".to_string(),
        runtime_version: env!("CARGO_PKG_VERSION").to_string(),
        runtime_api_version: "v1".to_string(),
    })
}
