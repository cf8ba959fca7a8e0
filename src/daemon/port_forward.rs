//! Port-forward inside a pod: each forwarded connection is dialed to `localhost:PORT` from inside
//! the pod's network namespace (so servers bound to 127.0.0.1 in the pod are reachable), then
//! bytes are copied both ways.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::streaming::{Failure, PortStream};

/// Dial `localhost:port` in the network namespace pinned at `netns` (None: berthd's own, for
/// host-network pods). The socket is made on a short-lived thread that joins the namespace; the
/// socket keeps its namespace wherever it is used afterwards.
pub async fn dial(netns: Option<&Path>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let netns = netns.map(Path::to_path_buf);
    let std_stream = tokio::task::spawn_blocking(move || {
        std::thread::Builder::new()
            .name("portforward-dial".into())
            .spawn(move || -> std::io::Result<std::net::TcpStream> {
                if let Some(ns) = netns {
                    let f = std::fs::File::open(&ns)?;
                    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)?;
                }
                let timeout = Duration::from_secs(10);
                let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                match std::net::TcpStream::connect_timeout(&v4, timeout) {
                    Ok(s) => Ok(s),
                    Err(e4) => std::net::TcpStream::connect_timeout(
                        &SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
                        timeout,
                    )
                    .map_err(|_| e4),
                }
            })?
            .join()
            .map_err(|_| std::io::Error::other("port-forward dial thread panicked"))?
    })
    .await
    .map_err(std::io::Error::other)??;
    std_stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(std_stream)
}

/// Serve one forwarded connection until both directions are done. The client's side of the
/// connection closes as soon as the pod's side is done (or failed), whether or not the client
/// is still sending.
pub async fn forward(netns: Option<PathBuf>, port: u16, stream: PortStream) {
    let PortStream { mut input, output } = stream;
    let tcp = match dial(netns.as_deref(), port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("failed to connect to localhost:{port} inside the pod: {e}");
            tracing::info!("port-forward: {msg}");
            output.fail(Failure::new(msg)).await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let upstream = async move {
        while let Some(b) = input.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if output
                        .send(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let msg = format!("reading from localhost:{port}: {e}");
                    output.fail(Failure::new(msg)).await;
                    break;
                }
            }
        }
        // Dropping `output` ends the client's data and error streams.
    };
    tokio::join!(upstream, downstream);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::PortOutput;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn forwards_to_localhost() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"pong:").await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let (err_tx, _err_rx) = mpsc::channel(4);
        let t = tokio::spawn(forward(
            None,
            port,
            PortStream {
                input: in_rx,
                output: PortOutput::new(out_tx, err_tx),
            },
        ));
        in_tx.send(Bytes::from_static(b"hello")).await.unwrap();
        drop(in_tx);
        let mut got = Vec::new();
        while let Some(b) = out_rx.recv().await {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"pong:hello");
        t.await.unwrap();
    }

    #[tokio::test]
    async fn refused_port_reports_on_the_error_stream() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let (_in_tx, in_rx) = mpsc::channel(1);
        let (out_tx, _out_rx) = mpsc::channel(1);
        let (err_tx, mut err_rx) = mpsc::channel(1);
        forward(
            None,
            port,
            PortStream {
                input: in_rx,
                output: PortOutput::new(out_tx, err_tx),
            },
        )
        .await;
        let msg = err_rx.recv().await.unwrap();
        assert!(String::from_utf8_lossy(&msg).contains(&format!("localhost:{port}")));
    }
}
