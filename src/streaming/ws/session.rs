//! The roles of Kubernetes' WebSocket protocols: an exec/attach session (stdin, stdout, stderr,
//! error and resize channels) or a port-forward session (a data and an error channel a port),
//! as the protocol-neutral channels the streaming session works with.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::channel::{Protocol, channels_of, decode, encode, status_payload, take_sizes};
use crate::streaming::{CommandStreams, Expected, PortStreams, TerminalSize};

/// One outgoing message: channel and payload.
type Out = (u8, Bytes);

/// Forward a port's output channel into the single writer.
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

/// The next message of an optional receiver; never resolves for None.
async fn recv_opt(rx: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next output of a command session as (channel, bytes), from whichever of stdout and
/// stderr has some (a closed one is set to None); None once both are closed.
async fn next_output(
    stdout: &mut Option<mpsc::Receiver<Bytes>>,
    stderr: &mut Option<mpsc::Receiver<Bytes>>,
) -> Option<(u8, Bytes)> {
    loop {
        if stdout.is_none() && stderr.is_none() {
            return None;
        }
        let (channel, got) = tokio::select! {
            b = recv_opt(stdout) => (1, b),
            b = recv_opt(stderr) => (2, b),
        };
        match got {
            Some(b) => return Some((channel, b)),
            None if channel == 1 => *stdout = None,
            None => *stderr = None,
        }
    }
}

/// How long a client has to answer our close frame (or to go) before the connection is
/// dropped.
const CLOSE_LINGER: Duration = if cfg!(test) {
    Duration::from_millis(200)
} else {
    Duration::from_secs(5)
};

/// Resolves [`CLOSE_LINGER`] after the writer is done (it signals, or fails and drops the
/// sender): the reader then stops waiting for the client's close.
async fn lingering(closing: oneshot::Receiver<()>) {
    let _ = closing.await;
    tokio::time::sleep(CLOSE_LINGER).await;
}

/// How long output still on its way may delay the status once the session has sent it.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Accept an exec/attach session on an upgraded connection (the 101 was sent by the caller).
///
/// Two tasks serve it: a reader (stdin, resize, v5's close signal; its end is `gone`) and a
/// writer (stdout and stderr in order of arrival, then the status on the error channel, then
/// a close frame). As kubelet, the writer first sends an empty message on the lowest channel
/// it writes (stdout, else stderr, else error): clients take it as "connection established".
/// Pings are answered by the WebSocket layer while the reader reads.
pub async fn accept_command<T>(io: T, protocol: Protocol, expected: Expected) -> CommandStreams
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let has_stderr = expected.stderr && !expected.tty;
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(16);
    let (stderr_tx, stderr_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<TerminalSize>(8);
    let (error_tx, mut error_rx) = oneshot::channel::<Bytes>();
    let (gone_tx, gone_rx) = oneshot::channel::<()>();

    // Reader: stdin, resize, the v5 close signal; the end of the connection is `gone`.
    let mut stdin_tx = expected.stdin.then_some(stdin_tx);
    let (closing_tx, closing_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut pending_resize = Vec::new();
        let linger = lingering(closing_rx);
        tokio::pin!(linger);
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                () = &mut linger => break,
            };
            let Some(Ok(msg)) = msg else { break };
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
                    // A runaway resize stream is dropped rather than buffered.
                    if pending_resize.len() > 4096 {
                        pending_resize.clear();
                    }
                    for size in take_sizes(&mut pending_resize) {
                        let _ = resize_tx.try_send(size);
                    }
                }
                255 if protocol == Protocol::V5 && data == [0] => {
                    stdin_tx = None;
                }
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });

    // Writer: the hello, output as it comes, then the status, then a close frame.
    let mut stdout_rx = expected.stdout.then_some(stdout_rx);
    let mut stderr_rx = has_stderr.then_some(stderr_rx);
    let hello = if stdout_rx.is_some() {
        1
    } else if stderr_rx.is_some() {
        2
    } else {
        3
    };
    tokio::spawn(async move {
        if sink.send(encode(protocol, hello, &[])).await.is_err() {
            return;
        }
        let status = loop {
            tokio::select! {
                biased;
                o = next_output(&mut stdout_rx, &mut stderr_rx) => match o {
                    Some((ch, data)) => {
                        if sink.send(encode(protocol, ch, &data)).await.is_err() {
                            return;
                        }
                    }
                    // Every output channel is closed; the status is all that is left.
                    None => break (&mut error_rx).await.ok(),
                },
                s = &mut error_rx => {
                    // Output still on its way goes first (briefly bounded).
                    let drain = async {
                        while let Some((ch, data)) =
                            next_output(&mut stdout_rx, &mut stderr_rx).await
                        {
                            if sink.send(encode(protocol, ch, &data)).await.is_err() {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(OUTPUT_DRAIN, drain).await;
                    break s.ok();
                }
            }
        };
        if let Some(payload) = status.and_then(|s| status_payload(protocol, &s)) {
            let _ = sink.send(encode(protocol, 3, &payload)).await;
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
        let _ = closing_tx.send(());
    });

    CommandStreams {
        stdin: expected.stdin.then_some(stdin_rx),
        stdout: expected.stdout.then_some(stdout_tx),
        stderr: has_stderr.then_some(stderr_tx),
        resize: expected.tty.then_some(resize_rx),
        error: error_tx,
        gone: gone_rx,
    }
}

/// The most ports one port-forward connection serves: two channels a port, numbered by a byte.
pub const MAX_PORTS: usize = 128;

/// Accept a port-forward session for `ports` (at most [`MAX_PORTS`]; more are ignored): one
/// [`PortStreams`] per port, right away. Port i has the data channel 2i and the error channel
/// 2i+1; the first message on each is the port, little-endian. The connection closes once the
/// session has dropped every port's senders; `gone` resolves when the client has gone away.
pub async fn accept_port_forward<T>(
    io: T,
    protocol: Protocol,
    ports: &[u16],
) -> (mpsc::Receiver<PortStreams>, oneshot::Receiver<()>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ports: Vec<u16> = ports.iter().copied().take(MAX_PORTS).collect();
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut stream) = ws.split();
    let (conns_tx, conns_rx) = mpsc::channel(ports.len().max(1));
    let (gone_tx, gone_rx) = oneshot::channel();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(32);
    let mut inputs = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let (data_ch, err_ch) = channels_of(i);
        let (in_tx, in_rx) = mpsc::channel(16);
        let (data_tx, data_rx) = mpsc::channel(16);
        let (error_tx, error_rx) = mpsc::channel(4);
        relay(data_rx, data_ch, out_tx.clone());
        relay(error_rx, err_ch, out_tx.clone());
        inputs.push(Some(in_tx));
        // Cannot block: the channel holds one entry a port.
        let _ = conns_tx.try_send(PortStreams {
            port,
            data_in: in_rx,
            data_out: data_tx,
            error_out: error_tx,
        });
    }
    drop(out_tx);
    let (closing_tx, closing_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let linger = lingering(closing_rx);
        tokio::pin!(linger);
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                () = &mut linger => break,
            };
            let Some(Ok(msg)) = msg else { break };
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
        // The port numbers open the channels, before anything the session writes.
        for (i, port) in ports.iter().enumerate() {
            let (data_ch, err_ch) = channels_of(i);
            for ch in [data_ch, err_ch] {
                if sink
                    .send(encode(protocol, ch, &port.to_le_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        while let Some((ch, data)) = out_rx.recv().await {
            if sink.send(encode(protocol, ch, &data)).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
        let _ = closing_tx.send(());
    });
    (conns_rx, gone_rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::{failure_json, status_json};
    use base64::Engine;
    use tokio::io::DuplexStream;

    type Client = WebSocketStream<DuplexStream>;

    fn b64(d: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(d)
    }

    /// A session on one end of a pipe and a tokio-tungstenite client on the other.
    async fn command(protocol: Protocol, expected: Expected) -> (CommandStreams, Client) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(accept_command(a, protocol, expected));
        let c = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (server.await.unwrap(), c)
    }

    /// Every (channel, payload) the server sends, decoded, until its close frame.
    async fn collect(c: &mut Client, protocol: Protocol) -> Vec<(u8, Vec<u8>)> {
        let mut got = Vec::new();
        // Reading on after the close frame sends the client's answer and ends the stream.
        while let Some(Ok(m)) = c.next().await {
            if let Some(d) = decode(protocol, m) {
                got.push(d);
            }
        }
        got
    }

    async fn next_data(c: &mut Client, protocol: Protocol) -> (u8, Vec<u8>) {
        loop {
            match c.next().await {
                Some(Ok(m)) => {
                    if let Some(d) = decode(protocol, m) {
                        return d;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    }

    const ALL: Expected = Expected {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    #[tokio::test]
    async fn exec_session_v5() {
        let (mut s, mut c) = command(Protocol::V5, ALL).await;
        assert!(s.resize.is_none(), "no resize without a tty");
        c.send(Message::Binary(b"\0hello".to_vec().into()))
            .await
            .unwrap();
        c.send(Message::Binary(vec![255, 0].into())).await.unwrap();
        let mut stdin = s.stdin.take().unwrap();
        assert_eq!(&stdin.recv().await.unwrap()[..], b"hello");
        assert!(stdin.recv().await.is_none(), "close signal is EOF");
        let stdout = s.stdout.take().unwrap();
        let stderr = s.stderr.take().unwrap();
        stdout.send(Bytes::from_static(b"out")).await.unwrap();
        stderr.send(Bytes::from_static(b"err")).await.unwrap();
        stdout.send(Bytes::from_static(b"put")).await.unwrap();
        drop((stdout, stderr));
        s.error.send(status_json(3)).unwrap();
        let got = collect(&mut c, Protocol::V5).await;
        // kubelet's "connection established": an empty stdout message first.
        assert_eq!(got[0], (1, Vec::new()), "{got:?}");
        let stdout: Vec<u8> = got
            .iter()
            .filter(|m| m.0 == 1)
            .flat_map(|m| m.1.clone())
            .collect();
        assert_eq!(stdout, b"output");
        assert!(got.contains(&(2, b"err".to_vec())), "{got:?}");
        let last = got.last().unwrap();
        assert_eq!(last.0, 3);
        let v: serde_json::Value = serde_json::from_slice(&last.1).unwrap();
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        // Our close frame answered, the client's end is `gone`.
        assert!(s.gone.await.is_ok());
    }

    #[tokio::test]
    async fn v4_has_no_close_signal_and_stdin_ends_with_the_connection() {
        let (mut s, mut c) = command(Protocol::V4, ALL).await;
        c.send(Message::Binary(vec![255, 0].into())).await.unwrap();
        c.send(Message::Binary(b"\0still open".to_vec().into()))
            .await
            .unwrap();
        let mut stdin = s.stdin.take().unwrap();
        assert_eq!(&stdin.recv().await.unwrap()[..], b"still open");
        c.close(None).await.unwrap();
        assert!(stdin.recv().await.is_none());
        assert!(s.gone.await.is_ok());
    }

    #[tokio::test]
    async fn base64_tty_and_resize() {
        let expected = Expected {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: true,
        };
        let (mut s, mut c) = command(Protocol::V4Base64, expected).await;
        assert!(s.stderr.is_none(), "a tty has no stderr");
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
        for want in ["1".to_string(), format!("1{}", b64(b"tty!"))] {
            match c.next().await {
                Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), want),
                other => panic!("{other:?}"),
            }
        }
        drop(c);
        assert!(s.gone.await.is_ok());
    }

    #[tokio::test]
    async fn hello_goes_to_the_lowest_writable_channel() {
        let only_stderr = Expected {
            stderr: true,
            ..Expected::default()
        };
        let (_s, mut c) = command(Protocol::V4, only_stderr).await;
        assert_eq!(next_data(&mut c, Protocol::V4).await, (2, Vec::new()));
        let (s, mut c) = command(Protocol::V4, Expected::default()).await;
        assert!(s.stdin.is_none() && s.stdout.is_none() && s.stderr.is_none());
        assert_eq!(next_data(&mut c, Protocol::V4).await, (3, Vec::new()));
        s.error.send(status_json(0)).unwrap();
        assert_eq!(
            collect(&mut c, Protocol::V4).await,
            vec![(3, status_json(0).to_vec())]
        );
    }

    #[tokio::test]
    async fn pre_v4_error_channel_is_the_message() {
        let (s, mut c) = command(Protocol::V1, ALL).await;
        drop((s.stdout, s.stderr));
        s.error.send(status_json(0)).unwrap();
        assert_eq!(collect(&mut c, Protocol::V1).await, vec![(1, Vec::new())]);
        let (s, mut c) = command(Protocol::V1Base64, ALL).await;
        drop((s.stdout, s.stderr));
        s.error.send(failure_json("boom")).unwrap();
        let got = collect(&mut c, Protocol::V1Base64).await;
        assert_eq!(got.last(), Some(&(3, b"boom".to_vec())));
    }

    #[tokio::test]
    async fn output_before_status_while_the_session_holds_stdout() {
        let (mut s, mut c) = command(Protocol::V5, ALL).await;
        let stdout = s.stdout.take().unwrap();
        for i in 0..10u8 {
            stdout.send(Bytes::from(vec![b'0' + i])).await.unwrap();
        }
        s.error.send(status_json(0)).unwrap();
        let got = collect(&mut c, Protocol::V5).await;
        let out: Vec<u8> = got
            .iter()
            .filter(|m| m.0 == 1)
            .flat_map(|m| m.1.clone())
            .collect();
        assert_eq!(out, b"0123456789");
        assert_eq!(got.last().map(|m| m.0), Some(3));
        drop(stdout);
    }

    #[tokio::test]
    async fn pings_are_answered() {
        let (s, mut c) = command(Protocol::V5, ALL).await;
        c.send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .unwrap();
        loop {
            match c.next().await {
                Some(Ok(Message::Pong(p))) => {
                    assert_eq!(&p[..], b"are you there");
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        drop(s);
    }

    #[tokio::test]
    async fn client_disconnect_is_gone() {
        let (mut s, c) = command(Protocol::V5, ALL).await;
        drop(c);
        assert!(s.gone.await.is_ok());
        assert!(s.stdin.as_mut().unwrap().recv().await.is_none());
    }

    #[tokio::test]
    async fn a_client_that_never_answers_the_close_is_dropped() {
        let (s, mut c) = command(Protocol::V4, Expected::default()).await;
        s.error.send(status_json(0)).unwrap();
        // Read up to our close frame, then neither answer nor hang up.
        while let Some(Ok(m)) = c.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
        tokio::time::timeout(Duration::from_secs(5), s.gone)
            .await
            .expect("gone after the linger")
            .unwrap();
        // The connection is gone too.
        let mut end = c.into_inner();
        let mut buf = [0u8; 16];
        loop {
            match tokio::io::AsyncReadExt::read(&mut end, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    async fn port_forward(
        protocol: Protocol,
        ports: &[u16],
    ) -> (mpsc::Receiver<PortStreams>, oneshot::Receiver<()>, Client) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let ports = ports.to_vec();
        let server = tokio::spawn(async move { accept_port_forward(a, protocol, &ports).await });
        let c = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let (conns, gone) = server.await.unwrap();
        (conns, gone, c)
    }

    #[tokio::test]
    async fn port_forward_framing() {
        let (mut conns, gone, mut c) = port_forward(Protocol::V4, &[8080, 9090]).await;
        let mut first = Vec::new();
        for _ in 0..4 {
            first.push(next_data(&mut c, Protocol::V4).await);
        }
        assert_eq!(
            first,
            vec![
                (0, vec![0x90, 0x1f]),
                (1, vec![0x90, 0x1f]),
                (2, vec![0x82, 0x23]),
                (3, vec![0x82, 0x23]),
            ]
        );
        let p0 = conns.recv().await.unwrap();
        let mut p1 = conns.recv().await.unwrap();
        assert_eq!((p0.port, p1.port), (8080, 9090));
        c.send(Message::Binary(vec![2, b'h', b'i'].into()))
            .await
            .unwrap();
        // Writes on an error channel go nowhere.
        c.send(Message::Binary(vec![1, b'x'].into())).await.unwrap();
        assert_eq!(&p1.data_in.recv().await.unwrap()[..], b"hi");
        p1.data_out.send(Bytes::from_static(b"yo")).await.unwrap();
        assert_eq!(next_data(&mut c, Protocol::V4).await, (2, b"yo".to_vec()));
        p0.error_out
            .send(Bytes::from_static(b"connection refused"))
            .await
            .unwrap();
        assert_eq!(
            next_data(&mut c, Protocol::V4).await,
            (1, b"connection refused".to_vec())
        );
        // All ports done: the server closes; the client's answer is `gone`.
        drop((p0, p1));
        assert!(collect(&mut c, Protocol::V4).await.is_empty());
        assert!(gone.await.is_ok());
    }

    #[tokio::test]
    async fn port_forward_base64_and_many_ports() {
        let ports: Vec<u16> = (1..=200).collect();
        let (mut conns, _gone, mut c) = port_forward(Protocol::V4Base64, &ports).await;
        for i in 0..MAX_PORTS {
            let port = u16::try_from(i + 1).unwrap();
            for ch in [2 * i, 2 * i + 1] {
                let want = format!(
                    "{}{}",
                    char::from(b'0'.wrapping_add(u8::try_from(ch).unwrap())),
                    b64(&port.to_le_bytes())
                );
                match c.next().await {
                    Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), want),
                    other => panic!("{other:?}"),
                }
            }
        }
        let mut n = 0;
        while let Ok(p) = conns.try_recv() {
            assert_eq!(usize::from(p.port), n + 1);
            n += 1;
        }
        assert_eq!(n, MAX_PORTS);
    }
}
