//! The daemon's side of a streaming connection: once the transport has the session's streams,
//! run the exec, attach or port-forward it was issued for.

use std::path::PathBuf;
use std::sync::Arc;

use super::server::{Pending, STREAM_CREATION_TIMEOUT, SessionHandler, Upgraded};
use super::{CommandStreams, Expected, PortStreams, portforward, spdy, ws};
use crate::daemon::Daemon;
use crate::sandbox::namespaces::NsKind;

/// Runs sessions against the daemon's containers and pods.
pub struct Sessions(pub Arc<Daemon>);

impl Sessions {
    async fn command(&self, pending: Pending, streams: CommandStreams) {
        match pending {
            Pending::Exec {
                container_id,
                cmd,
                expected,
            } => {
                self.0
                    .containers
                    .exec_streaming(&container_id, &cmd, expected, streams)
                    .await
            }
            Pending::Attach {
                container_id,
                expected,
            } => {
                self.0
                    .containers
                    .attach_streaming(&container_id, expected, streams)
                    .await
            }
            Pending::PortForward { .. } => {}
        }
    }

    /// The pod's network namespace to dial in (None: a host-network pod, berthd's own).
    fn netns(&self, sandbox_id: &str) -> Option<PathBuf> {
        self.0
            .sandboxes
            .get(sandbox_id)
            .ok()
            .and_then(|s| s.pin(NsKind::Net).map(|p| p.to_path_buf()))
    }

    async fn forward(
        &self,
        sandbox_id: &str,
        conns: tokio::sync::mpsc::Receiver<PortStreams>,
        gone: tokio::sync::oneshot::Receiver<()>,
    ) {
        portforward::run(conns, self.netns(sandbox_id), gone).await;
    }
}

fn expected_of(p: &Pending) -> Expected {
    match p {
        Pending::Exec { expected, .. } | Pending::Attach { expected, .. } => *expected,
        Pending::PortForward { .. } => Expected::default(),
    }
}

impl SessionHandler for Sessions {
    async fn spdy(&self, io: Upgraded, pending: Pending, _protocol: String) {
        if let Pending::PortForward { sandbox_id } = &pending {
            match spdy::accept_port_forward(io).await {
                Ok((conns, gone)) => self.forward(sandbox_id, conns, gone).await,
                Err(e) => tracing::info!("port-forward over SPDY: {e}"),
            }
            return;
        }
        match spdy::accept_command(io, expected_of(&pending), STREAM_CREATION_TIMEOUT).await {
            Ok(streams) => self.command(pending, streams).await,
            Err(e) => tracing::info!("streaming session over SPDY: {e}"),
        }
    }

    async fn ws(&self, io: Upgraded, pending: Pending, protocol: ws::Protocol, ports: Vec<u16>) {
        if let Pending::PortForward { sandbox_id } = &pending {
            let (conns, gone) = ws::accept_port_forward(io, protocol, &ports).await;
            self.forward(sandbox_id, conns, gone).await;
            return;
        }
        let streams = ws::accept_command(io, protocol, expected_of(&pending)).await;
        self.command(pending, streams).await;
    }
}
