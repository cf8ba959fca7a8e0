//! The HTTP side of the streaming server: single-use tokens and the protocol upgrade.
//!
//! Exec/Attach/PortForward RPCs remember the request under a random token and answer
//! `http://<address>/<kind>/<token>`. The client's request for that URL must upgrade to SPDY/3.1
//! (`Upgrade: SPDY/3.1`, protocol in `X-Stream-Protocol-Version`) or WebSocket (`Upgrade:
//! websocket`, protocol in `Sec-WebSocket-Protocol`); the token is consumed by the first request
//! and expires after the configured TTL, as kubelet's streaming package does. Unknown, used or
//! expired tokens answer 404.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;

use super::session::{self, Transport};
use super::{Command, Pending, StreamingRuntime, spdy, ws};
use crate::http_limits::{Gate, HttpLimits};

/// The streaming server's state: its address and the outstanding tokens.
pub struct Streaming {
    addr: SocketAddr,
    ttl: Duration,
    tokens: Mutex<HashMap<String, (Pending, Instant)>>,
    listener: Mutex<Option<TcpListener>>,
}

impl Streaming {
    /// Bind the server's socket (port 0: the kernel picks one).
    pub async fn bind(address: &str, ttl: Duration) -> std::io::Result<Arc<Streaming>> {
        let listener = TcpListener::bind(address).await?;
        let addr = listener.local_addr()?;
        Ok(Arc::new(Streaming {
            addr,
            ttl,
            tokens: Mutex::new(HashMap::new()),
            listener: Mutex::new(Some(listener)),
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Pending, Instant)>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember `p` under a new token; the URL to hand out.
    pub fn issue(&self, p: Pending) -> std::io::Result<String> {
        let token = crate::ids::new_id()?[..32].to_string();
        let url = format!("http://{}/{}/{}", self.addr, url_kind(&p), token);
        let now = Instant::now();
        let mut tokens = self.tokens();
        tokens.retain(|_, (_, expires)| *expires > now);
        tokens.insert(token, (p, now + self.ttl));
        Ok(url)
    }

    /// Take the request of a token: once, and only before it expires.
    fn take(&self, kind: &str, token: &str) -> Option<Pending> {
        let mut tokens = self.tokens();
        let (p, expires) = tokens.remove(token)?;
        if expires <= Instant::now() {
            return None;
        }
        if url_kind(&p) != kind {
            // A token is for one URL kind only; keep it for its own.
            tokens.insert(token.to_string(), (p, expires));
            return None;
        }
        Some(p)
    }

    /// Serve until the process ends, running sessions on `runtime`, within `limits`. Each
    /// connection is its own task; it holds its place among `max_connections` until it ends,
    /// an upgraded one until its session ends.
    pub async fn serve<R: StreamingRuntime>(self: Arc<Self>, runtime: Arc<R>, limits: HttpLimits) {
        let gate = Gate::new(limits);
        let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("streaming server accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(permit) = gate.admit() else {
                tracing::debug!("streaming: connection limit reached, closing a new connection");
                continue;
            };
            let permit = Arc::new(permit);
            let _ = tcp.set_nodelay(true);
            let this = self.clone();
            let runtime = runtime.clone();
            let builder = gate.builder();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    let runtime = runtime.clone();
                    let permit = permit.clone();
                    async move { Ok::<_, std::convert::Infallible>(this.route(req, runtime, permit)) }
                });
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!("streaming connection: {e}");
                }
            });
        }
    }

    fn route<R: StreamingRuntime>(
        &self,
        req: Request<Incoming>,
        runtime: Arc<R>,
        permit: Arc<OwnedSemaphorePermit>,
    ) -> Response<Full<Bytes>> {
        let path = req.uri().path().trim_matches('/').to_string();
        let Some((kind, token)) = path.split_once('/') else {
            return plain(StatusCode::NOT_FOUND, "not found");
        };
        let Some(pending) = self.take(kind, token) else {
            return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token");
        };
        let upgrade = header(&req, UPGRADE.as_str()).to_ascii_lowercase();
        if upgrade.contains("spdy/3.1") {
            self.upgrade_spdy(req, pending, runtime, permit)
        } else if upgrade.contains("websocket") {
            self.upgrade_ws(req, pending, runtime, permit)
        } else {
            plain(
                StatusCode::BAD_REQUEST,
                "this URL needs a SPDY/3.1 or WebSocket upgrade",
            )
        }
    }

    fn upgrade_spdy<R: StreamingRuntime>(
        &self,
        req: Request<Incoming>,
        pending: Pending,
        runtime: Arc<R>,
        permit: Arc<OwnedSemaphorePermit>,
    ) -> Response<Full<Bytes>> {
        let offered = header_list(&req, "x-stream-protocol-version");
        let Some(chosen) = spdy::choose_protocol(&offered, pending.is_port_forward()) else {
            return plain(
                StatusCode::FORBIDDEN,
                &format!("unable to upgrade: no common protocol (offered {offered:?})"),
            );
        };
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(up) => session::serve(runtime, TokioIo::new(up), Transport::Spdy, pending).await,
                Err(e) => tracing::warn!("SPDY upgrade: {e}"),
            }
            drop(permit);
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        if let Ok(v) = HeaderValue::from_str(chosen) {
            h.insert("X-Stream-Protocol-Version", v);
        }
        resp
    }

    fn upgrade_ws<R: StreamingRuntime>(
        &self,
        req: Request<Incoming>,
        pending: Pending,
        runtime: Arc<R>,
        permit: Arc<OwnedSemaphorePermit>,
    ) -> Response<Full<Bytes>> {
        let key = header(&req, "sec-websocket-key");
        if key.is_empty() {
            return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
        }
        let offered = header_list(&req, "sec-websocket-protocol");
        let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
        let port_forward = pending.is_port_forward();
        let Some(protocol) = ws::choose_protocol(&offered, port_forward) else {
            return plain(
                StatusCode::FORBIDDEN,
                &format!("unable to upgrade: no common protocol (offered {offered:?})"),
            );
        };
        let ports: Vec<u16> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| {
                kv.strip_prefix("ports=")
                    .or_else(|| kv.strip_prefix("port="))
            })
            .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter_map(|p| p.parse().ok())
            .collect();
        if port_forward && ports.is_empty() {
            return plain(
                StatusCode::BAD_REQUEST,
                "port-forward needs ?ports=PORT[,PORT]",
            );
        }
        let accept = ws::accept_key(&key);
        let offered_any = !offered.is_empty();
        let name = protocol.name().to_string();
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(up) => {
                    let transport = Transport::WebSocket { protocol, ports };
                    session::serve(runtime, TokioIo::new(up), transport, pending).await
                }
                Err(e) => tracing::warn!("WebSocket upgrade: {e}"),
            }
            drop(permit);
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert("Sec-WebSocket-Accept", v);
        }
        // Only a protocol the client offered may be named (RFC 6455).
        if offered_any && let Ok(v) = HeaderValue::from_str(&name) {
            h.insert("Sec-WebSocket-Protocol", v);
        }
        resp
    }
}

