//! The pty master berthd holds for an exec with a terminal: received from the exec helper over
//! the console socket, then pumped to and from the caller's channels.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::stdio::WindowSize;

/// A pty master, non-blocking, driven by tokio.
pub(super) struct PtyMaster {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

impl PtyMaster {
    // Registering a raw descriptor with tokio's reactor is unsafe (it must stay open).
    #[allow(unsafe_code)]
    pub(super) fn new(fd: OwnedFd) -> std::io::Result<PtyMaster> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same for
        // the AsyncFd's whole life.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }?;
        Ok(PtyMaster { fd })
    }

    /// Read some output; Ok(0) at the end (EIO: every slave end is closed).
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| {
                nix::unistd::read(inner.get_ref(), buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| {
                nix::unistd::write(inner.get_ref(), data).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    fn resize(&self, size: WindowSize) {
        let (width, height) = (size.width.into(), size.height.into());
        let _ = berth_sys::console::set_window_size(self.fd.get_ref().as_fd(), width, height);
    }
}

/// The terminal's output into `tx`, until the terminal or the receiver is done.
pub(super) async fn copy_out(master: Arc<PtyMaster>, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 32 << 10];
    while let Ok(n) = master.read(&mut buf).await {
        if n == 0 || tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
            break;
        }
    }
}

/// `rx`'s bytes typed into the terminal, until it ends or a write fails.
pub(super) async fn copy_in(mut rx: mpsc::Receiver<Bytes>, master: Arc<PtyMaster>) {
    while let Some(b) = rx.recv().await {
        if master.write_all(&b).await.is_err() {
            break;
        }
    }
}

/// Apply `rx`'s size changes to the terminal until it ends.
pub(super) async fn follow_resizes(mut rx: mpsc::Receiver<WindowSize>, master: Arc<PtyMaster>) {
    while let Some(size) = rx.recv().await {
        master.resize(size);
    }
}

/// Receive one descriptor (SCM_RIGHTS) from a connected unix socket.
pub(super) async fn recv_fd(stream: tokio::net::UnixStream) -> std::io::Result<OwnedFd> {
    loop {
        stream.readable().await?;
        let res = stream.try_io(tokio::io::Interest::READABLE, || {
            berth_sys::console::recv_fd(stream.as_fd(), &mut [0u8; 16]).map(|(_, fd)| fd)
        });
        match res {
            Ok(Some(fd)) => return Ok(fd),
            Ok(None) => {
                return Err(std::io::Error::other(
                    "the exec helper closed the console socket without a pty",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}
