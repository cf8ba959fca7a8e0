//! WebSocket transport of the streaming server: Kubernetes' channel protocols (what `kubectl
//! exec` speaks since v1.30 and `crictl --websocket-*` use).
//!
//! Every message starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize. The
//! base64 protocols send text messages: the channel as an ASCII digit, then base64. v5 adds a
//! close signal, `[255, channel]`, so a client can end stdin without closing the connection.
//! Port-forward uses two channels per requested port (data 2i, error 2i+1); the server's first
//! message on each is the port number, two bytes little-endian.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{CommandStreams, Expected, PortStreams, TerminalSize};

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

/// The protocol to answer: the newest the client offers (v5 only for exec/attach, as
/// kubelet); the plain channel protocol when it offers none; None when it offers only others.
pub fn choose_protocol(offered: &[&str], port_forward: bool) -> Option<Protocol> {
    if offered.is_empty() {
        return Some(Protocol::V1);
    }
    let mut prefs = vec![
        Protocol::V5,
        Protocol::V4,
        Protocol::V4Base64,
        Protocol::V1,
        Protocol::V1Base64,
    ];
    if port_forward {
        prefs.retain(|p| *p != Protocol::V5);
    }
    prefs.into_iter().find(|p| offered.contains(&p.name()))
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &str) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(client_key.as_bytes())
}

/// One outgoing message: channel and payload.
type Out = (u8, Bytes);

fn encode(protocol: Protocol, channel: u8, data: &[u8]) -> Message {
    if protocol.base64() {
        let mut s = String::with_capacity(1 + data.len() * 4 / 3 + 4);
        s.push(char::from(b'0' + channel % 10));
        s.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
        Message::Text(s.into())
    } else {
        let mut v = Vec::with_capacity(1 + data.len());
        v.push(channel);
        v.extend_from_slice(data);
        Message::Binary(v.into())
    }
}

/// A client message as (channel, payload); None for anything else.
fn decode(protocol: Protocol, msg: Message) -> Option<(u8, Vec<u8>)> {
    match msg {
        Message::Binary(b) if !b.is_empty() && !protocol.base64() => Some((b[0], b[1..].to_vec())),
        Message::Text(t) if protocol.base64() => {
            let t = t.as_str();
            let ch = t.as_bytes().first()?.checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(&t.as_bytes()[1..])
                .ok()?;
            Some((ch, data))
        }
        _ => None,
    }
}

/// Parse the resize JSON objects in `buf` (several may be concatenated); keeps an incomplete
/// tail for the next message.
fn take_sizes(buf: &mut Vec<u8>) -> Vec<TerminalSize> {
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

/// Forward a session's output channel into the single writer.
fn relay(
    mut rx: mpsc::Receiver<Bytes>,
    channel: u8,
    out: mpsc::Sender<Out>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if out.send((channel, b)).await.is_err() {
                return;
            }
        }
    })
}