/// The URL path's first segment for this kind of session.
fn url_kind(p: &Pending) -> &'static str {
    match p {
        Pending::Command {
            command: Command::Exec { .. },
            ..
        } => "exec",
        Pending::Command {
            command: Command::Attach { .. },
            ..
        } => "attach",
        Pending::PortForward { .. } => "portforward",
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r
}

fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// All values of a header, comma-separated ones split.
fn header_list(req: &Request<Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::{Failure, PortStream, Streams};

    /// A runtime no test session reaches.
    struct Idle;

    impl StreamingRuntime for Idle {
        async fn exec(&self, _: &str, _: &[String], _: Streams) -> Result<i32, Failure> {
            Ok(0)
        }
        async fn attach(&self, _: &str, _: Streams) -> Result<(), Failure> {
            Ok(())
        }
        async fn port_forward(&self, _: &str, _: u16, _: PortStream) {}
    }

    #[tokio::test]
    async fn slow_headers_and_too_many_connections_are_closed() {
        use crate::http_limits::tests::{LIMITS, check_server};
        let s = Streaming::bind("127.0.0.1:0", Duration::from_secs(60))
            .await
            .unwrap();
        let addr = s.local_addr();
        let server = tokio::spawn(s.serve(Arc::new(Idle), LIMITS));
        check_server(addr, b"GET /exec/unknown HTTP/1.1\r\nHost: x\r\n\r\n").await;
        server.abort();
    }

    #[tokio::test]
    async fn tokens_are_single_use_and_expire() {
        let s = Streaming::bind("127.0.0.1:0", Duration::from_millis(200))
            .await
            .unwrap();
        let p = Pending::PortForward {
            sandbox_id: "p".into(),
        };
        let url = s.issue(p.clone()).unwrap();
        let token = url.rsplit('/').next().unwrap().to_string();
        assert_eq!(token.len(), 32);
        assert!(url.starts_with(&format!("http://{}/portforward/", s.local_addr())));
        assert_eq!(s.take("exec", &token), None, "wrong kind");
        assert_eq!(s.take("portforward", &token), Some(p.clone()));
        assert_eq!(s.take("portforward", &token), None, "used");
        let url = s.issue(p).unwrap();
        let token = url.rsplit('/').next().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(s.take("portforward", &token), None, "expired");
    }
}
