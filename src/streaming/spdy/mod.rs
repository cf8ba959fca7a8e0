//! SPDY/3.1 transport of the streaming server, in three layers:
//!
//! - [`frame`]: the wire format (frames, SPDY/3 header-block compression);
//! - [`connection`]: one connection's stream table and flow control, its reader and writer tasks;
//! - [`session`]: the stream roles of Kubernetes' remote-command and port-forward protocols,
//!   handed to the streaming session as protocol-neutral channels.
//!
//! kubectl, crictl and kubelet speak SPDY/3.1 through moby/spdystream after an HTTP `Upgrade:
//! SPDY/3.1` (answered by [`super::server`]). The client opens one stream per channel
//! (`streamtype` header: `error`, `stdin`, `stdout`, `stderr`, `resize`; for port-forward `data`
//! and `error` pairs carrying `port` and `requestid`); the server answers each SYN_STREAM with a
//! SYN_REPLY.

pub mod connection;
pub mod frame;
pub mod session;

#[cfg(test)]
mod test_client;

use std::time::Duration;

pub use session::{accept_command, accept_port_forward};

/// How long berth waits for an exec/attach client's streams.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The subprotocols of exec/attach, newest first.
pub const COMMAND_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// The subprotocol of port-forward.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// The subprotocol to answer (`X-Stream-Protocol-Version`): the first the client offers that
/// berth speaks for this kind of session. The client's order decides, as kubelet's
/// `httpstream.Handshake` does.
pub fn choose_protocol(offered: &[String], port_forward: bool) -> Option<&'static str> {
    let supported: &[&'static str] = if port_forward {
        &[PORT_FORWARD_PROTOCOL]
    } else {
        &COMMAND_PROTOCOLS
    };
    offered
        .iter()
        .find_map(|p| supported.iter().copied().find(|s| s == p))
}

/// Errors of the SPDY transport.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("SPDY header compression: {0}")]
    Compression(String),
    #[error("timed out after {timeout:?} waiting for the client's streams (missing: {missing})")]
    Timeout { timeout: Duration, missing: String },
    #[error("the client closed the connection before opening its streams")]
    Closed,
}
