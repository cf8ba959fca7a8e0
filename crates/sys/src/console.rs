//! A container's terminal is a pty master that crosses processes: the init or the exec helper
//! opens it and sends it over a unix socket (SCM_RIGHTS) to the shim or berthd, which later set
//! its window size (TIOCSWINSZ). Both ends of that, written once.
//!
//! The send runs in the container's init between fork and exec (after its seccomp filter is
//! loaded), so it allocates nothing and makes one `sendmsg` call.

// SCM_RIGHTS (sendmsg/recvmsg over cmsg buffers) and the tty ioctls are libc calls on raw memory.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Bytes of control data that carry one descriptor.
// SAFETY: CMSG_SPACE only does arithmetic on its argument.
const ONE_FD_SPACE: usize = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;

/// Room for one descriptor's control message, aligned as a `cmsghdr` (whose widest field is a
/// `size_t`) must be.
#[repr(C, align(8))]
struct ControlBuf([u8; ONE_FD_SPACE]);

/// Send `msg` on a connected unix socket with `fd` attached (SCM_RIGHTS). Never raises SIGPIPE;
/// an interrupted call is retried.
pub fn send_fd(sock: BorrowedFd<'_>, msg: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut hdr: libc::msghdr = unsafe { zeroed() };
    let mut control = ControlBuf([0; ONE_FD_SPACE]);
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if let Some(fd) = fd {
        hdr.msg_control = (&raw mut control).cast();
        hdr.msg_controllen = ONE_FD_SPACE as _;
        // SAFETY: msg_control points at ONE_FD_SPACE aligned bytes, room for one cmsghdr with
        // one descriptor, so the first header and its data are inside the buffer.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&hdr);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: hdr points at the live iovec and control buffer above; the kernel only reads.
        let sent = unsafe { libc::sendmsg(sock.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receive one message into `buf` from a unix socket, with the descriptor that came with it
/// (close-on-exec); any further descriptors are closed. `(0, None)` is the peer's EOF. An
/// interrupted call is retried; a non-blocking socket with nothing to read gives `WouldBlock`.
pub fn recv_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = ControlBuf([0; ONE_FD_SPACE]);
    let (n, hdr) = loop {
        // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
        let mut hdr: libc::msghdr = unsafe { zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = (&raw mut control).cast();
        hdr.msg_controllen = ONE_FD_SPACE as _;
        // SAFETY: hdr points at `buf` (through iov) and the control buffer, both live and
        // writable for the lengths given.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break (n as usize, hdr);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut received = None;
    // SAFETY: the kernel filled at most msg_controllen bytes of the aligned control buffer;
    // CMSG_FIRSTHDR returns null when no header fits in what it filled.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&hdr) };
    if !cmsg.is_null() {
        // SAFETY: a non-null cmsg is a complete header inside the control buffer.
        let (level, kind, len) = unsafe {
            (
                (*cmsg).cmsg_level,
                (*cmsg).cmsg_type,
                (*cmsg).cmsg_len as usize,
            )
        };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: arithmetic on the header's address and on zero.
            let (data, empty) = unsafe { (libc::CMSG_DATA(cmsg), libc::CMSG_LEN(0) as usize) };
            let count = len.saturating_sub(empty) / size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: the kernel wrote `count` descriptors after the header, inside the
                // buffer; each is newly installed for us and owned by nobody else.
                let fd = unsafe {
                    OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.cast::<RawFd>().add(i)))
                };
                // The first is the one sent; extras are closed when dropped.
                received.get_or_insert(fd);
            }
        }
    }
    Ok((n, received))
}

/// Set a terminal's window size in columns and rows (each at most `u16::MAX`).
pub fn set_window_size(tty: BorrowedFd<'_>, width: u64, height: u64) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: u16::try_from(height).unwrap_or(u16::MAX),
        ws_col: u16::try_from(width).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer; the descriptor is borrowed.
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A terminal's window size as (columns, rows).
pub fn window_size(tty: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    // SAFETY: all-zero is a valid winsize (plain integers).
    let mut size: libc::winsize = unsafe { zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize through a valid pointer; the descriptor is borrowed.
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((size.ws_col, size.ws_row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn passes_a_descriptor() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut r, w) = UnixStream::pair().unwrap();
        send_fd(a.as_fd(), b"pty", Some(w.as_fd())).unwrap();
        let mut buf = [0u8; 16];
        let (n, fd) = recv_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"pty");
        let mut passed = UnixStream::from(fd.unwrap());
        passed.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        r.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"x");
        // SAFETY: F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(passed.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);

        send_fd(a.as_fd(), b"ready", None).unwrap();
        let (n, fd) = recv_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fd.is_none()), (&b"ready"[..], true));
        drop(a);
        let (n, fd) = recv_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!((n, fd.is_none()), (0, true));
    }

    #[test]
    fn would_block_when_empty() {
        let (_a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let e = recv_fd(b.as_fd(), &mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn sets_a_pty_window_size() {
        // SAFETY: posix_openpt returns a new descriptor or -1.
        let raw = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if raw < 0 {
            return; // no /dev/ptmx here
        }
        // SAFETY: a new descriptor nobody else owns.
        let master = unsafe { OwnedFd::from_raw_fd(raw) };
        set_window_size(master.as_fd(), 132, 70_000).unwrap();
        // SAFETY: all-zero winsize is valid; TIOCGWINSZ writes one winsize.
        let mut got: libc::winsize = unsafe { zeroed() };
        // SAFETY: as above, through a valid pointer.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGWINSZ, &mut got) };
        assert_eq!(rc, 0);
        assert_eq!((got.ws_col, got.ws_row), (132, u16::MAX));
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(set_window_size(a.as_fd(), 1, 1).is_err());
    }
}
