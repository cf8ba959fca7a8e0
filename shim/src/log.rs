//! The shim's own log (never the container's): every line in berthd's log format and inside a
//! `shim{container=<id>}` span, written to two places.
//!
//! - berthd's log stream: the shim keeps its own handle on the stderr berthd gave it (under
//!   systemd the journal stream of berthd's unit, which outlives a berthd restart; in a terminal,
//!   the terminal). Nothing there may ever hold the shim up or end it: writes never block (a
//!   socket is sent to with `MSG_DONTWAIT | MSG_NOSIGNAL`; a pipe or terminal is reopened as an
//!   open file of the shim's own with `O_NONBLOCK`, never changing berthd's; a regular file is
//!   written as it is), lines wait in a bounded buffer while the stream is full and are dropped
//!   beyond it (waiting lines go out with the next line; those still waiting when the shim
//!   exits are lost), and a stream that fails (EPIPE: nobody reads any more) is given up.
//! - A persistent copy for post-mortems, `<root>/shim-logs/<id>.log` (berthd names it), that
//!   outlives the container: rotated when it would pass [`ROTATE_BYTES`], one `.1` kept; berthd
//!   prunes the logs of removed containers.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_proto::args::LogFormat;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::MsgFlags;
use nix::sys::stat::{Mode, SFlag};
use tracing_subscriber::fmt::MakeWriter;

/// A shim log file is rotated when a line would take it past this size.
pub const ROTATE_BYTES: u64 = 1 << 20;

/// Bytes of lines waiting for berthd's stream while it is full; lines beyond are dropped.
pub const STREAM_BUFFER_BYTES: usize = 64 << 10;

/// How a line reaches the inherited stream without blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    /// A socket (journald's stream): `send` with `MSG_DONTWAIT | MSG_NOSIGNAL`.
    Socket,
    /// A pipe or character device (a terminal), reopened non-blocking as the shim's own.
    NonBlocking,
    /// A regular file: written as it is (its shared offset keeps the writers' lines apart).
    File,
}

/// berthd's log stream, as the shim writes to it.
#[derive(Debug)]
pub struct Stream {
    fd: OwnedFd,
    kind: StreamKind,
    /// Bytes not yet taken by the stream (whole lines, but for the rest of a partial write).
    pending: Vec<u8>,
    /// Lines dropped because the buffer was full.
    dropped: u64,
    /// The stream failed for good: nothing is written to it any more.
    failed: bool,
}

impl Stream {
    /// The shim's handle on `fd` (its stderr, as berthd passed it), or None when it is closed or
    /// of a kind that cannot be written without blocking.
    pub fn new(fd: impl AsFd) -> Option<Stream> {
        let fd = fd.as_fd();
        let st = nix::sys::stat::fstat(fd).ok()?;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let (fd, kind) = if kind == SFlag::S_IFSOCK {
            (fd.try_clone_to_owned().ok()?, StreamKind::Socket)
        } else if kind == SFlag::S_IFREG {
            (fd.try_clone_to_owned().ok()?, StreamKind::File)
        } else if kind == SFlag::S_IFIFO || kind == SFlag::S_IFCHR {
            // A new open file description: O_NONBLOCK set on it is the shim's alone (on a dup
            // it would be berthd's too).
            let own = nix::fcntl::open(
                format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
                OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
                Mode::empty(),
            )
            .ok()?;
            (own, StreamKind::NonBlocking)
        } else {
            return None;
        };
        Some(Stream {
            fd,
            kind,
            pending: Vec::new(),
            dropped: 0,
            failed: false,
        })
    }

    /// Queue one line (dropped when the buffer is full) and write what the stream takes now.
    pub fn write_line(&mut self, line: &[u8]) {
        if self.failed {
            return;
        }
        if self.pending.len() + line.len() <= STREAM_BUFFER_BYTES {
            self.pending.extend_from_slice(line);
        } else {
            self.dropped += 1;
        }
        self.flush();
    }

    /// Write what the stream takes without blocking.
    fn flush(&mut self) {
        while !self.pending.is_empty() {
            let written = match self.kind {
                StreamKind::Socket => nix::sys::socket::send(
                    self.fd.as_raw_fd(),
                    &self.pending,
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                ),
                StreamKind::NonBlocking | StreamKind::File => {
                    nix::unistd::write(&self.fd, &self.pending)
                }
            };
            match written {
                Ok(0) => return,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                // EPIPE (nobody reads any more), a full disk, anything else: the shim carries
                // on without this stream; its file keeps the lines.
                Err(_) => {
                    self.failed = true;
                    self.pending = Vec::new();
                    return;
                }
            }
        }
    }

    /// Lines dropped so far because the stream did not take them.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the stream failed and is no longer written.
    pub fn failed(&self) -> bool {
        self.failed
    }
}

