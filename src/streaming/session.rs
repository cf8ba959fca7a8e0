//! One streaming session: once the transport has the client's streams, run what the token was
//! issued for on the [`StreamingRuntime`], and turn the outcome into the protocol's final status.
//! This is the one place that decides between a remote command and a port-forward.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::{
    Command, CommandStreams, Pending, PortOutput, PortStream, PortStreams, StreamingRuntime,
    Streams, failure_json, spdy, status_json, ws,
};

/// The protocol an upgraded connection speaks, as negotiated by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Spdy,
    WebSocket {
        protocol: ws::Protocol,
        /// The ports a port-forward serves (the URL's `ports=`): WebSocket has no streams to
        /// open per port.
        ports: Vec<u16>,
    },
}

/// Serve one upgraded connection for `pending`, until the session ends.
pub async fn serve<R, T>(runtime: Arc<R>, io: T, transport: Transport, pending: Pending)
where
    R: StreamingRuntime,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match pending {
        Pending::Command { command, expected } => {
            let streams = match transport {
                Transport::Spdy => {
                    match spdy::accept_command(io, expected, spdy::STREAM_CREATION_TIMEOUT).await {
                        Ok(s) => s,
                        Err(e) => return tracing::info!("streaming session over SPDY: {e}"),
                    }
                }
                Transport::WebSocket { protocol, .. } => {
                    ws::accept_command(io, protocol, expected).await
                }
            };
            run_command(&*runtime, command, expected.tty, streams).await;
        }
        Pending::PortForward { sandbox_id } => {
            let (conns, gone) = match transport {
                Transport::Spdy => match spdy::accept_port_forward(io).await {
                    Ok(accepted) => accepted,
                    Err(e) => return tracing::info!("port-forward over SPDY: {e}"),
                },
                Transport::WebSocket { protocol, ports } => {
                    ws::accept_port_forward(io, protocol, &ports).await
                }
            };
            forward_ports(runtime, sandbox_id, conns, gone).await;
        }
    }
}

/// Exec or attach with the session's streams; the outcome goes to the error channel. When the
/// client goes away first the runtime's future is dropped, which ends the command.
async fn run_command<R: StreamingRuntime>(
    runtime: &R,
    command: Command,
    tty: bool,
    streams: CommandStreams,
) {
    let CommandStreams {
        stdin,
        stdout,
        stderr,
        resize,
        error,
        gone,
    } = streams;
    let streams = Streams {
        stdin,
        stdout,
        stderr,
        resize,
        tty,
    };
    let status = match command {
        Command::Exec { container_id, cmd } => tokio::select! {
            r = runtime.exec(&container_id, &cmd, streams) => match r {
                Ok(code) => status_json(code),
                Err(f) => failure_json(&f.message),
            },
            _ = gone => {
                tracing::info!(container = %container_id, "exec client went away; command killed");
                return;
            }
        },
        Command::Attach { container_id } => tokio::select! {
            r = runtime.attach(&container_id, streams) => match r {
                // A finished attach is a success, as kubelet reports it.
                Ok(()) => status_json(0),
                Err(f) => failure_json(&f.message),
            },
            _ = gone => {
                tracing::info!(container = %container_id, "attach client went away");
                return;
            }
        },
    };
    let _ = error.send(status);
}

