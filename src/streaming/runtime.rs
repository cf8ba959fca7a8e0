//! What the streaming server asks of the container runtime, in the shape of kubelet's
//! `streaming.Runtime` (`Exec`, `Attach`, `PortForward` over plain streams): the daemon
//! implements [`StreamingRuntime`]; the transports never see it, and it never sees a protocol.
//!
//! A session ends early when its client goes away: the session then drops the runtime's future
//! (the Rust form of kubelet's cancelled context), so dropping it must end what it started.

use std::future::Future;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A terminal size, as the resize channel carries it (`{"Width":W,"Height":H}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The stdio of an exec or attach session. Dropping a sender closes that stream towards the
/// client; `stdin` yielding None is the client's EOF.
#[derive(Debug, Default)]
pub struct Streams {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    /// None with a tty (a terminal has one output) or when the client did not ask for it.
    pub stderr: Option<mpsc::Sender<Bytes>>,
    /// The client's terminal size changes (with a tty only).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    pub tty: bool,
}

/// Why a session failed other than by the command's exit code; its message is what the client
/// is told (the `message` of a `metav1.Status`, or the text on port-forward's error stream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub message: String,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
        }
    }
}

/// One forwarded connection: the client's bytes in, and the way back.
#[derive(Debug)]
pub struct PortStream {
    /// What the client sends; None once it has closed its side.
    pub input: mpsc::Receiver<Bytes>,
    pub output: PortOutput,
}

/// The client's side of a forwarded connection: its data stream and kubelet's error stream for
/// it. Dropping it closes both, which tells the client the pod's side is done.
#[derive(Debug)]
pub struct PortOutput {
    data: mpsc::Sender<Bytes>,
    error: mpsc::Sender<Bytes>,
}

impl PortOutput {
    pub fn new(data: mpsc::Sender<Bytes>, error: mpsc::Sender<Bytes>) -> PortOutput {
        PortOutput { data, error }
    }

    /// Bytes from the pod to the client; an error once the client takes no more.
    pub async fn send(&self, data: Bytes) -> Result<(), mpsc::error::SendError<Bytes>> {
        self.data.send(data).await
    }

    /// Tell the client why forwarding failed (on the error stream), and close the output.
    pub async fn fail(self, failure: Failure) {
        let _ = self.error.send(Bytes::from(failure.message)).await;
    }
}

/// The container runtime behind the streaming server.
pub trait StreamingRuntime: Send + Sync + 'static {
    /// Run `cmd` in container `container_id` with `streams` as its stdio (a terminal when
    /// `streams.tty`); the command's exit code (128 + N when killed by signal N).
    fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        streams: Streams,
    ) -> impl Future<Output = Result<i32, Failure>> + Send;

    /// Connect `streams` to container `container_id`'s own stdio until that ends.
    fn attach(
        &self,
        container_id: &str,
        streams: Streams,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Forward one connection to `port` inside pod `sandbox_id` until both directions are done.
    /// A failure goes to `stream.output` ([`PortOutput::fail`]) rather than the result: the
    /// pod's side may end while the client still sends, and clients (kubectl) wait for the
    /// error stream to close before they close their own side.
    fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
        stream: PortStream,
    ) -> impl Future<Output = ()> + Send;
}
