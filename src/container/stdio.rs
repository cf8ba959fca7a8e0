//! The byte channels a caller connects to a process's stdio: a command run by exec, or a
//! container's own (attach). They are protocol-neutral: the streaming server's sessions (through
//! the daemon) and ExecSync's output collector both use them.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    pub width: u16,
    pub height: u16,
}

/// A process's stdio as channels. A stream left None is not connected (/dev/null for exec).
/// Dropping a sender is EOF towards the caller; `stdin` yielding None is the caller's EOF.
#[derive(Debug, Default)]
pub struct ProcessIo {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    /// Unused with a tty: a terminal has one output.
    pub stderr: Option<mpsc::Sender<Bytes>>,
    /// Terminal size changes (with a tty only).
    pub resize: Option<mpsc::Receiver<WindowSize>>,
    /// Run the command on a terminal (exec), or the container has one (attach).
    pub tty: bool,
}

/// Copy what `r` yields into `tx` until EOF, a read error, or the receiver is gone.
pub(super) async fn copy_out<R: AsyncRead + Unpin>(mut r: R, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Copy what `rx` yields into `w` until it ends or a write fails; `w` is then dropped, which
/// closes a pipe (the command reads EOF).
pub(super) async fn copy_in<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<Bytes>, mut w: W) {
    while let Some(b) = rx.recv().await {
        if w.write_all(&b).await.is_err() {
            break;
        }
    }
}

/// Collect what `rx` yields, keeping at most `cap` bytes (the rest is read and dropped, so the
/// writer never blocks on a full channel).
pub(super) async fn collect_capped(mut rx: mpsc::Receiver<Bytes>, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&b[..b.len().min(room)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_and_caps() {
        let (tx, rx) = mpsc::channel(4);
        let collector = tokio::spawn(collect_capped(rx, 5));
        copy_out(&b"hello world"[..], tx).await;
        assert_eq!(collector.await.unwrap(), b"hello");

        let (tx, rx) = mpsc::channel(4);
        let (r, w) = tokio::io::duplex(64);
        let copier = tokio::spawn(copy_in(rx, w));
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        drop(tx);
        copier.await.unwrap();
        let mut got = Vec::new();
        let mut r = r;
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abc");
    }
}
