//! Attach: validate, and answer the streaming server's URL for the session.

use k8s_cri::v1::{AttachRequest, AttachResponse};

use super::stream_token::{expected_streams, issue, running};
use crate::daemon::Daemon;
use crate::error::Error;
use crate::streaming::{Command, Pending};

pub async fn handle(daemon: &Daemon, req: AttachRequest) -> Result<AttachResponse, Error> {
    let id = running(daemon, &req.container_id)?;
    let rec = daemon.containers.refresh(&id).await?;
    // The container's own terminal setting decides (a tty has no separate stderr).
    let tty = rec.config.tty;
    let expected = expected_streams(req.stdin, req.stdout, req.stderr && !tty, tty)?;
    let url = issue(
        daemon,
        Pending::Command {
            command: Command::Attach {
                container_id: rec.id,
            },
            expected,
        },
    )?;
    Ok(AttachResponse { url })
}
