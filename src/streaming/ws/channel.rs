//! The channel framing of Kubernetes' WebSocket protocols: which protocol a client gets, and how
//! a (channel, payload) pair becomes a message and back.

use base64::Engine;
use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use crate::streaming::TerminalSize;

/// The channel protocols, newest first in preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `v5.channel.k8s.io`: v4 plus the close signal.
    V5,
    /// `v4.channel.k8s.io`: binary, error channel carries a metav1.Status.
    V4,
    /// `v4.base64.channel.k8s.io`.
    V4Base64,
    /// `channel.k8s.io` (also what a client that offers nothing gets).
    V1,
    /// `base64.channel.k8s.io`.
    V1Base64,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V5 => "v5.channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V4Base64 => "v4.base64.channel.k8s.io",
            Protocol::V1 => "channel.k8s.io",
            Protocol::V1Base64 => "base64.channel.k8s.io",
        }
    }

    fn base64(self) -> bool {
        matches!(self, Protocol::V4Base64 | Protocol::V1Base64)
    }
}

/// The protocol to answer: the newest the client offers; the plain channel protocol when it
/// offers none; None when it offers only others. Port-forward takes only the v4 protocols (or
/// none), as kubelet: v5's close signal and the pre-v4 names are remote-command protocols.
pub fn choose_protocol(offered: &[&str], port_forward: bool) -> Option<Protocol> {
    if offered.is_empty() {
        return Some(Protocol::V1);
    }
    let prefs: &[Protocol] = if port_forward {
        &[Protocol::V4, Protocol::V4Base64]
    } else {
        &[
            Protocol::V5,
            Protocol::V4,
            Protocol::V4Base64,
            Protocol::V1,
            Protocol::V1Base64,
        ]
    };
    prefs.iter().copied().find(|p| offered.contains(&p.name()))
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &str) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(client_key.as_bytes())
}

pub(super) fn encode(protocol: Protocol, channel: u8, data: &[u8]) -> Message {
    if protocol.base64() {
        let mut s = String::with_capacity(1 + data.len() * 4 / 3 + 4);
        // As kubelet: '0' + channel in a byte, as a character.
        s.push(char::from(b'0'.wrapping_add(channel)));
        s.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
        Message::Text(s.into())
    } else {
        let mut v = Vec::with_capacity(1 + data.len());
        v.push(channel);
        v.extend_from_slice(data);
        Message::Binary(v.into())
    }
}

/// A client message as (channel, payload); None for control frames and empty messages.
/// Text and binary frames are read alike (as kubelet does); the protocol decides the codec.
pub(super) fn decode(protocol: Protocol, msg: Message) -> Option<(u8, Vec<u8>)> {
    let (first, rest): (u8, &[u8]) = match &msg {
        // A base64 channel is the character '0' + channel (past '9' for port-forward's
        // higher channels, beyond ASCII from channel 80 on).
        Message::Text(t) if protocol.base64() => {
            let c = t.as_str().chars().next()?;
            (
                u8::try_from(u32::from(c)).ok()?,
                &t.as_bytes()[c.len_utf8()..],
            )
        }
        Message::Binary(b) => {
            let (f, r) = b.split_first()?;
            (*f, r)
        }
        Message::Text(t) => {
            let (f, r) = t.as_bytes().split_first()?;
            (*f, r)
        }
        _ => return None,
    };
    if protocol.base64() {
        let data = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        Some((first.wrapping_sub(b'0'), data))
    } else {
        Some((first, rest.to_vec()))
    }
}

/// What goes on the error channel for a final `metav1.Status`: v4 and later carry the JSON;
/// the pre-v4 protocols carry only a failure's message, and nothing on success (kubelet's
/// `v1WriteStatusFunc`).
pub(super) fn status_payload(protocol: Protocol, status: &[u8]) -> Option<Bytes> {
    if status.is_empty() {
        return None;
    }
    if !matches!(protocol, Protocol::V1 | Protocol::V1Base64) {
        return Some(Bytes::copy_from_slice(status));
    }
    let v: serde_json::Value = match serde_json::from_slice(status) {
        Ok(v) => v,
        // Not a Status: pass it on as it is.
        Err(_) => return Some(Bytes::copy_from_slice(status)),
    };
    if v["status"] == "Success" {
        return None;
    }
    let msg = v["message"].as_str().unwrap_or("error");
    Some(Bytes::copy_from_slice(msg.as_bytes()))
}

