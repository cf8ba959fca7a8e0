//! Exec: validate, and answer the streaming server's URL for the session.

use k8s_cri::v1::{ExecRequest, ExecResponse};

use super::stream_token::{expected_streams, issue, running};
use crate::daemon::Daemon;
use crate::error::Error;
use crate::streaming::{Command, Pending};

pub async fn handle(daemon: &Daemon, req: ExecRequest) -> Result<ExecResponse, Error> {
    if req.cmd.is_empty() || req.cmd[0].is_empty() {
        return Err(Error::InvalidArgument("cmd is empty".into()));
    }
    let expected = expected_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
    let container_id = daemon
        .containers
        .refresh(&running(daemon, &req.container_id)?)
        .await?
        .id;
    let url = issue(
        daemon,
        Pending::Command {
            command: Command::Exec {
                container_id,
                cmd: req.cmd,
            },
            expected,
        },
    )?;
    Ok(ExecResponse { url })
}
