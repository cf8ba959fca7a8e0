//! Container stdio and the CRI log writer.
//!
//! The container's stdout and stderr are pipes (or one pty master) owned by the shim. Each is
//! pumped into the CRI log file, one record per line:
//!
//! ```text
//! 2026-11-22T13:05:28.103055185Z stdout F hello
//! ```
//!
//! The splitting follows containerd's CRI logger (`internal/cri/io/logger.go`) to the byte:
//! - a line ends at `\n`; a `\r` right before it is part of the line end and dropped (so tty
//!   output, which the pty turns into `\r\n`, logs clean);
//! - content longer than [`MAX_LINE`] (16 KiB) is cut into `P` records of exactly 16 KiB, and
//!   the rest of the line (at most 16 KiB) is the `F` record;
//! - an unterminated line at EOF is written as a `P` record (containerd: "it should be treated
//!   as a partial line"); nothing is written for an empty remainder;
//! - an empty line is a record with empty content (`... stdout F ` then `\n`).
//!
//! Timestamps are UTC with always nine fractional digits and a `Z` (containerd trims trailing
//! zeros and uses the local zone; kubelet parses both).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The longest content of one log record (containerd's `max_container_log_line_size`).
pub const MAX_LINE: usize = 16 * 1024;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// `F` ends a line, `P` is a piece of a longer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Full,
    Partial,
}

impl Tag {
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Full => "F",
            Tag::Partial => "P",
        }
    }
}

/// Cuts a byte stream into log records (see the module docs for the rules).
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            max: max.max(1),
        }
    }

    /// Feed bytes; `emit` is called for every complete record.
    pub fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&data[..i]);
                    if self.pending.last() == Some(&b'\r') {
                        self.pending.pop();
                    }
                    self.emit_partials(false, emit);
                    emit(Tag::Full, &self.pending);
                    self.pending.clear();
                    data = &data[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(data);
                    // A trailing `\r` may be half of a `\r\n`: it does not count yet.
                    self.emit_partials(true, emit);
                    data = &[];
                }
            }
        }
    }

    /// The stream ended: whatever is left is a partial line.
    pub fn finish(&mut self, emit: &mut impl FnMut(Tag, &[u8])) {
        self.emit_partials(false, emit);
        if !self.pending.is_empty() {
            emit(Tag::Partial, &self.pending);
            self.pending.clear();
        }
    }

    fn emit_partials(&mut self, hold_cr: bool, emit: &mut impl FnMut(Tag, &[u8])) {
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            let counted = if hold_cr && rest.last() == Some(&b'\r') {
                rest.len() - 1
            } else {
                rest.len()
            };
            if counted <= self.max {
                break;
            }
            emit(Tag::Partial, &rest[..self.max]);
            start += self.max;
        }
        if start > 0 {
            self.pending.drain(..start);
        }
    }
}

pub use berth_sys::time::rfc3339_nano;