/// Parse the resize JSON objects in `buf` (several may be concatenated); keeps an incomplete
/// tail for the next message.
pub(super) fn take_sizes(buf: &mut Vec<u8>) -> Vec<TerminalSize> {
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<TerminalSize>();
    while let Some(Ok(size)) = it.next() {
        out.push(size);
        consumed = it.byte_offset();
    }
    buf.drain(..consumed);
    out
}
/// Port i's (data, error) channels; i < [`MAX_PORTS`].
pub(super) fn channels_of(i: usize) -> (u8, u8) {
    let data = u8::try_from(2 * i).unwrap_or(u8::MAX - 1);
    (data, data.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::{failure_json, status_json};

    #[test]
    fn protocols() {
        assert_eq!(choose_protocol(&[], false), Some(Protocol::V1));
        assert_eq!(
            choose_protocol(&["v4.channel.k8s.io", "v5.channel.k8s.io"], false),
            Some(Protocol::V5)
        );
        assert_eq!(
            choose_protocol(&["base64.channel.k8s.io", "channel.k8s.io"], false),
            Some(Protocol::V1)
        );
        assert_eq!(
            choose_protocol(&["v4.base64.channel.k8s.io"], false),
            Some(Protocol::V4Base64)
        );
        assert_eq!(choose_protocol(&["v9.channel.k8s.io"], false), None);
        // Port-forward: the v4 protocols, or none offered.
        assert_eq!(choose_protocol(&[], true), Some(Protocol::V1));
        assert_eq!(
            choose_protocol(&["v5.channel.k8s.io", "v4.channel.k8s.io"], true),
            Some(Protocol::V4)
        );
        assert_eq!(
            choose_protocol(&["v4.base64.channel.k8s.io"], true),
            Some(Protocol::V4Base64)
        );
        assert_eq!(choose_protocol(&["channel.k8s.io"], true), None);
        assert_eq!(
            choose_protocol(&["SPDY/3.1+portforward.k8s.io"], true),
            None
        );
        for p in [
            Protocol::V5,
            Protocol::V4,
            Protocol::V4Base64,
            Protocol::V1,
            Protocol::V1Base64,
        ] {
            assert_eq!(choose_protocol(&[p.name()], false), Some(p));
        }
        // RFC 6455's example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn codecs() {
        assert_eq!(
            encode(Protocol::V4, 2, b"x"),
            Message::Binary(vec![2, b'x'].into())
        );
        assert_eq!(
            encode(Protocol::V1Base64, 1, b"hi"),
            Message::Text("1aGk=".into())
        );
        assert_eq!(
            encode(Protocol::V4Base64, 3, b""),
            Message::Text("3".into())
        );
        assert_eq!(
            decode(Protocol::V4Base64, Message::Text("0aGk=".into())),
            Some((0, b"hi".to_vec()))
        );
        // Frame type does not matter, the protocol's codec does.
        assert_eq!(
            decode(
                Protocol::V4Base64,
                Message::Binary(b"0aGk=".to_vec().into())
            ),
            Some((0, b"hi".to_vec()))
        );
        assert_eq!(
            decode(Protocol::V5, Message::Binary(vec![255, 0].into())),
            Some((255, vec![0]))
        );
        assert_eq!(
            decode(Protocol::V4, Message::Binary(Vec::new().into())),
            None
        );
        assert_eq!(
            decode(Protocol::V4Base64, Message::Text("0!!".into())),
            None
        );
        assert_eq!(decode(Protocol::V4, Message::Ping(Vec::new().into())), None);
    }

    #[test]
    fn status_per_protocol() {
        let ok = status_json(0);
        let bad = status_json(3);
        assert_eq!(status_payload(Protocol::V5, &ok), Some(ok.clone()));
        assert_eq!(status_payload(Protocol::V4Base64, &bad), Some(bad.clone()));
        assert_eq!(status_payload(Protocol::V1, &ok), None);
        let msg = status_payload(Protocol::V1Base64, &failure_json("no such container"));
        assert_eq!(msg.as_deref(), Some(&b"no such container"[..]));
        let msg = status_payload(Protocol::V1, &bad).unwrap();
        assert!(msg.starts_with(b"command terminated with non-zero exit code"));
        assert_eq!(status_payload(Protocol::V4, b""), None);
    }

    #[test]
    fn resize_json_split_and_concatenated() {
        let mut buf = br#"{"Width":80,"Height":24}{"Width":100,"#.to_vec();
        assert_eq!(
            take_sizes(&mut buf),
            vec![TerminalSize {
                width: 80,
                height: 24
            }]
        );
        buf.extend_from_slice(br#""Height":40}"#);
        assert_eq!(
            take_sizes(&mut buf),
            vec![TerminalSize {
                width: 100,
                height: 40
            }]
        );
        assert!(buf.is_empty());
    }
}
