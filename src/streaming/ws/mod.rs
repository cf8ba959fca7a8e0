//! WebSocket transport of the streaming server: Kubernetes' channel protocols (what `kubectl
//! exec` speaks since v1.30 and `crictl --websocket-*` use).
//!
//! Every message starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize. The
//! base64 protocols send text messages: the channel as an ASCII digit, then base64. v5 adds a
//! close signal, `[255, channel]`, so a client can end stdin without closing the connection.
//! Port-forward uses two channels per requested port (data 2i, error 2i+1); the server's first
//! message on each is the port number, two bytes little-endian.
//!
//! As kubelet's `wsstream`: an exec/attach session opens with an empty message on its lowest
//! output channel; v4 and later put the final `metav1.Status` JSON on the error channel, the
//! pre-v4 protocols only a failure's message; then the server sends a close frame.
//!
//! [`channel`] holds the framing (protocols, channel numbers, codecs); [`session`] the roles of
//! remote-command and port-forward, handed to the streaming session as protocol-neutral channels.

pub mod channel;
pub mod session;

pub use channel::{Protocol, accept_key, choose_protocol};
pub use session::{MAX_PORTS, accept_command, accept_port_forward};