/// Accept an exec/attach session on an upgraded connection (the 101 was sent by the caller).
pub async fn accept_command<T>(io: T, protocol: Protocol, expected: Expected) -> CommandStreams
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(16);
    let (stderr_tx, stderr_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<TerminalSize>(8);
    let (error_tx, error_rx) = oneshot::channel::<Bytes>();
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(32);

    // Reader: stdin, resize, the v5 close signal; the end of the connection is `gone`.
    let mut stdin_tx = expected.stdin.then_some(stdin_tx);
    tokio::spawn(async move {
        let mut pending_resize = Vec::new();
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some((ch, data)) = decode(protocol, msg) else {
                continue;
            };
            match ch {
                0 => {
                    if let Some(tx) = &stdin_tx
                        && tx.send(Bytes::from(data)).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                4 => {
                    pending_resize.extend_from_slice(&data);
                    for size in take_sizes(&mut pending_resize) {
                        let _ = resize_tx.try_send(size);
                    }
                }
                255 if protocol == Protocol::V5 && data.first() == Some(&0) => {
                    stdin_tx = None;
                }
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });

    // Writer: output in order, then the status, then a close frame.
    let mut relays = Vec::new();
    if expected.stdout {
        relays.push(relay(stdout_rx, 1, out_tx.clone()));
    }
    if expected.stderr && !expected.tty {
        relays.push(relay(stderr_rx, 2, out_tx.clone()));
    }
    drop(out_tx);
    tokio::spawn(async move {
        let mut error_rx = error_rx;
        let status = loop {
            tokio::select! {
                o = out_rx.recv() => match o {
                    Some((ch, data)) => {
                        if sink.send(encode(protocol, ch, &data)).await.is_err() {
                            return;
                        }
                    }
                    // Every output channel is closed; the status is all that is left.
                    None => break error_rx.await.ok(),
                },
                s = &mut error_rx => {
                    // Output already on its way goes first (briefly bounded).
                    let drain = async {
                        while let Some((ch, data)) = out_rx.recv().await {
                            if sink.send(encode(protocol, ch, &data)).await.is_err() {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                    break s.ok();
                }
            }
        };
        for r in relays {
            r.abort();
        }
        if let Some(status) = status
            && !status.is_empty()
        {
            let _ = sink.send(encode(protocol, 3, &status)).await;
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    });

    CommandStreams {
        stdin: expected.stdin.then_some(stdin_rx),
        stdout: expected.stdout.then_some(stdout_tx),
        stderr: (expected.stderr && !expected.tty).then_some(stderr_tx),
        resize: expected.tty.then_some(resize_rx),
        error: error_tx,
        gone: gone_rx,
    }
}

/// Accept a port-forward session for `ports`: one [`PortStreams`] per port, right away.
pub async fn accept_port_forward<T>(
    io: T,
    protocol: Protocol,
    ports: &[u16],
) -> (mpsc::Receiver<PortStreams>, oneshot::Receiver<()>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let (conns_tx, conns_rx) = mpsc::channel(ports.len().max(1));
    let (gone_tx, gone_rx) = oneshot::channel();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(32);
    let mut inputs = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        // The port number opens both channels.
        let _ = out_tx
            .send((data_ch, Bytes::copy_from_slice(&port.to_le_bytes())))
            .await;
        let _ = out_tx
            .send((err_ch, Bytes::copy_from_slice(&port.to_le_bytes())))
            .await;
        let (in_tx, in_rx) = mpsc::channel(16);
        let (data_tx, data_rx) = mpsc::channel(16);
        let (error_tx, error_rx) = mpsc::channel(4);
        relay(data_rx, data_ch, out_tx.clone());
        relay(error_rx, err_ch, out_tx.clone());
        inputs.push(Some(in_tx));
        let _ = conns_tx
            .send(PortStreams {
                port,
                data_in: in_rx,
                data_out: data_tx,
                error_out: error_tx,
            })
            .await;
    }
    drop(out_tx);
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some((ch, data)) = decode(protocol, msg) else {
                continue;
            };
            if ch % 2 == 0
                && let Some(slot) = inputs.get_mut(usize::from(ch / 2))
                && let Some(tx) = slot
                && tx.send(Bytes::from(data)).await.is_err()
            {
                *slot = None;
            }
        }
        let _ = gone_tx.send(());
    });
    tokio::spawn(async move {
        while let Some((ch, data)) = out_rx.recv().await {
            if sink.send(encode(protocol, ch, &data)).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    (conns_rx, gone_rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;

    async fn client(io: tokio::io::DuplexStream) -> WebSocketStream<tokio::io::DuplexStream> {
        WebSocketStream::from_raw_socket(io, Role::Client, None).await
    }

    #[test]
    fn protocols() {
        assert_eq!(choose_protocol(&[], false), Some(Protocol::V1));
        assert_eq!(
            choose_protocol(&["v4.channel.k8s.io", "v5.channel.k8s.io"], false),
            Some(Protocol::V5)
        );
        assert_eq!(
            choose_protocol(&["v5.channel.k8s.io", "v4.channel.k8s.io"], true),
            Some(Protocol::V4)
        );
        assert_eq!(
            choose_protocol(&["SPDY/3.1+portforward.k8s.io"], true),
            None
        );
        // RFC 6455's example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
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

    #[tokio::test]
    async fn exec_session_v5() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let server = tokio::spawn(accept_command(a, Protocol::V5, expected));
        let mut c = client(b).await;
        let mut s = server.await.unwrap();
        c.send(Message::Binary(b"\0hello".to_vec().into()))
            .await
            .unwrap();
        c.send(Message::Binary(vec![255, 0].into())).await.unwrap();
        let mut stdin = s.stdin.take().unwrap();
        assert_eq!(&stdin.recv().await.unwrap()[..], b"hello");
        assert!(stdin.recv().await.is_none(), "close signal is EOF");
        s.stdout
            .as_ref()
            .unwrap()
            .send(Bytes::from_static(b"out"))
            .await
            .unwrap();
        s.stderr
            .as_ref()
            .unwrap()
            .send(Bytes::from_static(b"err"))
            .await
            .unwrap();
        drop(s.stdout.take());
        drop(s.stderr.take());
        s.error.send(super::super::status_json(3)).unwrap();
        let mut got = Vec::new();
        while let Some(Ok(m)) = c.next().await {
            match m {
                Message::Binary(b) => got.push((b[0], b[1..].to_vec())),
                Message::Close(_) => break,
                _ => {}
            }
        }
        assert!(got.contains(&(1, b"out".to_vec())), "{got:?}");
        assert!(got.contains(&(2, b"err".to_vec())), "{got:?}");
        let last = got.last().unwrap();
        assert_eq!(last.0, 3);
        assert!(String::from_utf8_lossy(&last.1).contains("NonZeroExitCode"));
    }

    #[tokio::test]
    async fn base64_and_resize() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let server = tokio::spawn(accept_command(a, Protocol::V4Base64, expected));
        let mut c = client(b).await;
        let mut s = server.await.unwrap();
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        c.send(Message::Text(
            format!("4{}", b64(br#"{"Width":132,"Height":43}"#)).into(),
        ))
        .await
        .unwrap();
        c.send(Message::Text(format!("0{}", b64(b"ls\n")).into()))
            .await
            .unwrap();
        assert_eq!(
            s.resize.as_mut().unwrap().recv().await,
            Some(TerminalSize {
                width: 132,
                height: 43
            })
        );
        assert_eq!(
            &s.stdin.as_mut().unwrap().recv().await.unwrap()[..],
            b"ls\n"
        );
        s.stdout
            .as_ref()
            .unwrap()
            .send(Bytes::from_static(b"tty!"))
            .await
            .unwrap();
        match c.next().await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), format!("1{}", b64(b"tty!"))),
            other => panic!("{other:?}"),
        }
        drop(c);
        assert!(s.gone.await.is_ok());
    }

    #[tokio::test]
    async fn port_forward_framing() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server =
            tokio::spawn(async move { accept_port_forward(a, Protocol::V4, &[8080, 9090]).await });
        let mut c = client(b).await;
        let (mut conns, _gone) = server.await.unwrap();
        let mut first = Vec::new();
        for _ in 0..4 {
            match c.next().await {
                Some(Ok(Message::Binary(b))) => first.push(b.to_vec()),
                other => panic!("{other:?}"),
            }
        }
        assert!(first.contains(&vec![0, 0x90, 0x1f]), "{first:?}");
        assert!(first.contains(&vec![3, 0x82, 0x23]), "{first:?}");
        let p0 = conns.recv().await.unwrap();
        let mut p1 = conns.recv().await.unwrap();
        assert_eq!((p0.port, p1.port), (8080, 9090));
        c.send(Message::Binary(vec![2, b'h', b'i'].into()))
            .await
            .unwrap();
        assert_eq!(&p1.data_in.recv().await.unwrap()[..], b"hi");
        p1.data_out.send(Bytes::from_static(b"yo")).await.unwrap();
        match c.next().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], &[2, b'y', b'o']),
            other => panic!("{other:?}"),
        }
    }
}
