//! A WebSocket client for the streaming server, speaking Kubernetes' channel protocols as
//! kubectl (v5) and crictl (v4) do: the channel in each message's first byte (or, for the
//! base64 protocols, an ASCII digit before base64 text).

use std::io;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn err(m: impl Into<String>) -> io::Error {
    io::Error::other(m.into())
}

/// A connected session and the protocol the server chose.
pub struct WsConn {
    pub ws: WebSocketStream<TcpStream>,
    pub protocol: String,
}

/// Connect to an `http://` streaming URL as `ws://`, offering `protocols`.
pub async fn connect(url: &str, protocols: &[&str]) -> io::Result<WsConn> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let hostport = ws_url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| err(format!("bad URL {url}")))?
        .to_string();
    let mut req = ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| err(e.to_string()))?;
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&protocols.join(", ")).map_err(|e| err(e.to_string()))?,
        );
    }
    let tcp = TcpStream::connect(&hostport).await?;
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .map_err(|e| err(e.to_string()))?;
    let protocol = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok(WsConn { ws, protocol })
}

fn base64(protocol: &str) -> bool {
    protocol.contains("base64")
}

fn encode(protocol: &str, channel: u8, data: &[u8]) -> Message {
    if base64(protocol) {
        use base64::Engine;
        let text = format!(
            "{}{}",
            char::from(b'0' + channel),
            base64::engine::general_purpose::STANDARD.encode(data)
        );
        Message::Text(text.into())
    } else {
        let mut v = vec![channel];
        v.extend_from_slice(data);
        Message::Binary(v.into())
    }
}

fn decode(protocol: &str, m: Message) -> Option<(u8, Vec<u8>)> {
    match m {
        Message::Binary(b) if !b.is_empty() => Some((b[0], b[1..].to_vec())),
        Message::Text(t) if base64(protocol) => {
            use base64::Engine;
            let t = t.as_str();
            let ch = t.as_bytes().first()?.checked_sub(b'0')?;
            Some((
                ch,
                base64::engine::general_purpose::STANDARD
                    .decode(&t.as_bytes()[1..])
                    .ok()?,
            ))
        }
        _ => None,
    }
}

/// What an exec/attach over WebSocket produced.
#[derive(Debug, Default)]
pub struct WsOutput {
    pub protocol: String,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The error channel's bytes (metav1.Status JSON).
    pub status: Vec<u8>,
}

/// Run an exec/attach session: send `stdin` (then, on v5, the close signal), optionally a
/// resize first, and collect everything until the server closes.
pub async fn run_exec(
    url: &str,
    protocols: &[&str],
    stdin: Option<&[u8]>,
    resize: Option<(u16, u16)>,
) -> io::Result<WsOutput> {
    let WsConn { ws, protocol } = connect(url, protocols).await?;
    let (mut sink, mut stream) = ws.split();
    if let Some((w, h)) = resize {
        let json = format!(r#"{{"Width":{w},"Height":{h}}}"#);
        sink.send(encode(&protocol, 4, json.as_bytes()))
            .await
            .map_err(|e| err(e.to_string()))?;
    }
    if let Some(data) = stdin {
        for chunk in data.chunks(16 << 10) {
            sink.send(encode(&protocol, 0, chunk))
                .await
                .map_err(|e| err(e.to_string()))?;
        }
        if protocol == "v5.channel.k8s.io" {
            sink.send(Message::Binary(vec![255, 0].into()))
                .await
                .map_err(|e| err(e.to_string()))?;
        }
    }
    let mut out = WsOutput {
        protocol: protocol.clone(),
        ..Default::default()
    };
    while let Some(m) = stream.next().await {
        let m = match m {
            Ok(m) => m,
            Err(_) => break,
        };
        if matches!(m, Message::Close(_)) {
            break;
        }
        match decode(&protocol, m) {
            Some((1, d)) => out.stdout.extend(d),
            Some((2, d)) => out.stderr.extend(d),
            Some((3, d)) => out.status.extend(d),
            _ => {}
        }
    }
    let _ = sink.close().await;
    Ok(out)
}

/// Forward one request through a port-forward URL (`?ports=PORT` added): send `request` on
/// the port's data channel, collect what comes back on it (after the port prefix) until the
/// server has sent `until` or the connection ends; also what the error channel said.
pub async fn port_forward_once(
    url: &str,
    port: u16,
    request: &[u8],
    until: &[u8],
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let url = format!("{url}?ports={port}");
    let WsConn { ws, protocol } = connect(&url, &["v4.channel.k8s.io"]).await?;
    let (mut sink, mut stream) = ws.split();
    sink.send(encode(&protocol, 0, request))
        .await
        .map_err(|e| err(e.to_string()))?;
    let (mut data, mut error) = (Vec::new(), Vec::new());
    let (mut data_prefix, mut error_prefix) = (true, true);
    let read = async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
            match decode(&protocol, m) {
                Some((0, d)) if data_prefix => {
                    data_prefix = false;
                    data.extend_from_slice(d.get(2..).unwrap_or_default());
                }
                Some((0, d)) => data.extend(d),
                Some((1, d)) if error_prefix => {
                    error_prefix = false;
                    error.extend_from_slice(d.get(2..).unwrap_or_default());
                }
                Some((1, d)) => error.extend(d),
                _ => {}
            }
            if (!until.is_empty() && data.windows(until.len()).any(|w| w == until))
                || !error.is_empty()
            {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), read).await;
    let _ = sink.close().await;
    Ok((data, error))
}

