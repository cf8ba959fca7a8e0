//! Spawning a berth-shim for a container and talking to it over its socket.
//!
//! The shim daemonizes itself: berthd runs it with a pipe on stdout, reads the one-line
//! handshake (`ok <init-pid>` or `error <message>`) to EOF, and from then on reaches the shim
//! only through `<state>/shims/<id>/shim.sock`, so berthd can restart without touching it. The
//! command lines, handshake, paths and exit record are `berth_proto`'s, shared with the shim.

use std::path::Path;
use std::time::Duration;

use berth_proto::args::{PodInitArgs, ShimArgs, StdinMode};
use berth_proto::handshake::Handshake;
use berth_proto::paths::ShimPaths;
use berth_proto::v1::shim_client::ShimClient;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::Kind;

/// Errors talking to a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("starting berth-shim {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("the container could not be created: {0}")]
    Create(String),
    #[error("berth-shim handshake: {0}")]
    Handshake(String),
    #[error("connecting to the shim at {socket}: {reason}")]
    Connect { socket: String, reason: String },
    #[error("shim call failed: {0}")]
    Call(#[from] tonic::Status),
}

impl ShimError {
    /// A command that cannot run (no such executable, a bad user) is the client's to fix.
    pub fn kind(&self) -> Kind {
        match self {
            ShimError::Create(_) => Kind::InvalidArgument,
            _ => Kind::Internal,
        }
    }
}

/// Read the handshake line: the init's pid, or why the shim could not create the container.
fn parse_handshake(out: &str) -> Result<u32, ShimError> {
    match Handshake::parse(out) {
        Ok(Handshake::Ok(pid)) => Ok(pid),
        Ok(Handshake::Error(msg)) => Err(ShimError::Create(msg)),
        Err(e) => Err(ShimError::Handshake(e.to_string())),
    }
}

/// Run `berth-shim` for a container and wait for its handshake; returns the init pid.
pub async fn spawn(
    binary: &Path,
    id: &str,
    bundle: &Path,
    paths: &ShimPaths,
    log_path: &Path,
    stdin: Option<StdinMode>,
) -> Result<u32, ShimError> {
    let spawn_err = |source| ShimError::Spawn {
        binary: binary.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&paths.dir).map_err(spawn_err)?;
    let args = ShimArgs {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        socket: paths.socket.clone(),
        log: log_path.to_path_buf(),
        exit_file: paths.exit_file.clone(),
        stdin,
    };
    let child = tokio::process::Command::new(binary)
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(spawn_err)?;
    read_handshake(child).await
}

/// Start `berth-shim pod-init` pinning a new PID namespace at `pin`; returns its PID 1 (a host
/// pid).
pub async fn spawn_pod_init(binary: &Path, pin: &Path) -> Result<u32, ShimError> {
    let args = PodInitArgs {
        pin: pin.to_path_buf(),
    };
    let child = tokio::process::Command::new(binary)
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|source| ShimError::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;
    read_handshake(child).await
}

/// Read a started shim's one-line handshake to EOF and reap the process we started.
async fn read_handshake(mut child: tokio::process::Child) -> Result<u32, ShimError> {
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let read = tokio::time::timeout(Duration::from_secs(60), stdout.read_to_string(&mut out));
        match read.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ShimError::Handshake(e.to_string())),
            Err(_) => {
                let _ = child.start_kill();
                return Err(ShimError::Handshake("timed out after 60s".into()));
            }
        }
    }
    // The process we started only forks the daemon and exits.
    let _ = child.wait().await;
    parse_handshake(&out)
}

/// A client for the shim at `socket`.
pub async fn connect(socket: &Path) -> Result<ShimClient<Channel>, ShimError> {
    let path = socket.to_path_buf();
    let err = |reason: String| ShimError::Connect {
        socket: socket.display().to_string(),
        reason,
    };
    let channel = Endpoint::try_from("http://[::]:50051")
        .map_err(|e| err(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(ShimClient::new(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes() {
        assert_eq!(parse_handshake("ok 4242\n").unwrap(), 4242);
        assert!(matches!(
            parse_handshake("error exec: \"nope\": executable file not found\n"),
            Err(ShimError::Create(m)) if m.contains("executable file not found")
        ));
        assert!(matches!(parse_handshake(""), Err(ShimError::Handshake(_))));
        assert!(matches!(
            parse_handshake("ok x"),
            Err(ShimError::Handshake(_))
        ));
    }
}
