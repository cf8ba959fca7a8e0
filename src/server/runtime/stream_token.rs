//! What Exec, Attach and PortForward share: the streams asked for, the running container, and the
//! single-use token under which the streaming server keeps the request until the client connects.

use crate::container::ContainerState;
use crate::daemon::Daemon;
use crate::error::Error;
use crate::streaming::{Expected, Pending};

/// The streams a session will carry; at least one, and no stderr beside a tty.
pub fn expected_streams(
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<Expected, Error> {
    if !stdin && !stdout && !stderr {
        return Err(Error::InvalidArgument(
            "one of stdin, stdout and stderr must be requested".into(),
        ));
    }
    if tty && stderr {
        return Err(Error::InvalidArgument(
            "tty and stderr cannot both be requested (a terminal has one output)".into(),
        ));
    }
    Ok(Expected {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

/// An exec's command: a non-empty argv the kernel can take (execve's strings end at a NUL, so
/// an argument holding one cannot be passed).
pub fn check_cmd(cmd: &[String]) -> Result<(), Error> {
    if cmd.first().is_none_or(|c| c.is_empty()) {
        return Err(Error::InvalidArgument("cmd is empty".into()));
    }
    if let Some(i) = cmd.iter().position(|a| a.contains('\0')) {
        return Err(Error::InvalidArgument(format!(
            "cmd argument {i} holds a NUL byte"
        )));
    }
    Ok(())
}

/// The id of the running container `id` names.
pub fn running(daemon: &Daemon, id: &str) -> Result<String, Error> {
    let rec = daemon.containers.get(id)?;
    if rec.state != ContainerState::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {} is not running",
            rec.id
        )));
    }
    Ok(rec.id)
}

/// Keep the request under a new token; the URL the client connects to.
pub fn issue(daemon: &Daemon, p: Pending) -> Result<String, Error> {
    daemon
        .streaming
        .issue(p)
        .map_err(|e| Error::Internal(format!("issuing a streaming token: {e}")))
}
