//! The byte channels a caller connects to a process's stdio: a command run by exec, or a
//! container's own (attach). They are protocol-neutral: the streaming server's sessions (through
//! the daemon) and ExecSync's output collector both use them.

use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Everything `rx` delivers, kept while `budget` (shared with the other stream of the same
/// command) lasts; the rest is received and dropped.
pub(super) async fn collect_within(mut rx: mpsc::Receiver<Bytes>, budget: &AtomicUsize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        let taken = budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left - left.min(b.len()))
            })
            .map_or(0, |left| left.min(b.len()));
        out.extend_from_slice(&b[..taken]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_and_caps() {
        let budget = AtomicUsize::new(5);
        let (tx, rx) = mpsc::channel(4);
        let collect = collect_within(rx, &budget);
        let (got, ()) = tokio::join!(collect, copy_out(&b"hello world"[..], tx));
        assert_eq!(got, b"hello");
        // The budget is shared: the other stream of the command gets what is left.
        budget.store(7, Ordering::Relaxed);
        let (tx1, rx1) = mpsc::channel(4);
        let (tx2, rx2) = mpsc::channel(4);
        tx1.send(Bytes::from_static(b"abcd")).await.unwrap();
        tx2.send(Bytes::from_static(b"ABCD")).await.unwrap();
        tx1.send(Bytes::from_static(b"efgh")).await.unwrap();
        drop((tx1, tx2));
        let one = collect_within(rx1, &budget).await;
        let two = collect_within(rx2, &budget).await;
        assert_eq!(
            (one.as_slice(), two.as_slice()),
            (&b"abcdefg"[..], &b""[..])
        );

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