/// An open port-forward over WebSocket (one port, `v4.channel.k8s.io`).
pub struct PortForward {
    /// Bytes for the port's data channel; dropping it closes the connection (the channel
    /// protocols have no half-close for port-forward).
    pub tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    /// What the data channel brings back (its port prefix removed); ends with the connection.
    pub rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    /// Messages on the port's error channel (prefix removed).
    pub errors: tokio::sync::mpsc::Receiver<Vec<u8>>,
}

/// Open a port-forward through a port-forward URL (`?ports=PORT` added) and pump it in a task.
pub async fn port_forward(url: &str, port: u16) -> io::Result<PortForward> {
    use tokio::sync::mpsc;
    let url = format!("{url}?ports={port}");
    let WsConn { ws, protocol } = connect(&url, &["v4.channel.k8s.io"]).await?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut to_server) = mpsc::channel::<Vec<u8>>(16);
    let (from_server, rx) = mpsc::channel::<Vec<u8>>(16);
    let (errors_tx, errors) = mpsc::channel::<Vec<u8>>(4);
    tokio::spawn(async move {
        let (mut data_prefix, mut error_prefix) = (true, true);
        let mut sending = true;
        loop {
            tokio::select! {
                out = to_server.recv(), if sending => match out {
                    Some(d) => {
                        if sink.send(encode(&protocol, 0, &d)).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        // Read on: the server's close answer ends the stream.
                        sending = false;
                        let _ = sink.send(Message::Close(None)).await;
                    }
                },
                m = stream.next() => {
                    let Some(Ok(m)) = m else { break };
                    let (target, prefix) = match decode(&protocol, m) {
                        Some((0, d)) => (&from_server, (&mut data_prefix, d)),
                        Some((1, d)) => (&errors_tx, (&mut error_prefix, d)),
                        _ => continue,
                    };
                    let (first, d) = prefix;
                    let d = if *first {
                        *first = false;
                        d.get(2..).unwrap_or_default().to_vec()
                    } else {
                        d
                    };
                    if !d.is_empty() {
                        let _ = target.send(d).await;
                    }
                }
            }
        }
    });
    Ok(PortForward { tx, rx, errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

    /// The handshake answer: the query checked, v4 chosen (tungstenite's callback signature).
    #[allow(clippy::result_large_err)]
    fn answer(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
        assert_eq!(req.uri().query(), Some("ports=8080"));
        resp.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        Ok(resp)
    }

    /// A stand-in port-forward server: the port prefixes, then each data message echoed
    /// upper-cased, an error message for "fail".
    async fn fake_server() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, answer)
                .await
                .unwrap();
            for ch in [0u8, 1] {
                let mut m = vec![ch];
                m.extend_from_slice(&8080u16.to_le_bytes());
                ws.send(Message::Binary(m.into())).await.unwrap();
            }
            while let Some(Ok(m)) = ws.next().await {
                let Message::Binary(b) = m else { continue };
                if &b[1..] == b"fail" {
                    ws.send(Message::Binary(b"\x01refused".to_vec().into()))
                        .await
                        .unwrap();
                } else {
                    ws.send(Message::Binary(b.to_ascii_uppercase().into()))
                        .await
                        .unwrap();
                }
            }
        });
        format!("http://{addr}/portforward/token")
    }

    #[tokio::test]
    async fn port_forward_client() {
        let url = fake_server().await;
        let mut pf = port_forward(&url, 8080).await.unwrap();
        pf.tx.send(b"hello".to_vec()).await.unwrap();
        assert_eq!(pf.rx.recv().await.unwrap(), b"HELLO");
        pf.tx.send(b"fail".to_vec()).await.unwrap();
        assert_eq!(pf.errors.recv().await.unwrap(), b"refused");
        drop(pf.tx);
        assert!(pf.rx.recv().await.is_none(), "closing ends the data stream");
    }
}
