//! Exec: validate, and answer the streaming server's URL for the session.

use k8s_cri::v1::{ExecRequest, ExecResponse};

use super::stream_token::{check_cmd, expected_streams, issue, running};
use crate::daemon::Daemon;
use crate::error::Error;
use crate::streaming::{Command, Pending};

pub async fn handle(daemon: &Daemon, req: ExecRequest) -> Result<ExecResponse, Error> {
    check_cmd(&req.cmd)?;
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
