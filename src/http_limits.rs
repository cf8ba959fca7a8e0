//! The bounds every HTTP server of berthd (streaming, metrics) keeps: a client must send a
//! request's headers within a timeout (an idle keep-alive connection is closed after it too),
//! and at most so many connections are open at once (more are closed as they are accepted).

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits of one HTTP server (config keys `header_read_timeout_secs`, `max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Connections admitted, and the HTTP/1 settings they are served with.
#[derive(Clone)]
pub struct Gate {
    limits: HttpLimits,
    permits: Arc<Semaphore>,
}

impl Gate {
    pub fn new(limits: HttpLimits) -> Gate {
        Gate {
            limits,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
        }
    }

    /// A place for one more connection, held as long as it is open; None when all
    /// `max_connections` are taken (the caller closes the new one).
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// An HTTP/1 server builder with the header read timeout.
    pub fn builder(&self) -> http1::Builder {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        b
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Read until the server closes the connection (a reset counts): what was read; None if it
    /// is still open after `within`.
    async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match tokio::time::timeout(within, s.read_to_end(&mut out)).await {
            Ok(_) => Some(out),
            Err(_) => None,
        }
    }

    /// The limits `check_server` expects.
    pub(crate) const LIMITS: super::HttpLimits = super::HttpLimits {
        header_read_timeout: Duration::from_secs(2),
        max_connections: 4,
    };

    /// Checks a server at `addr` built with [`LIMITS`]: a client sending half a request line is
    /// closed after the timeout, a fifth connection is closed at once while four are open, and
    /// one is admitted again once one of them has gone. `request` is a complete request the
    /// server answers.
    pub(crate) async fn check_server(addr: SocketAddr, request: &[u8]) {
        // Slow headers: a partial request line, then nothing.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /met").await.unwrap();
        let started = Instant::now();
        let got = read_to_close(&mut slow, Duration::from_secs(10)).await;
        assert!(got.is_some(), "slow client still open after 10 s");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6),
            "closed after {waited:?}"
        );

        // Four open connections (each with a request answered, so the server holds them)...
        let mut open = Vec::new();
        for _ in 0..4 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(request).await.unwrap();
            let mut buf = [0u8; 12];
            c.read_exact(&mut buf).await.unwrap();
            assert!(buf.starts_with(b"HTTP/1.1 "), "{buf:?}");
            open.push(c);
        }
        // ...so a fifth is closed without an answer.
        let mut fifth = TcpStream::connect(addr).await.unwrap();
        let _ = fifth.write_all(request).await;
        let got = read_to_close(&mut fifth, Duration::from_millis(500)).await;
        assert_eq!(
            got,
            Some(Vec::new()),
            "fifth connection served or left open"
        );
        // One gone, one more is served.
        drop(open.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = TcpStream::connect(addr).await.unwrap();
        again.write_all(request).await.unwrap();
        let mut buf = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(2), again.read_exact(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 "));
    }
}
