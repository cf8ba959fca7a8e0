//! ExecSync: run a command in a container and answer its output and exit code.

use std::time::Duration;

use k8s_cri::v1::{ExecSyncRequest, ExecSyncResponse};

use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(daemon: &Daemon, req: ExecSyncRequest) -> Result<ExecSyncResponse, Error> {
    if req.cmd.first().is_none_or(|c| c.is_empty()) {
        return Err(Error::InvalidArgument("cmd is empty".into()));
    }
    // CRI: a timeout of 0 (or less) means none.
    let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout as u64));
    let out = daemon
        .containers
        .exec_sync(&req.container_id, &req.cmd, timeout)
        .await?;
    Ok(ExecSyncResponse {
        stdout: out.stdout,
        stderr: out.stderr,
        exit_code: out.exit_code,
    })
}
