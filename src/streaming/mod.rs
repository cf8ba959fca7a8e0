//! The CRI streaming server (exec, attach, port-forward). It knows nothing of the daemon: it
//! runs sessions against a [`StreamingRuntime`], which the daemon implements.
//!
//! Layers, from the wire up:
//! - [`server`]: the HTTP server on `[streaming] address`, the single-use tokens the
//!   Exec/Attach/PortForward RPCs hand out, and the protocol upgrade;
//! - [`spdy`] and [`ws`]: the two transports (SPDY/3.1, WebSocket). Each only translates its
//!   frames into protocol-neutral channels: [`CommandStreams`] for exec/attach (stdin, stdout,
//!   stderr, resize, the final status) and [`PortStreams`] for each forwarded connection;
//! - [`session`]: what a token was issued for, run on the [`StreamingRuntime`] ([`runtime`]),
//!   its result translated into the protocol's `metav1.Status` ([`status`]).
//!
//! Bytes travel as [`bytes::Bytes`] over tokio channels; a closed channel is EOF.

pub mod runtime;
pub mod server;
pub mod session;
pub mod spdy;
pub mod status;
pub mod ws;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub use runtime::{Failure, PortOutput, PortStream, StreamingRuntime, Streams, TerminalSize};
pub use status::{failure_json, status_json};

/// Which streams a remote-command session has (from the request kept with the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expected {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// With a tty there is no separate stderr, and resize events may come.
    pub tty: bool,
}

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// A remote-command session (exec or attach) with these streams.
    Command {
        command: Command,
        expected: Expected,
    },
    PortForward {
        sandbox_id: String,
    },
}

/// The remote command of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec {
        container_id: String,
        cmd: Vec<String>,
    },
    Attach {
        container_id: String,
    },
}

impl Pending {
    /// Whether the session forwards ports (else it runs a remote command).
    pub fn is_port_forward(&self) -> bool {
        matches!(self, Pending::PortForward { .. })
    }
}

/// A transport's exec/attach connection, as the session gets it. Dropping a sender closes that
/// stream towards the client; `stdin` yielding None is the client's EOF (or disconnect).
#[derive(Debug)]
pub struct CommandStreams {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    pub stderr: Option<mpsc::Sender<Bytes>>,
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// The final status for the error channel: a `metav1.Status` JSON (see [`status_json`]).
    /// The transport writes it, closes everything and ends the connection.
    pub error: oneshot::Sender<Bytes>,
    /// Resolves when the client has gone away (connection closed or reset).
    pub gone: oneshot::Receiver<()>,
}

/// One forwarded connection of a transport: bytes from the client (`data_in`), bytes to it
/// (`data_out`), and an error stream for a message when dialing or copying fails.
#[derive(Debug)]
pub struct PortStreams {
    pub port: u16,
    pub data_in: mpsc::Receiver<Bytes>,
    pub data_out: mpsc::Sender<Bytes>,
    pub error_out: mpsc::Sender<Bytes>,
}
