//! The daemon's side of the streaming server: [`StreamingRuntime`] over the daemon's containers
//! (exec, attach) and pods (port-forward inside the pod's network namespace). The streaming
//! server's channels become the container module's [`ProcessIo`], and its errors the message of
//! the client's final status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::NamespaceMode;
use tokio::sync::mpsc;

use super::Daemon;
use super::port_forward;
use crate::container::exec::ExecOptions;
use crate::container::stdio::{ProcessIo, WindowSize};
use crate::sandbox::SandboxState;
use crate::sandbox::namespaces::NsKind;
use crate::streaming::{Failure, PortStream, StreamingRuntime, Streams, TerminalSize};

/// How long a streaming exec's output from pipes may still reach the client once its command
/// has exited (its background children may hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(30);

/// Runs the streaming server's sessions on the daemon's containers and pods.
pub struct DaemonRuntime(Arc<Daemon>);

impl DaemonRuntime {
    pub fn new(daemon: Arc<Daemon>) -> DaemonRuntime {
        DaemonRuntime(daemon)
    }

    /// Where a port-forward dials: the ready pod's own network namespace, or berthd's for a
    /// host-network pod. A pod that stopped or went away after its token was issued has none,
    /// and never falls back to the node's network (the node's localhost holds kubelet, metrics,
    /// etcd).
    fn pod_network(&self, sandbox_id: &str) -> Result<Option<PathBuf>, String> {
        let pod = self
            .0
            .sandboxes
            .get(sandbox_id)
            .map_err(|e| e.to_string())?;
        if pod.state != SandboxState::Ready {
            return Err(format!("pod sandbox {} is not ready", pod.id));
        }
        if pod.namespace_options().network == NamespaceMode::Node as i32 {
            return Ok(None);
        }
        match pod.pin(NsKind::Net) {
            Some(p) => Ok(Some(p.to_path_buf())),
            None => Err(format!("pod sandbox {} has no network namespace", pod.id)),
        }
    }
}

impl StreamingRuntime for DaemonRuntime {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        streams: Streams,
    ) -> Result<i32, Failure> {
        let options = ExecOptions {
            io: process_io(streams),
            timeout: None,
            output_grace: Some(OUTPUT_GRACE),
        };
        self.0
            .containers
            .exec(container_id, cmd, options)
            .await
            .map_err(|e| {
                tracing::warn!(container = %container_id, "exec: {e}");
                Failure::new(e.to_string())
            })
    }

    async fn attach(&self, container_id: &str, streams: Streams) -> Result<(), Failure> {
        self.0
            .containers
            .attach(container_id, process_io(streams))
            .await
            .map_err(|e| Failure::new(e.to_string()))
    }

    async fn port_forward(&self, sandbox_id: &str, port: u16, stream: PortStream) {
        match self.pod_network(sandbox_id) {
            Ok(netns) => port_forward::forward(netns, port, stream).await,
            Err(e) => {
                let msg = format!("failed to connect to localhost:{port} inside the pod: {e}");
                tracing::info!("port-forward: {msg}");
                stream.output.fail(Failure::new(msg)).await
            }
        }
    }
}

/// The session's streams as the container module takes them.
fn process_io(streams: Streams) -> ProcessIo {
    ProcessIo {
        stdin: streams.stdin,
        stdout: streams.stdout,
        stderr: streams.stderr,
        resize: streams.resize.map(window_sizes),
        tty: streams.tty,
    }
}

/// The client's terminal sizes, relayed as the container module's type until either side ends.
fn window_sizes(mut sizes: mpsc::Receiver<TerminalSize>) -> mpsc::Receiver<WindowSize> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Some(s) = sizes.recv().await {
            let size = WindowSize {
                width: s.width,
                height: s.height,
            };
            if tx.send(size).await.is_err() {
                break;
            }
        }
    });
    rx
}
