//! The stream roles of Kubernetes' SPDY protocols: which streams a remote-command (exec,
//! attach) or port-forward client opens, and how they become the protocol-neutral channels the
//! streaming session works with ([`CommandStreams`], [`PortStreams`]).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};

use super::SpdyError;
use super::connection::{CHANNEL_DEPTH, LINGER, NewStream, Started, pump, start};
use crate::streaming::{CommandStreams, Expected, PortStreams, TerminalSize};

/// How long pumps may take to flush what was queued before the final status.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses the resize stream: concatenated `{"Width":W,"Height":H}` objects, split anyhow.
async fn parse_resize(mut data: mpsc::Receiver<Bytes>, tx: mpsc::Sender<TerminalSize>) {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = data.recv().await {
        buf.extend_from_slice(&chunk);
        let mut sizes = Vec::new();
        let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<TerminalSize>();
        let consumed = loop {
            match it.next() {
                Some(Ok(size)) => sizes.push(size),
                Some(Err(e)) if e.is_eof() => break it.byte_offset(),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "bad resize message");
                    break buf.len();
                }
                None => break buf.len(),
            }
        };
        buf.drain(..consumed);
        if buf.len() > 4096 {
            buf.clear();
        }
        for size in sizes {
            if tx.send(size).await.is_err() {
                return;
            }
        }
    }
}