/// Serve every connection of a port-forward session (each on its own task) until the client
/// goes away.
async fn forward_ports<R: StreamingRuntime>(
    runtime: Arc<R>,
    sandbox_id: String,
    mut conns: mpsc::Receiver<PortStreams>,
    gone: oneshot::Receiver<()>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let serve = async {
        while let Some(c) = conns.recv().await {
            let PortStreams {
                port,
                data_in,
                data_out,
                error_out,
            } = c;
            let stream = PortStream {
                input: data_in,
                output: PortOutput::new(data_out, error_out),
            };
            let (runtime, sandbox_id) = (runtime.clone(), sandbox_id.clone());
            tasks.spawn(async move { runtime.port_forward(&sandbox_id, port, stream).await });
        }
        while tasks.join_next().await.is_some() {}
    };
    tokio::select! {
        _ = serve => {}
        _ = gone => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::{Expected, Failure, Streams};
    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    use std::time::Duration;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    const T: Duration = Duration::from_secs(5);

    /// A runtime that echoes stdin upper-cased and exits 3, fails for container "missing",
    /// waits forever for "stuck" (telling `dropped` when its future goes), and forwards port
    /// 80 as an echo and port 81 as a failure.
    #[derive(Default)]
    struct Fake {
        dropped: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    }

    impl StreamingRuntime for Fake {
        async fn exec(&self, id: &str, cmd: &[String], mut s: Streams) -> Result<i32, Failure> {
            match id {
                "missing" => return Err(Failure::new("no such container")),
                "stuck" => {
                    let tell = self.dropped.lock().unwrap().take();
                    let _guard = Guard(tell);
                    std::future::pending::<()>().await;
                }
                _ => {}
            }
            assert_eq!(cmd, ["cat"]);
            let (mut stdin, stdout) = (s.stdin.take().unwrap(), s.stdout.take().unwrap());
            while let Some(b) = stdin.recv().await {
                stdout
                    .send(Bytes::from(b.to_ascii_uppercase()))
                    .await
                    .unwrap();
            }
            Ok(3)
        }

        async fn attach(&self, _: &str, s: Streams) -> Result<(), Failure> {
            let out = s.stdout.unwrap();
            out.send(Bytes::from_static(b"attached")).await.unwrap();
            Ok(())
        }

        async fn port_forward(&self, sandbox: &str, port: u16, mut stream: PortStream) {
            assert_eq!(sandbox, "pod");
            if port == 81 {
                return stream.output.fail(Failure::new("refused")).await;
            }
            while let Some(b) = stream.input.recv().await {
                stream.output.send(b).await.unwrap();
            }
        }
    }

    /// Sends `()` on drop.
    struct Guard(Option<oneshot::Sender<()>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }

    type Client = WebSocketStream<DuplexStream>;

    async fn session(runtime: Arc<Fake>, pending: Pending, ports: Vec<u16>) -> Client {
        let (a, b) = tokio::io::duplex(1 << 16);
        let transport = Transport::WebSocket {
            protocol: ws::Protocol::V5,
            ports,
        };
        tokio::spawn(serve(runtime, a, transport, pending));
        WebSocketStream::from_raw_socket(b, Role::Client, None).await
    }

    fn exec(container_id: &str, stdin: bool) -> Pending {
        Pending::Command {
            command: Command::Exec {
                container_id: container_id.into(),
                cmd: vec!["cat".into()],
            },
            expected: Expected {
                stdin,
                stdout: true,
                ..Expected::default()
            },
        }
    }

    /// Every (channel, payload) until the server's close frame.
    async fn collect(c: &mut Client) -> Vec<(u8, Vec<u8>)> {
        let mut got = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(T, c.next()).await {
            if let Message::Binary(b) = m
                && let Some((ch, data)) = b.split_first()
            {
                got.push((*ch, data.to_vec()));
            }
        }
        got
    }

    fn status(got: &[(u8, Vec<u8>)]) -> serde_json::Value {
        let last = got.last().expect("a status");
        assert_eq!(last.0, 3, "{got:?}");
        serde_json::from_slice(&last.1).unwrap()
    }

    #[tokio::test]
    async fn exec_exit_code_becomes_the_status() {
        let mut c = session(Arc::default(), exec("c1", true), vec![]).await;
        c.send(Message::Binary(b"\0hello".to_vec().into()))
            .await
            .unwrap();
        c.send(Message::Binary(vec![255, 0].into())).await.unwrap();
        let got = collect(&mut c).await;
        let out: Vec<u8> = got
            .iter()
            .filter(|m| m.0 == 1)
            .flat_map(|m| m.1.clone())
            .collect();
        assert_eq!(out, b"HELLO");
        let v = status(&got);
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
    }

    #[tokio::test]
    async fn runtime_failure_becomes_the_message() {
        let mut c = session(Arc::default(), exec("missing", false), vec![]).await;
        let v = status(&collect(&mut c).await);
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["message"], "no such container");
    }

    #[tokio::test]
    async fn attach_that_ends_is_a_success() {
        let pending = Pending::Command {
            command: Command::Attach {
                container_id: "c1".into(),
            },
            expected: Expected {
                stdout: true,
                ..Expected::default()
            },
        };
        let mut c = session(Arc::default(), pending, vec![]).await;
        let got = collect(&mut c).await;
        assert!(got.contains(&(1, b"attached".to_vec())), "{got:?}");
        assert_eq!(status(&got)["status"], "Success");
    }

    #[tokio::test]
    async fn client_gone_drops_the_runtime_future() {
        let (tx, rx) = oneshot::channel();
        let runtime = Arc::new(Fake {
            dropped: std::sync::Mutex::new(Some(tx)),
        });
        let c = session(runtime, exec("stuck", true), vec![]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(c);
        tokio::time::timeout(T, rx).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn port_forward_per_connection() {
        let pending = Pending::PortForward {
            sandbox_id: "pod".into(),
        };
        let mut c = session(Arc::default(), pending, vec![80, 81]).await;
        c.send(Message::Binary(vec![0, b'h', b'i'].into()))
            .await
            .unwrap();
        let mut echoed = false;
        let mut refused = false;
        while !(echoed && refused) {
            let m = tokio::time::timeout(T, c.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Message::Binary(b) = m {
                match (b[0], &b[1..]) {
                    (0, b"hi") => echoed = true,
                    (3, b"refused") => refused = true,
                    _ => {}
                }
            }
        }
    }
}
