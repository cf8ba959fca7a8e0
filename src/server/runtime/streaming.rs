//! Exec, Attach, PortForward: validate, remember the request under a single-use token, answer
//! the streaming server's URL (the session itself runs when the client connects).

use k8s_cri::v1::{
    AttachRequest, AttachResponse, ExecRequest, ExecResponse, PortForwardRequest,
    PortForwardResponse,
};

use crate::container::ContainerState;
use crate::daemon::Daemon;
use crate::error::Error;
use crate::sandbox::SandboxState;
use crate::streaming::Expected;
use crate::streaming::server::Pending;

fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<Expected, Error> {
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

fn running(daemon: &Daemon, id: &str) -> Result<String, Error> {
    let rec = daemon.containers.get(id)?;
    if rec.state != ContainerState::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {} is not running",
            rec.id
        )));
    }
    Ok(rec.id)
}

fn issue(daemon: &Daemon, p: Pending) -> Result<String, Error> {
    daemon
        .streaming
        .issue(p)
        .map_err(|e| Error::Internal(format!("issuing a streaming token: {e}")))
}

pub async fn exec(daemon: &Daemon, req: ExecRequest) -> Result<ExecResponse, Error> {
    if req.cmd.is_empty() || req.cmd[0].is_empty() {
        return Err(Error::InvalidArgument("cmd is empty".into()));
    }
    let expected = check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
    let container_id = daemon
        .containers
        .refresh(&running(daemon, &req.container_id)?)
        .await?
        .id;
    let url = issue(
        daemon,
        Pending::Exec {
            container_id,
            cmd: req.cmd,
            expected,
        },
    )?;
    Ok(ExecResponse { url })
}

pub async fn attach(daemon: &Daemon, req: AttachRequest) -> Result<AttachResponse, Error> {
    let id = running(daemon, &req.container_id)?;
    let rec = daemon.containers.refresh(&id).await?;
    // The container's own terminal setting decides (a tty has no separate stderr).
    let tty = rec.config.tty;
    let expected = check_streams(req.stdin, req.stdout, req.stderr && !tty, tty)?;
    let url = issue(
        daemon,
        Pending::Attach {
            container_id: rec.id,
            expected,
        },
    )?;
    Ok(AttachResponse { url })
}

pub async fn port_forward(
    daemon: &Daemon,
    req: PortForwardRequest,
) -> Result<PortForwardResponse, Error> {
    let sb = daemon.sandboxes.get(&req.pod_sandbox_id)?;
    if sb.state != SandboxState::Ready {
        return Err(Error::FailedPrecondition(format!(
            "pod sandbox {} is not ready",
            sb.id
        )));
    }
    if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(Error::InvalidArgument(format!("invalid port {p}")));
    }
    let url = issue(daemon, Pending::PortForward { sandbox_id: sb.id })?;
    Ok(PortForwardResponse { url })
}
