//! Clients of berthd's streaming server (the URLs Exec, Attach and PortForward return), over
//! WebSocket with Kubernetes' channel protocols as kubectl speaks them: `v5.channel.k8s.io`
//! (stdin close signal) or `v4.channel.k8s.io` for exec and attach, `v4.channel.k8s.io` for
//! port-forward (one connection a forwarded TCP connection, the port in `?ports=`).
//!
//! Channels: 0 stdin, 1 stdout, 2 stderr, 3 error (a metav1.Status), 4 resize.

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::term;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

/// Connect to an `http://` streaming URL as `ws://`, offering `protocols`; the chosen one.
async fn connect(
    url: &str,
    protocols: &[&str],
) -> anyhow::Result<(WebSocketStream<TcpStream>, String)> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let hostport = ws_url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .with_context(|| format!("streaming URL {url} is not http://"))?
        .to_string();
    let mut req = ws_url.as_str().into_client_request()?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&protocols.join(", "))?,
    );
    let tcp = TcpStream::connect(&hostport)
        .await
        .with_context(|| format!("connecting to the streaming server {hostport}"))?;
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .context("streaming upgrade")?;
    let protocol = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok((ws, protocol))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

fn resize_frame(w: u16, h: u16) -> Message {
    frame(4, format!(r#"{{"Width":{w},"Height":{h}}}"#).as_bytes())
}

/// What the session asks for.
pub struct SessionOpts {
    /// Send our stdin.
    pub stdin: bool,
    /// The remote side is a terminal: raw mode here, resizes sent.
    pub tty: bool,
}

/// Run an exec or attach session on this terminal; the remote command's exit code (from the
/// error channel's status), or None when the protocol said nothing (attach).
pub async fn session(url: &str, opts: SessionOpts) -> anyhow::Result<Option<i32>> {
    let (ws, protocol) = connect(url, &[V5, V4]).await?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(32);
    let _raw = if opts.tty && opts.stdin && term::stdin_is_tty() {
        Some(term::RawMode::enter()?)
    } else {
        None
    };
    if opts.tty {
        if let Some((w, h)) = term::window_size() {
            sink.send(resize_frame(w, h)).await?;
        }
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some((w, h)) = term::window_size()
                    && tx.send(resize_frame(w, h)).await.is_err()
                {
                    return;
                }
            }
        });
    }
    if opts.stdin {
        let tx = tx.clone();
        let v5 = protocol == V5;
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(frame(0, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
            if v5 {
                let _ = tx.send(Message::Binary(vec![255, 0].into())).await;
            }
        });
    }
    drop(tx);
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut status = Vec::new();
    let mut sending = true;
    loop {
        tokio::select! {
            m = rx.recv(), if sending => match m {
                Some(m) => {
                    if sink.send(m).await.is_err() {
                        sending = false;
                    }
                }
                None => sending = false,
            },
            m = stream.next() => {
                let Some(Ok(m)) = m else { break };
                let Message::Binary(b) = m else {
                    if matches!(m, Message::Close(_)) { break }
                    continue;
                };
                match (b.first(), b.get(1..).unwrap_or_default()) {
                    (Some(1), d) => {
                        stdout.write_all(d).await?;
                        stdout.flush().await?;
                    }
                    (Some(2), d) => {
                        stderr.write_all(d).await?;
                        stderr.flush().await?;
                    }
                    (Some(3), d) => status.extend_from_slice(d),
                    _ => {}
                }
            }
        }
    }
    let _ = sink.close().await;
    if status.is_empty() {
        return Ok(None);
    }
    exit_code(&status).map(Some)
}

/// A metav1.Status from the error channel as an exit code: Success is 0, NonZeroExitCode its
/// code; any other failure is an error.
pub fn exit_code(status: &[u8]) -> anyhow::Result<i32> {
    let v: serde_json::Value =
        serde_json::from_slice(status).context("the error channel's status is not JSON")?;
    if v["status"] == "Success" {
        return Ok(0);
    }
    if v["reason"] == "NonZeroExitCode"
        && let Some(causes) = v["details"]["causes"].as_array()
        && let Some(code) = causes
            .iter()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
    {
        return Ok(code);
    }
    anyhow::bail!("{}", v["message"].as_str().unwrap_or("the session failed"))
}

/// Relay one local TCP connection through a port-forward URL to `port` inside the pod.
pub async fn forward(url: &str, port: u16, tcp: TcpStream) -> anyhow::Result<()> {
    let (ws, protocol) = connect(&format!("{url}?ports={port}"), &[V4]).await?;
    if protocol != V4 {
        anyhow::bail!("the streaming server chose {protocol:?} for port-forward");
    }
    let (mut sink, mut stream) = ws.split();
    let (mut rd, mut wr) = tcp.into_split();
    let (mut data_prefix, mut error_prefix) = (true, true);
    let mut buf = vec![0u8; 32 << 10];
    let mut reading = true;
    loop {
        tokio::select! {
            n = rd.read(&mut buf), if reading => match n {
                Ok(0) | Err(_) => {
                    // No half-close in the channel protocols: closing ends the connection,
                    // and the server's answer ends the loop.
                    reading = false;
                    let _ = sink.send(Message::Close(None)).await;
                }
                Ok(n) => sink.send(frame(0, &buf[..n])).await?,
            },
            m = stream.next() => {
                let Some(Ok(Message::Binary(b))) = m else { break };
                let (ch, d) = (b.first().copied(), b.get(1..).unwrap_or_default());
                let first = match ch {
                    Some(0) => &mut data_prefix,
                    Some(1) => &mut error_prefix,
                    _ => continue,
                };
                // Each channel opens with the port, two bytes little-endian.
                let d = if std::mem::take(first) { d.get(2..).unwrap_or_default() } else { d };
                if d.is_empty() {
                    continue;
                }
                if ch == Some(0) {
                    wr.write_all(d).await?;
                } else {
                    anyhow::bail!("port-forward to {port}: {}", String::from_utf8_lossy(d));
                }
            }
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            exit_code(br#"{"metadata":{},"status":"Success"}"#).unwrap(),
            0
        );
        let nz = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(exit_code(nz).unwrap(), 3);
        let e = exit_code(br#"{"status":"Failure","message":"no such file"}"#).unwrap_err();
        assert!(e.to_string().contains("no such file"));
    }
}