/// One CRI log record, newline included.
pub fn format_record(out: &mut Vec<u8>, t: SystemTime, stream: Stream, tag: Tag, content: &[u8]) {
    out.clear();
    out.extend_from_slice(rfc3339_nano(t).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Warnings about one log file that cannot be written: at most this many per [`WARN_WINDOW`].
const WARN_BURST: u32 = 5;
const WARN_WINDOW: Duration = Duration::from_secs(60);

/// Rate limit of the shim's own warnings: a full disk fails every record of a chatty container,
/// and the shim's log (on the same disk, often) must not grow by a line per record.
#[derive(Debug)]
struct WarnLimit {
    window_start: Option<Instant>,
    in_window: u32,
    /// Warnings dropped since the last one logged.
    suppressed: u64,
}

impl WarnLimit {
    const fn new() -> WarnLimit {
        WarnLimit {
            window_start: None,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// Whether a warning at `now` is logged: Some(how many were suppressed before it), or None
    /// (suppressed, counted).
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let new_window = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= WARN_WINDOW);
        if new_window {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < WARN_BURST {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// The container's CRI log file, shared by the stdout and stderr pumps.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
    warnings: Mutex<WarnLimit>,
}

impl LogFile {
    /// Open (append, create) the log at `path`, creating its parent directories.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(open_log(path)?),
            warnings: Mutex::new(WarnLimit::new()),
        })
    }

    /// Warn that a record of `stream` could not be written: at most [`WARN_BURST`] times a
    /// minute, the next warning after a pause saying how many were suppressed.
    pub fn warn_write_failed(&self, stream: Stream, e: &io::Error) {
        let admitted = self
            .warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(Instant::now());
        match admitted {
            None => {}
            Some(0) => tracing::warn!(
                "writing {} to {}: {e}",
                stream.as_str(),
                self.path.display()
            ),
            Some(suppressed) => tracing::warn!(
                "writing {} to {}: {e} ({suppressed} similar warnings suppressed)",
                stream.as_str(),
                self.path.display()
            ),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the file at the same path again (kubelet renamed the old one away).
    pub fn reopen(&self) -> io::Result<()> {
        let file = open_log(&self.path)?;
        *self.lock() = file;
        Ok(())
    }

    /// Write one record with one write call (the file is O_APPEND, so records never interleave).
    pub fn write_record(&self, record: &[u8]) -> io::Result<()> {
        let mut file = self.lock();
        let mut rest = record;
        while !rest.is_empty() {
            // Only a full disk or a signal splits a regular-file write; finish the record then.
            match file.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, File> {
        // A panic while holding the lock cannot leave a File in a bad state.
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// The shim's ends of the container's stdio.
#[derive(Debug)]
pub enum Stdio {
    /// stdout and stderr pipes; stdin a pipe when the container keeps stdin open (else the
    /// container's stdin is /dev/null).
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// The pty master; everything is logged as stdout.
    Tty { master: OwnedFd },
}

/// The shim's ends, split for the pumps (output) and the attach path (input, resize).
#[derive(Debug)]
pub struct StdioParts {
    pub outputs: Vec<(OwnedFd, Stream)>,
    /// Where attachers' stdin goes (a pipe or a duplicate of the pty master).
    pub stdin: Option<OwnedFd>,
    /// The pty master, for resizes.
    pub console: Option<OwnedFd>,
}

impl Stdio {
    /// The read ends and the stream each is logged as, and the input ends. With a tty and
    /// `stdin`, attachers write into (a duplicate of) the master.
    pub fn split(self, stdin: bool) -> io::Result<StdioParts> {
        Ok(match self {
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => StdioParts {
                outputs: vec![(stdout, Stream::Stdout), (stderr, Stream::Stderr)],
                stdin,
                console: None,
            },
            Stdio::Tty { master } => {
                let console = master.try_clone()?;
                let input = if stdin {
                    Some(master.try_clone()?)
                } else {
                    None
                };
                StdioParts {
                    outputs: vec![(master, Stream::Stdout)],
                    stdin: input,
                    console: Some(console),
                }
            }
        })
    }
}

/// What the pumps send attachers: which stream, and the bytes as read.
pub type Output = (Stream, bytes::Bytes);

/// Copy one stream into the log until EOF (or EIO: a pty whose slave side is all closed).
pub async fn pump(
    fd: OwnedFd,
    stream: Stream,
    log: Arc<LogFile>,
    attachers: tokio::sync::broadcast::Sender<Output>,
) -> io::Result<()> {
    let fd = async_reader(fd)?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut record = Vec::with_capacity(256);
    let mut splitter = LineSplitter::new(MAX_LINE);
    let mut write = |tag: Tag, content: &[u8]| {
        format_record(&mut record, SystemTime::now(), stream, tag, content);
        if let Err(e) = log.write_record(&record) {
            // Keep draining the container's output even when the log cannot take it.
            log.warn_write_failed(stream, &e);
        }
    };
    loop {
        let mut guard = fd.readable().await?;
        let res = guard
            .try_io(|inner| nix::unistd::read(inner.get_ref(), &mut buf).map_err(io::Error::from));
        match res {
            Err(_would_block) => continue,
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                // Attachers get the bytes as they come; a slow one misses some, never blocks.
                if attachers.receiver_count() > 0 {
                    let _ = attachers.send((stream, bytes::Bytes::copy_from_slice(&buf[..n])));
                }
                splitter.push(&buf[..n], &mut write)
            }
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => break,
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => {
                splitter.finish(&mut write);
                return Err(e);
            }
        }
    }
    splitter.finish(&mut write);
    Ok(())
}

/// Register `fd` (made non-blocking) with the runtime for reading.
// tokio's AsyncFd::register_with_interest is an unsafe fn.
#[allow(unsafe_code)]
pub(crate) fn async_reader(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    set_nonblocking(&fd)?;
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor stays open and the
    // same for the AsyncFd's whole life.
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn warnings_are_rate_limited() {
        let mut w = WarnLimit::new();
        let t0 = Instant::now();
        let got: Vec<_> = (0..8)
            .map(|i| w.admit(t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(
            got,
            [
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                None
            ]
        );
        // A new window: the first warning says how many were dropped.
        let later = t0 + WARN_WINDOW + Duration::from_secs(1);
        assert_eq!(w.admit(later), Some(3));
        assert_eq!(w.admit(later), Some(0));
    }

    /// A container writing many lines to a log that cannot be written (a full disk:
    /// /dev/full): its output is drained, and the shim warns a handful of times, not per line.
    #[tokio::test]
    async fn a_full_log_warns_a_few_times() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Count(Arc<AtomicUsize>);
        impl Write for Count {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                let lines = b.iter().filter(|c| **c == b'\n').count();
                self.0.fetch_add(lines, Ordering::Relaxed);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let lines = Arc::new(AtomicUsize::new(0));
        let counter = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Count(counter.clone()))
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let log = Arc::new(LogFile::open(Path::new("/dev/full")).unwrap());
        let (r, w) = nix::unistd::pipe().unwrap();
        let (attachers, _) = tokio::sync::broadcast::channel(1);
        let pumping = pump(r, Stream::Stdout, log, attachers);
        let writing = tokio::task::spawn_blocking(move || {
            let mut w = File::from(w);
            for i in 0..1000 {
                writeln!(w, "line {i}").unwrap();
            }
        });
        let (pumped, written) = tokio::join!(pumping, writing);
        pumped.unwrap();
        written.unwrap();
        let n = lines.load(Ordering::Relaxed);
        // A handful (the burst), not one per line.
        assert!(
            (1..=10).contains(&n),
            "{n} warnings for 1000 failed records"
        );
    }

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(Tag, Vec<u8>)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new(max);
        let mut emit = |t: Tag, c: &[u8]| out.push((t, c.to_vec()));
        for c in chunks {
            s.push(c, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    fn full(s: &str) -> (Tag, Vec<u8>) {
        (Tag::Full, s.as_bytes().to_vec())
    }

    fn part(s: &str) -> (Tag, Vec<u8>) {
        (Tag::Partial, s.as_bytes().to_vec())
    }

    #[test]
    fn lines_and_crlf() {
        assert_eq!(
            split(16, &[b"hello\nwor", b"ld\r\n\nx\ry\n"]),
            vec![full("hello"), full("world"), full(""), full("x\ry")]
        );
        // `\r\n` split across reads.
        assert_eq!(
            split(16, &[b"ab\r", b"\ncd\n"]),
            vec![full("ab"), full("cd")]
        );
    }

    #[test]
    fn trailing_partial_at_eof_is_p() {
        assert_eq!(split(16, &[b"a\nbc"]), vec![full("a"), part("bc")]);
        assert_eq!(split(16, &[b"a\n"]), vec![full("a")]);
        assert_eq!(split(16, &[b"x\r"]), vec![part("x\r")]);
    }

    #[test]
    fn long_lines_are_cut_like_containerd() {
        // Exactly max: one F.
        assert_eq!(split(4, &[b"abcd\n"]), vec![full("abcd")]);
        // max + 1: P(max) then F(1).
        assert_eq!(split(4, &[b"abcde\n"]), vec![part("abcd"), full("e")]);
        // 2 * max: P then F(max), never an empty F.
        assert_eq!(
            split(4, &[b"ab", b"cdef", b"gh\n"]),
            vec![part("abcd"), full("efgh")]
        );
        // A `\r\n` right at the limit does not count against it.
        assert_eq!(split(4, &[b"abcd\r", b"\n"]), vec![full("abcd")]);
        // Long and unterminated.
        assert_eq!(
            split(4, &[b"abcdefghij"]),
            vec![part("abcd"), part("efgh"), part("ij")]
        );
        let big = vec![b'a'; 20_000];
        let out = split(MAX_LINE, &[&big, b"\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0, out[0].1.len()), (Tag::Partial, 16_384));
        assert_eq!((out[1].0, out[1].1.len()), (Tag::Full, 3_616));
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::new(1_795_352_728, 103_055_185);
        assert_eq!(rfc3339_nano(t), "2026-11-22T13:05:28.103055185Z");
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::new(951_782_400, 5); // 2000-02-29
        assert_eq!(rfc3339_nano(leap), "2000-02-29T00:00:00.000000005Z");
    }

    #[test]
    fn record_format() {
        let mut out = Vec::new();
        let t = UNIX_EPOCH + Duration::new(1_795_352_728, 103_055_185);
        format_record(&mut out, t, Stream::Stdout, Tag::Full, b"hello");
        assert_eq!(out, b"2026-11-22T13:05:28.103055185Z stdout F hello\n");
        format_record(&mut out, t, Stream::Stderr, Tag::Partial, b"");
        assert_eq!(out, b"2026-11-22T13:05:28.103055185Z stderr P \n");
    }

    #[test]
    fn log_file_reopens_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/0.log");
        let log = LogFile::open(&path).unwrap();
        log.write_record(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("old.log")).unwrap();
        log.write_record(b"two\n").unwrap();
        log.reopen().unwrap();
        log.write_record(b"three\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("old.log")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }
}