fn kind_of(s: &NewStream) -> String {
    s.header("streamtype")
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Accepts an exec/attach connection: waits (up to `timeout`) until the client has opened the
/// error stream and every stream `expected` needs, then runs the connection in the background.
/// With a tty the resize stream may come at any time (and never, for v1/v2 clients).
///
/// The session writes the final status with [`CommandStreams::error`]: berth then flushes what
/// was already queued on stdout/stderr, writes the status on the error stream, closes every
/// stream and the connection.
pub async fn accept_command<T>(
    io: T,
    expected: Expected,
    timeout: Duration,
) -> Result<CommandStreams, SpdyError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut started = start(io)?;
    let required: Vec<&str> = [
        Some("error"),
        expected.stdin.then_some("stdin"),
        expected.stdout.then_some("stdout"),
        (expected.stderr && !expected.tty).then_some("stderr"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut found: HashMap<String, NewStream> = HashMap::new();
    let waited = tokio::time::timeout(timeout, async {
        while !required.iter().all(|k| found.contains_key(*k)) {
            let Some(s) = started.streams.recv().await else {
                return Err(SpdyError::Closed);
            };
            let kind = kind_of(&s);
            match kind.as_str() {
                "error" | "stdin" | "stdout" | "stderr" | "resize" => {
                    found.entry(kind).or_insert(s);
                }
                other => tracing::debug!(streamtype = other, "ignoring SPDY stream"),
            }
        }
        Ok(())
    })
    .await;
    match waited {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            started.abort();
            return Err(e);
        }
        Err(_) => {
            started.abort();
            let missing: Vec<&str> = required
                .iter()
                .filter(|k| !found.contains_key(**k))
                .copied()
                .collect();
            return Err(SpdyError::Timeout {
                timeout,
                missing: missing.join(", "),
            });
        }
    }

    let Started {
        conn,
        mut streams,
        reader,
        writer: _,
        gone,
    } = started;
    let (closing_tx, closing) = watch::channel(false);
    let mut pumps = Vec::new();
    let mut output = |kind: &str, wanted: bool| -> Option<mpsc::Sender<Bytes>> {
        let s = found.get(kind).filter(|_| wanted)?;
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        pumps.push(tokio::spawn(pump(s.id, rx, conn.clone(), closing.clone())));
        Some(tx)
    };
    let stdout = output("stdout", expected.stdout);
    let stderr = output("stderr", expected.stderr);
    let stdin = found
        .remove("stdin")
        .filter(|_| expected.stdin)
        .map(|s| s.data);
    let (resize_tx, resize) = if expected.tty {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let mut have_resize = false;
    if let (Some(s), Some(tx)) = (found.remove("resize"), &resize_tx) {
        tokio::spawn(parse_resize(s.data, tx.clone()));
        have_resize = true;
    }
    let error_id = found.get("error").map(|s| s.id).unwrap_or_default();
    drop(found);
    let (error, mut status_rx) = oneshot::channel::<Bytes>();

    tokio::spawn(async move {
        let status = loop {
            tokio::select! {
                status = &mut status_rx => break status.ok(),
                s = streams.recv() => match s {
                    Some(s) => {
                        if let (false, "resize", Some(tx)) = (have_resize, kind_of(&s).as_str(), &resize_tx) {
                            tokio::spawn(parse_resize(s.data, tx.clone()));
                            have_resize = true;
                        }
                    }
                    // The connection is gone; pumps notice on their own.
                    None => return,
                },
            }
        };
        drop(resize_tx);
        closing_tx.send_replace(true);
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        for p in &mut pumps {
            if tokio::time::timeout_at(deadline, &mut *p).await.is_err() {
                p.abort();
            }
        }
        if let Some(status) = status {
            let _ = conn.send_data(error_id, status).await;
        }
        conn.close().await;
        // Let the client read everything and close first (closing with unread input would
        // reset the connection under it).
        let mut reader = reader;
        if tokio::time::timeout(LINGER, &mut reader).await.is_err() {
            reader.abort();
        }
        conn.shared.mark_dead();
    });

    Ok(CommandStreams {
        stdin,
        stdout,
        stderr,
        resize,
        error,
        gone,
    })
}

#[derive(Default)]
struct Pair {
    port: Option<String>,
    data: Option<(u32, mpsc::Receiver<Bytes>)>,
    error: Option<u32>,
}

/// Accepts a port-forward connection: yields one [`PortStreams`] per pair of `data` and `error`
/// streams sharing a `requestid` (streams without one pair up as kubelet pairs old clients':
/// error stream N with data stream N+2). The second receiver resolves when the connection ends.
pub async fn accept_port_forward<T>(
    io: T,
) -> Result<(mpsc::Receiver<PortStreams>, oneshot::Receiver<()>), SpdyError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Started {
        conn,
        mut streams,
        reader: _,
        writer: _,
        gone,
    } = start(io)?;
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tokio::spawn(async move {
        // Never set: port-forward streams end one by one.
        let (_closing_tx, closing) = watch::channel(false);
        let mut pending: HashMap<String, Pair> = HashMap::new();
        while let Some(s) = streams.recv().await {
            let kind = kind_of(&s);
            let request = match s.header("requestid") {
                Some(r) => r.to_string(),
                None if kind == "data" => s.id.saturating_sub(2).to_string(),
                None => s.id.to_string(),
            };
            let pair = pending.entry(request.clone()).or_default();
            if let Some(port) = s.header("port") {
                pair.port = Some(port.to_string());
            }
            match kind.as_str() {
                "data" if pair.data.is_none() => pair.data = Some((s.id, s.data)),
                "error" if pair.error.is_none() => pair.error = Some(s.id),
                other => {
                    tracing::debug!(streamtype = other, request, "ignoring SPDY stream");
                    continue;
                }
            }
            let (Some(_), Some(_)) = (&pair.data, pair.error) else {
                continue;
            };
            let Some(Pair {
                port,
                data: Some((data_id, data_in)),
                error: Some(error_id),
            }) = pending.remove(&request)
            else {
                continue;
            };
            let port_text = port.unwrap_or_default();
            let Ok(port) = port_text.parse::<u16>() else {
                let conn = conn.clone();
                tokio::spawn(async move {
                    let msg =
                        format!("invalid port {port_text:?} in port-forward request {request}");
                    let _ = conn.send_data(error_id, Bytes::from(msg)).await;
                    let _ = conn.send_fin(error_id).await;
                    let _ = conn.send_fin(data_id).await;
                });
                continue;
            };
            let (data_out, data_rx) = mpsc::channel(CHANNEL_DEPTH);
            let (error_out, error_rx) = mpsc::channel(CHANNEL_DEPTH);
            tokio::spawn(pump(data_id, data_rx, conn.clone(), closing.clone()));
            tokio::spawn(pump(error_id, error_rx, conn.clone(), closing.clone()));
            let streams = PortStreams {
                port,
                data_in,
                data_out,
                error_out,
            };
            if tx.send(streams).await.is_err() {
                // Nobody serves this connection any more.
                conn.close().await;
                return;
            }
        }
    });
    Ok((rx, gone))
}

#[cfg(test)]
mod tests {
    use super::super::frame::{FLAG_FIN, Frame};
    use super::super::test_client::{Client, T, st};
    use super::*;

    #[tokio::test]
    async fn exec_session() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let server = tokio::spawn(accept_command(b, expected, T));
        let mut c = Client::new(a);
        let err = c.open(&st("error")).await;
        let stdin = c.open(&st("stdin")).await;
        let stdout = c.open(&st("stdout")).await;
        let stderr = c.open(&st("stderr")).await;
        for id in [err, stdin, stdout, stderr] {
            assert!(matches!(c.next_nwu().await, Some(Frame::SynReply { id: i, .. }) if i == id));
        }
        let mut s = server.await.unwrap().unwrap();
        assert!(s.resize.is_none());
        c.send(Frame::Ping { id: 1 }).await;
        assert_eq!(c.next_nwu().await, Some(Frame::Ping { id: 1 }));

        c.data(stdin, b"abc", false).await;
        c.data(stdin, b"def", true).await;
        let mut input = Vec::new();
        let mut rx = s.stdin.take().unwrap();
        while let Some(b) = rx.recv().await {
            input.extend_from_slice(&b);
        }
        assert_eq!(input, b"abcdef");

        // Output still queued when the status is sent must go out before it.
        let out = s.stdout.take().unwrap();
        let errw = s.stderr.take().unwrap();
        out.send(Bytes::from_static(b"hello ")).await.unwrap();
        out.send(Bytes::from_static(b"world")).await.unwrap();
        errw.send(Bytes::from_static(b"oops")).await.unwrap();
        s.error.send(crate::streaming::status_json(3)).unwrap();
        let (got, goaway) = c.drain().await;
        assert!(goaway);
        assert_eq!(got[&stdout], (b"hello world".to_vec(), true));
        assert_eq!(got[&stderr], (b"oops".to_vec(), true));
        let (status, fin) = &got[&err];
        assert!(fin);
        let v: serde_json::Value = serde_json::from_slice(status).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        drop(c);
        tokio::time::timeout(T, s.gone).await.unwrap().unwrap();
        assert!(out.send(Bytes::from_static(b"late")).await.is_err());
    }

    #[tokio::test]
    async fn tty_resize_and_late_resize_stream() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: false,
            stdout: true,
            stderr: true,
            tty: true,
        };
        let server = tokio::spawn(accept_command(b, expected, T));
        let mut c = Client::new(a);
        c.open(&st("error")).await;
        c.open(&st("stdout")).await;
        let mut s = server.await.unwrap().unwrap();
        assert!(s.stderr.is_none() && s.stdin.is_none());
        let resize = c.open(&st("resize")).await;
        c.data(resize, br#"{"Width":80,"Height":24}{"Width":1"#, false)
            .await;
        c.data(resize, b"00,\"Height\":50}\n{\"Width\":7,", false)
            .await;
        c.data(resize, br#""Height":9}"#, true).await;
        let mut rx = s.resize.take().unwrap();
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let size = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
            sizes.push((size.width, size.height));
        }
        assert_eq!(sizes, [(80, 24), (100, 50), (7, 9)]);
        // The status alone also ends the session when the session keeps its senders.
        let _keep = s.stdout.take();
        s.error.send(crate::streaming::status_json(0)).unwrap();
        let (got, goaway) = c.drain().await;
        assert!(goaway);
        assert_eq!(got[&1].0, br#"{"metadata":{},"status":"Success"}"#);
        assert!(got[&3].1, "stdout FIN");
        // The server closed every stream it had not closed.
        assert!(got[&resize].1);
    }

    #[tokio::test]
    async fn missing_streams_time_out() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: true,
            stdout: true,
            ..Default::default()
        };
        let server = tokio::spawn(accept_command(b, expected, Duration::from_millis(200)));
        let mut c = Client::new(a);
        c.open(&st("error")).await;
        c.open(&st("stdout")).await;
        match server.await.unwrap() {
            Err(SpdyError::Timeout { missing, .. }) => assert_eq!(missing, "stdin"),
            other => panic!("{other:?}"),
        }
        // And a client that goes away early is an error too.
        let (a, b) = tokio::io::duplex(1 << 16);
        drop(a);
        let r = accept_command(b, expected, T).await;
        assert!(matches!(r, Err(SpdyError::Closed)), "{r:?}");
    }

    #[tokio::test]
    async fn port_forward_pairs() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut c = Client::new(a);
        let (mut rx, gone) = accept_port_forward(b).await.unwrap();
        let e1 = c
            .open(&[
                ("streamtype", "error"),
                ("port", "8080"),
                ("requestid", "0"),
            ])
            .await;
        let e2 = c
            .open(&[
                ("streamtype", "error"),
                ("port", "9090"),
                ("requestid", "1"),
            ])
            .await;
        let d2 = c
            .open(&[("streamtype", "data"), ("port", "9090"), ("requestid", "1")])
            .await;
        let d1 = c
            .open(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")])
            .await;
        // An old client without request ids: error N pairs with data N+2.
        let e3 = c.open(&[("streamtype", "error"), ("port", "7070")]).await;
        let d3 = c.open(&[("streamtype", "data"), ("port", "7070")]).await;
        let p2 = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        let mut p1 = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        let p3 = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        assert_eq!((p1.port, p2.port, p3.port), (8080, 9090, 7070));

        c.data(d1, b"ping", true).await;
        assert_eq!(&p1.data_in.recv().await.unwrap()[..], b"ping");
        assert!(p1.data_in.recv().await.is_none());
        p1.data_out.send(Bytes::from_static(b"pong")).await.unwrap();
        drop(p1);
        p2.error_out
            .send(Bytes::from_static(b"dial failed"))
            .await
            .unwrap();
        drop(p2);
        drop(p3);
        let mut got: HashMap<u32, (Vec<u8>, bool)> = HashMap::new();
        while !([e1, d1, e2, d2, e3, d3].iter()).all(|id| got.get(id).is_some_and(|g| g.1)) {
            if let Some(Frame::Data { id, flags, data }) = c.next_nwu().await {
                let e = got.entry(id).or_default();
                e.0.extend_from_slice(&data);
                e.1 = flags & FLAG_FIN != 0;
            }
        }
        assert_eq!(got[&d1].0, b"pong");
        assert_eq!(got[&e2].0, b"dial failed");
        assert!(got[&e1].0.is_empty() && got[&d2].0.is_empty());
        drop(c);
        tokio::time::timeout(T, gone).await.unwrap().unwrap();
        assert!(tokio::time::timeout(T, rx.recv()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn port_forward_reset_stream_stops_output() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut c = Client::new(a);
        let (mut rx, _gone) = accept_port_forward(b).await.unwrap();
        let rid = [("requestid", "5"), ("port", "80")];
        c.open(&[rid[0], rid[1], ("streamtype", "error")]).await;
        let d = c.open(&[rid[0], rid[1], ("streamtype", "data")]).await;
        let p = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        c.send(Frame::RstStream { id: d, status: 5 }).await;
        let closed = tokio::time::timeout(T, async {
            loop {
                if p.data_out.send(Bytes::from_static(b"x")).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        closed.await.unwrap();
    }
}
/// berth's server against the e2e suite's SPDY client (e2e/src/spdy.rs, written apart from this
/// module and depending only on tokio, flate2 and serde_json): two implementations must agree.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../e2e/src/spdy.rs"]
mod e2e_client;

#[cfg(test)]
mod interop {
    use super::e2e_client as client;
    use super::*;
    use client::{Options, SpdyConn};

    async fn exec_case(flow_control: bool, tty: bool) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: true,
            stdout: true,
            stderr: !tty,
            tty,
        };
        let server = tokio::spawn(async move {
            let mut s = accept_command(b, expected, Duration::from_secs(5))
                .await
                .unwrap();
            let mut stdin = s.stdin.take().unwrap();
            let stdout = s.stdout.take().unwrap();
            let mut n = 0;
            while let Some(d) = stdin.recv().await {
                n += d.len();
                stdout
                    .send(Bytes::from(d.to_ascii_uppercase()))
                    .await
                    .unwrap();
            }
            if let Some(e) = s.stderr.take() {
                e.send(Bytes::from(format!("{n} bytes"))).await.unwrap();
            }
            let size = match s.resize.as_mut() {
                Some(r) => r.recv().await,
                None => None,
            };
            s.error.send(crate::streaming::status_json(3)).unwrap();
            size
        });
        let conn = SpdyConn::new(a, Options { flow_control }).unwrap();
        conn.ping().await.unwrap();
        let session = client::exec_on(conn, "v4.channel.k8s.io".into(), true, true, true, tty)
            .await
            .unwrap();
        if let Some(r) = &session.resize {
            r.send((132, 43)).await.unwrap();
        }
        let input: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let got = client::finish(session, Some(&input)).await.unwrap();
        assert_eq!(got.stdout, input.to_ascii_uppercase());
        assert_eq!(got.exit_code(), Some(3));
        let size = server.await.unwrap();
        if tty {
            assert!(got.stderr.is_empty());
            assert_eq!(
                size,
                Some(TerminalSize {
                    width: 132,
                    height: 43
                })
            );
        } else {
            assert_eq!(got.stderr, b"300000 bytes");
        }
    }

    #[tokio::test]
    async fn exec_kubectl_like() {
        exec_case(false, false).await;
    }

    #[tokio::test]
    async fn exec_with_flow_control() {
        exec_case(true, false).await;
    }

    #[tokio::test]
    async fn exec_tty() {
        exec_case(false, true).await;
    }

    #[tokio::test]
    async fn port_forward() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut rx, _gone) = accept_port_forward(b).await.unwrap();
        tokio::spawn(async move {
            while let Some(mut p) = rx.recv().await {
                tokio::spawn(async move {
                    if p.port == 81 {
                        let _ = p.error_out.send(Bytes::from_static(b"refused")).await;
                        return;
                    }
                    while let Some(d) = p.data_in.recv().await {
                        let _ = p.data_out.send(d).await;
                    }
                });
            }
        });
        let conn = SpdyConn::new(a, Options::default()).unwrap();
        let mut one = client::open_port(&conn, 80, 0).await.unwrap();
        let mut two = client::open_port(&conn, 81, 1).await.unwrap();
        let big = vec![5u8; 200_000];
        one.data.write(&big).await.unwrap();
        one.data.close_write().unwrap();
        assert_eq!(one.data.read_to_end().await, big);
        assert_eq!(two.error.read_to_end().await, b"refused");
        assert!(two.data.read_to_end().await.is_empty());
        one.data.reset();
        conn.close();
    }
}