/// A log file rotated by size: `path`, and `path.1` with the lines before.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
}

/// `path` with `.1` appended: the rotated file.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

impl RotatingFile {
    /// Open (or create) `path` for appending; it is rotated when a line would take it past
    /// `max` bytes.
    pub fn open(path: &Path, max: u64) -> io::Result<RotatingFile> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            max,
        })
    }

    /// Append one line, rotating first when it would not fit. Errors drop the line: the shim's
    /// work never depends on its log.
    pub fn write_line(&mut self, line: &[u8]) {
        let len = u64::try_from(line.len()).unwrap_or(u64::MAX);
        if self.size > 0 && self.size.saturating_add(len) > self.max {
            self.rotate();
        }
        let Some(file) = &mut self.file else {
            return;
        };
        if file.write_all(line).is_ok() {
            self.size = self.size.saturating_add(len);
        }
    }

    /// `path` becomes `path.1` (replacing the one before) and a new `path` is started.
    fn rotate(&mut self) {
        self.file = None;
        if std::fs::rename(&self.path, rotated_path(&self.path)).is_err() {
            // Cannot rotate: start the file again rather than grow past the bound.
            let _ = std::fs::remove_file(&self.path);
        }
        self.file = open_append(&self.path).ok();
        self.size = 0;
    }
}

/// Where the shim's log lines go.
#[derive(Debug, Default)]
pub struct Sinks {
    pub stream: Option<Stream>,
    pub file: Option<RotatingFile>,
}

impl Sinks {
    fn write_line(&mut self, line: &[u8]) {
        if let Some(s) = &mut self.stream {
            s.write_line(line);
        }
        if let Some(f) = &mut self.file {
            f.write_line(line);
        }
    }
}

/// The tracing writer: each event is formatted into a [`Line`], handed whole to the sinks.
#[derive(Debug, Default)]
pub struct ShimLog(Mutex<Sinks>);

impl ShimLog {
    pub fn new(sinks: Sinks) -> ShimLog {
        ShimLog(Mutex::new(sinks))
    }

    fn write_line(&self, line: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_line(line);
    }
}

/// One event's formatted text, written to the sinks when it is dropped.
pub struct Line<'a> {
    log: &'a ShimLog,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.log.write_line(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for ShimLog {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            log: self,
            buf: Vec::new(),
        }
    }
}

