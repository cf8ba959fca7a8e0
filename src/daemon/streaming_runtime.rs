//! The daemon's side of the streaming server: [`StreamingRuntime`] over the daemon's containers
//! (exec, attach) and pods (port-forward inside the pod's network namespace). The streaming
//! server's channels become the container module's [`ProcessIo`], and its errors the message of
//! the client's final status.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Daemon;
use super::port_forward;
use crate::container::exec::ExecOptions;
use crate::container::stdio::{ProcessIo, WindowSize};
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
        // The pod's network namespace (None: a host-network pod, berthd's own).
        let netns = match self.0.sandboxes.get(sandbox_id) {
            Ok(s) => s.pin(NsKind::Net).map(|p| p.to_path_buf()),
            Err(e) => {
                let msg = format!("failed to connect to localhost:{port} inside the pod: {e}");
                tracing::info!("port-forward: {msg}");
                return stream.output.fail(Failure::new(msg)).await;
            }
        };
        port_forward::forward(netns, port, stream).await;
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
