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
