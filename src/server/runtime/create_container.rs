//! CreateContainer: validate the request, then the daemon creates the container (rolled back on
//! failure).

use std::path::{Component, Path};

use k8s_cri::v1::{CreateContainerRequest, CreateContainerResponse};

use std::sync::Arc;

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Arc<Daemon>,
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
    check_log_path(&config.log_path)?;
    let rec = daemon.create_container(&req.pod_sandbox_id, config).await?;
    Ok(CreateContainerResponse {
        container_id: rec.id,
    })
}

/// The log path is relative to the pod's log directory and stays inside it: an absolute path
/// would replace the directory, `..` would climb out of it (a log file anywhere on the node).
fn check_log_path(log_path: &str) -> Result<(), Error> {
    let path = Path::new(log_path);
    if path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(Error::InvalidArgument(format!(
            "log_path {log_path:?} must be relative to the pod's log directory, without \"..\""
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_log_path;

    #[test]
    fn log_paths_stay_in_the_pod_log_directory() {
        for ok in ["", "app/0.log", "0.log", "a/./b.log", "a..b/c..log"] {
            assert!(check_log_path(ok).is_ok(), "{ok}");
        }
        for bad in ["/etc/passwd", "../x.log", "a/../../x.log", "a/.."] {
            assert!(check_log_path(bad).is_err(), "{bad}");
        }
    }
}
