//! The CRI streaming server (exec, attach, port-forward): an HTTP server on `[streaming]
//! address` that serves single-use tokens handed out by the Exec/Attach/PortForward RPCs, and
//! upgrades each connection to SPDY/3.1 ([`spdy`]) or WebSocket ([`ws`]).
//!
//! The transports hand the session logic protocol-neutral channels: [`CommandStreams`] for
//! exec/attach (stdin, stdout, stderr, resize, error) and [`PortStreams`] for each forwarded
//! connection. Bytes travel as [`bytes::Bytes`] over tokio channels; a closed channel is EOF.

pub mod portforward;
pub mod server;
pub mod session;
pub mod spdy;
pub mod ws;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// A terminal size, as the resize channel carries it (`{"Width":W,"Height":H}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Which streams a remote-command session has (from the request kept with the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expected {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// With a tty there is no separate stderr, and resize events may come.
    pub tty: bool,
}

/// The session's side of an exec/attach connection. Dropping a sender closes that stream
/// towards the client; `stdin` yielding None is the client's EOF (or disconnect).
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

/// One forwarded connection: bytes from the client (`data_in`), bytes to it (`data_out`), and
/// an error stream for a message when dialing or copying fails.
#[derive(Debug)]
pub struct PortStreams {
    pub port: u16,
    pub data_in: mpsc::Receiver<Bytes>,
    pub data_out: mpsc::Sender<Bytes>,
    pub error_out: mpsc::Sender<Bytes>,
}

/// The error channel's `metav1.Status` for an exit code (success for 0), as kubelet writes it.
pub fn status_json(exit_code: i32) -> Bytes {
    if exit_code == 0 {
        return Bytes::from_static(br#"{"metadata":{},"status":"Success"}"#);
    }
    Bytes::from(
        serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [exit code {exit_code}], exit code {exit_code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]},
        })
        .to_string(),
    )
}

/// The error channel's `metav1.Status` for a failure that is not an exit code.
pub fn failure_json(message: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            &status_json(0)[..],
            br#"{"metadata":{},"status":"Success"}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&status_json(3)).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let t: TerminalSize = serde_json::from_str(r#"{"Width":80,"Height":24}"#).unwrap();
        assert_eq!((t.width, t.height), (80, 24));
    }
}