/// Install the shim's log: lines in `format` to the stream berthd gave it on stderr and to
/// `file` (rotated), each inside the returned `shim{container=<id>}` span, which the caller
/// keeps entered. A file that cannot be opened is reported in the log and left out.
pub fn init(
    id: &str,
    format: LogFormat,
    file: Option<&Path>,
) -> io::Result<tracing::span::EnteredSpan> {
    let stream = Stream::new(io::stderr());
    let (file, file_error) = match file.map(|p| (p, RotatingFile::open(p, ROTATE_BYTES))) {
        None => (None, None),
        Some((_, Ok(f))) => (Some(f), None),
        Some((p, Err(e))) => (None, Some(format!("{}: {e}", p.display()))),
    };
    let writer = ShimLog::new(Sinks { stream, file });
    // Never colours: the lines go to files and journals (and the workspace may enable the
    // feature that would add them).
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Text => tracing::subscriber::set_global_default(builder.finish()),
        LogFormat::Json => {
            tracing::subscriber::set_global_default(builder.json().with_current_span(true).finish())
        }
    }
    .map_err(io::Error::other)?;
    let span = tracing::info_span!("shim", container = %id).entered();
    if let Some(e) = file_error {
        tracing::warn!("the shim's log file cannot be written: {e}");
    }
    Ok(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn lines(n: usize, len: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut l = format!("{i:08} ").into_bytes();
                l.resize(len - 1, b'x');
                l.push(b'\n');
                l
            })
            .collect()
    }

    #[test]
    fn rotates_by_size_keeping_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c1.log");
        let mut f = RotatingFile::open(&path, 1000).unwrap();
        let all = lines(25, 100);
        for l in &all {
            f.write_line(l);
        }
        let cur = std::fs::read(&path).unwrap();
        let old = std::fs::read(rotated_path(&path)).unwrap();
        // 10 lines a file: lines 20..25 now, 10..20 before; 0..10 are gone.
        assert_eq!(cur, all[20..].concat());
        assert_eq!(old, all[10..20].concat());
        assert!(!dir.path().join("c1.log.1.1").exists());
        // Reopened (a restarted shim), it goes on from the size it finds.
        drop(f);
        let mut f = RotatingFile::open(&path, 1000).unwrap();
        for l in &all[..5] {
            f.write_line(l);
        }
        assert_eq!(std::fs::read(&path).unwrap().len(), 1000);
        assert_eq!(
            std::fs::read(rotated_path(&path)).unwrap(),
            all[10..20].concat()
        );
        f.write_line(&all[5]);
        assert_eq!(std::fs::read(&path).unwrap(), all[5].clone());
        assert_eq!(
            std::fs::read(rotated_path(&path)).unwrap(),
            [&all[20..], &all[..5]].concat().concat()
        );
    }

    #[test]
    fn a_line_longer_than_the_bound_still_goes_in_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut f = RotatingFile::open(&path, 50).unwrap();
        let long = lines(1, 200).remove(0);
        f.write_line(b"short\n");
        f.write_line(&long);
        assert_eq!(std::fs::read(&path).unwrap(), long);
        assert_eq!(std::fs::read(rotated_path(&path)).unwrap(), b"short\n");
    }

    #[test]
    fn a_full_pipe_never_blocks_and_drops_beyond_the_buffer() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut s = Stream::new(&w).unwrap();
        assert_eq!(s.kind, StreamKind::NonBlocking);
        // berthd's own end stays blocking: O_NONBLOCK went on the shim's own open file.
        let flags = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        // Nobody reads: the pipe (64 KiB) fills, then the buffer, then lines are dropped.
        let all = lines(2000, 100);
        let t = std::time::Instant::now();
        for l in &all {
            s.write_line(l);
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert!(s.dropped() > 0, "nothing dropped");
        assert!(s.pending.len() <= STREAM_BUFFER_BYTES);
        assert!(!s.failed());
        // The reader comes back: what was kept arrives whole and in order.
        let mut got = Vec::new();
        let mut r = File::from(r);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = std::io::Read::read(&mut r, &mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            s.write_line(b"");
            if s.pending.is_empty() {
                break;
            }
        }
        let dropped = s.dropped();
        drop(s);
        drop(w);
        std::io::Read::read_to_end(&mut r, &mut got).unwrap();
        assert_eq!(got.len() % 100, 0);
        let kept = got.len() / 100;
        assert_eq!(u64::try_from(kept).unwrap() + dropped, 2000);
        assert_eq!(got, all[..kept].concat());
    }

    #[test]
    fn a_closed_stream_is_given_up_without_a_signal() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut s = Stream::new(&w).unwrap();
        drop(r);
        // EPIPE (SIGPIPE is ignored, as Rust programs start): the shim carries on.
        s.write_line(b"one\n");
        assert!(s.failed());
        s.write_line(b"two\n");
        assert!(s.pending.is_empty());

        let (a, b) = UnixStream::pair().unwrap();
        let mut s = Stream::new(&a).unwrap();
        assert_eq!(s.kind, StreamKind::Socket);
        s.write_line(b"seen\n");
        let mut got = [0u8; 5];
        std::io::Read::read_exact(&mut (&b), &mut got).unwrap();
        assert_eq!(&got, b"seen\n");
        drop(b);
        // MSG_NOSIGNAL: no SIGPIPE even where it is not ignored.
        s.write_line(b"lost\n");
        assert!(s.failed());
    }

    #[test]
    fn a_full_socket_never_blocks() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut s = Stream::new(&a).unwrap();
        for l in &lines(20_000, 100) {
            s.write_line(l);
        }
        assert!(s.dropped() > 0);
        assert!(!s.failed());
    }

    #[test]
    fn a_regular_file_shares_the_offset_of_berthds_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berthd.log");
        let mut berthd = File::create(&path).unwrap();
        let mut s = Stream::new(&berthd).unwrap();
        assert_eq!(s.kind, StreamKind::File);
        berthd.write_all(b"berthd 1\n").unwrap();
        s.write_line(b"shim 1\n");
        berthd.write_all(b"berthd 2\n").unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"berthd 1\nshim 1\nberthd 2\n"
        );
    }

    #[test]
    fn each_event_is_one_line_in_both_sinks_tagged_with_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c9.log");
        let (a, b) = UnixStream::pair().unwrap();
        let log = ShimLog::new(Sinks {
            stream: Stream::new(&a),
            file: Some(RotatingFile::open(&path, ROTATE_BYTES).unwrap()),
        });
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log)
            .json()
            .with_current_span(true)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let _s = tracing::info_span!("shim", container = "c9").entered();
            tracing::info!("hello {}", 1);
            tracing::warn!(pid = 7, "second");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let got: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), 2, "{text}");
        assert_eq!(got[0]["fields"]["message"], "hello 1");
        assert_eq!(got[1]["fields"]["pid"], 7);
        for l in &got {
            assert_eq!(l["span"]["container"], "c9", "{l}");
        }
        b.set_nonblocking(true).unwrap();
        let mut streamed = vec![0u8; text.len() + 1];
        let n = std::io::Read::read(&mut (&b), &mut streamed).unwrap();
        assert_eq!(&streamed[..n], text.as_bytes());
    }
}
