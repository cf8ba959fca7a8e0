//! ExecSync: run a command in a container and answer its output and exit code.

use std::time::Duration;

use k8s_cri::v1::{ExecSyncRequest, ExecSyncResponse};

use super::stream_token::check_cmd;
use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(daemon: &Daemon, req: ExecSyncRequest) -> Result<ExecSyncResponse, Error> {
    check_cmd(&req.cmd)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::exec::MAX_OUTPUT;
    use prost::Message;

    /// The most output ExecSync keeps, however split, fits one gRPC message with any exit code.
    #[test]
    fn largest_reply_fits_a_message() {
        for split in [0, 1, MAX_OUTPUT / 2, MAX_OUTPUT] {
            let r = ExecSyncResponse {
                stdout: vec![b'x'; split],
                stderr: vec![b'y'; MAX_OUTPUT - split],
                exit_code: i32::MIN,
            };
            assert!(r.encoded_len() <= crate::server::MAX_MESSAGE, "{split}");
        }
    }
}
