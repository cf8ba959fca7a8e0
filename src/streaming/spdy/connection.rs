//! One SPDY connection: the table of open streams, flow control, and the tasks that read and
//! write frames.
//!
//! Flow control: berth advertises the default 64 KiB windows and sends WINDOW_UPDATE (stream and
//! session) as the session consumes what the client sent; a client that overruns its windows
//! is held back by TCP instead (the reader stops once a stream has a window's worth of
//! undelivered bytes). spdystream never sends WINDOW_UPDATE nor SETTINGS and ignores windows,
//! so berth enforces the client's windows only once the client has shown it keeps them (a
//! SETTINGS with INITIAL_WINDOW_SIZE or any WINDOW_UPDATE); otherwise more than 64 KiB of
//! output would stall forever against kubectl.
//!
//! Tasks per connection: a reader (frames in, SYN_REPLY/PING answers, windows), a writer (the
//! only owner of the write half and of the compressor), one forwarder per client stream
//! (delivers its bytes to a bounded channel, then grants the window back) and one pump per
//! server-written stream (a bounded channel into data frames within the client's windows).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::SpdyError;
use super::frame::{
    DEFAULT_WINDOW, Encoder, FLAG_FIN, Frame, FrameReader, HeaderBlock, RST_INVALID_STREAM,
    RST_PROTOCOL_ERROR, RST_REFUSED_STREAM, SETTINGS_INITIAL_WINDOW_SIZE, header,
};

const MAX_WINDOW: i64 = 0x7fff_ffff;
/// The largest data frame berth writes.
const MAX_CHUNK: usize = 32 * 1024;
/// Depth of the bounded channels handed to the session (in messages).
pub(super) const CHANNEL_DEPTH: usize = 16;
/// How long berth waits for the client to close after GOAWAY.
/// Streams one connection may have open at once (either side still sending); SYN_STREAMs
/// beyond it are refused (RST_STREAM REFUSED_STREAM). An exec uses at most five; kubectl
/// port-forward two per forwarded connection, all on one SPDY connection.
pub(super) const MAX_STREAMS: usize = 1024;
pub(super) const LINGER: Duration = Duration::from_secs(5);

enum Out {
    Frame(Frame),
    /// Flush, shut the write half down, acknowledge.
    Shutdown(oneshot::Sender<()>),
}

/// Why a send on a stream failed.
#[derive(Debug)]
pub(super) enum SendError {
    Gone,
    Reset,
}

struct Flow {
    /// The client has shown it keeps SPDY windows: respect its windows when sending.
    enforce: bool,
    initial: i64,
    session: i64,
    /// Send windows of the streams berth may still write on (an entry goes with berth's FIN
    /// or the client's RST_STREAM).
    streams: HashMap<u32, i64>,
    /// The highest client stream id seen (for GOAWAY).
    last_id: u32,
    /// GOAWAY sent: refuse new streams.
    closing: bool,
}

pub(super) struct Shared {
    flow: Mutex<Flow>,
    /// Window or stream state changed.
    changed: Notify,
    /// The connection is gone (read or write side failed, or closed).
    dead: watch::Sender<bool>,
    gone: Mutex<Option<oneshot::Sender<()>>>,
}

impl Shared {
    fn flow(&self) -> MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn mark_dead(&self) {
        self.dead.send_replace(true);
        self.changed.notify_waiters();
        let gone = self.gone.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(gone) = gone {
            let _ = gone.send(());
        }
    }
}

#[derive(Clone)]
pub(super) struct Conn {
    out: mpsc::Sender<Out>,
    pub(super) shared: Arc<Shared>,
}

impl Conn {
    async fn frame(&self, frame: Frame) -> Result<(), SendError> {
        self.out
            .send(Out::Frame(frame))
            .await
            .map_err(|_| SendError::Gone)
    }

    /// Waits for send window on `id`; returns how many of `want` bytes may go now.
    async fn take_window(&self, id: u32, want: usize) -> Result<usize, SendError> {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                if *self.shared.dead.borrow() {
                    return Err(SendError::Gone);
                }
                let mut guard = self.shared.flow();
                let flow = &mut *guard;
                let window = flow.streams.get_mut(&id).ok_or(SendError::Reset)?;
                let avail = if flow.enforce {
                    (*window).min(flow.session)
                } else {
                    MAX_CHUNK as i64
                };
                if avail > 0 {
                    let n = want.min(MAX_CHUNK).min(avail as usize);
                    *window -= n as i64;
                    flow.session -= n as i64;
                    return Ok(n);
                }
            }
            notified.await;
        }
    }

    pub(super) async fn send_data(&self, id: u32, mut data: Bytes) -> Result<(), SendError> {
        while !data.is_empty() {
            let n = self.take_window(id, data.len()).await?;
            let chunk = data.split_to(n);
            self.frame(Frame::Data {
                id,
                flags: 0,
                data: chunk,
            })
            .await?;
        }
        Ok(())
    }

    /// Half-closes `id` from berth's side (once).
    pub(super) async fn send_fin(&self, id: u32) -> Result<(), SendError> {
        if self.shared.flow().streams.remove(&id).is_none() {
            return Ok(());
        }
        self.frame(Frame::Data {
            id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await
    }

    /// FIN on every stream still open, GOAWAY, and shut the write half down.
    pub(super) async fn close(&self) {
        let (ids, last_good) = {
            let mut flow = self.shared.flow();
            flow.closing = true;
            let mut ids: Vec<u32> = flow.streams.keys().copied().collect();
            ids.sort_unstable();
            (ids, flow.last_id)
        };
        for id in ids {
            let _ = self.send_fin(id).await;
        }
        let _ = self
            .frame(Frame::GoAway {
                last_good,
                status: 0,
            })
            .await;
        let (ack_tx, ack_rx) = oneshot::channel();
        if self.out.send(Out::Shutdown(ack_tx)).await.is_ok() {
            let _ = tokio::time::timeout(LINGER, ack_rx).await;
        }
    }
}

/// A stream the client opened.
pub(super) struct NewStream {
    pub(super) id: u32,
    pub(super) headers: HeaderBlock,
    /// What the client sends on it (None: FIN).
    pub(super) data: mpsc::Receiver<Bytes>,
}

impl NewStream {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

struct Inbound {
    tx: mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>,
    /// Bytes received but not yet delivered to the session (at most a window's worth).
    budget: Arc<Semaphore>,
}

struct Reader<R> {
    frames: FrameReader<R>,
    conn: Conn,
    streams: mpsc::Sender<NewStream>,
    inbound: HashMap<u32, Inbound>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    async fn run(mut self) {
        loop {
            match self.frames.read_frame().await {
                Ok(Some(frame)) => {
                    if self.handle(frame).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY read");
                    break;
                }
            }
        }
        self.inbound.clear();
        self.conn.shared.mark_dead();
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), SendError> {
        match frame {
            Frame::SynStream {
                id, flags, headers, ..
            } => {
                let (last_id, closing, open) = {
                    let flow = self.conn.shared.flow();
                    let open = self.inbound.len()
                        + flow
                            .streams
                            .keys()
                            .filter(|k| !self.inbound.contains_key(k))
                            .count();
                    (flow.last_id, flow.closing, open)
                };
                if id == 0 || id % 2 == 0 || id <= last_id {
                    let status = RST_PROTOCOL_ERROR;
                    return self.conn.frame(Frame::RstStream { id, status }).await;
                }
                if closing || open >= MAX_STREAMS {
                    // The id is used up all the same: ids only grow.
                    self.conn.shared.flow().last_id = id;
                    let status = RST_REFUSED_STREAM;
                    return self.conn.frame(Frame::RstStream { id, status }).await;
                }
                {
                    let mut flow = self.conn.shared.flow();
                    flow.last_id = id;
                    let window = flow.initial;
                    flow.streams.insert(id, window);
                }
                let (user_tx, user_rx) = mpsc::channel(CHANNEL_DEPTH);
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(forward(id, rx, user_tx, self.conn.clone()));
                if flags & FLAG_FIN == 0 {
                    let budget = Arc::new(Semaphore::new(DEFAULT_WINDOW as usize));
                    self.inbound.insert(id, Inbound { tx, budget });
                }
                let headers_out = Vec::new();
                self.conn
                    .frame(Frame::SynReply {
                        id,
                        flags: 0,
                        headers: headers_out,
                    })
                    .await?;
                let new = NewStream {
                    id,
                    headers,
                    data: user_rx,
                };
                let _ = self.streams.send(new).await;
            }
            Frame::Data { id, flags, data } => match self.inbound.get(&id) {
                Some(inbound) => {
                    if !data.is_empty() {
                        let n = data.len().min(DEFAULT_WINDOW as usize) as u32;
                        if let Ok(permit) = inbound.budget.clone().acquire_many_owned(n).await {
                            let _ = inbound.tx.send((data, permit));
                        }
                    }
                    if flags & FLAG_FIN != 0 {
                        self.inbound.remove(&id);
                    }
                }
                None => {
                    let last_id = self.conn.shared.flow().last_id;
                    if id > last_id {
                        let status = RST_INVALID_STREAM;
                        self.conn.frame(Frame::RstStream { id, status }).await?;
                    }
                }
            },
            Frame::Headers { id, flags, .. } => {
                if flags & FLAG_FIN != 0 {
                    self.inbound.remove(&id);
                }
            }
            Frame::RstStream { id, .. } => {
                self.inbound.remove(&id);
                self.conn.shared.flow().streams.remove(&id);
                self.conn.shared.changed.notify_waiters();
            }
            Frame::Settings { entries, .. } => {
                let mut flow = self.conn.shared.flow();
                for (_, setting, value) in entries {
                    if setting == SETTINGS_INITIAL_WINDOW_SIZE {
                        let value = i64::from(value).min(MAX_WINDOW);
                        let delta = value - flow.initial;
                        for st in flow.streams.values_mut() {
                            *st += delta;
                        }
                        flow.initial = value;
                        flow.enforce = true;
                    }
                }
                drop(flow);
                self.conn.shared.changed.notify_waiters();
            }
            Frame::WindowUpdate { id, delta } => {
                let mut flow = self.conn.shared.flow();
                flow.enforce = true;
                let delta = i64::from(delta);
                if id == 0 {
                    flow.session = (flow.session + delta).min(MAX_WINDOW);
                } else if let Some(st) = flow.streams.get_mut(&id) {
                    *st = (*st + delta).min(MAX_WINDOW);
                }
                drop(flow);
                self.conn.shared.changed.notify_waiters();
            }
            Frame::Ping { id } => {
                // Odd ids are the client's pings; even ones would answer ours (berth sends none).
                if id % 2 == 1 {
                    self.conn.frame(Frame::Ping { id }).await?;
                }
            }
            // GOAWAY: the client opens no more streams; those it has keep going.
            Frame::GoAway { .. } | Frame::SynReply { .. } | Frame::Unknown { .. } => {}
        }
        Ok(())
    }
}

/// Delivers one client stream's bytes to the session, then grants the window back.
async fn forward(
    id: u32,
    mut rx: mpsc::UnboundedReceiver<(Bytes, OwnedSemaphorePermit)>,
    user: mpsc::Sender<Bytes>,
    conn: Conn,
) {
    let mut user = Some(user);
    while let Some((data, permit)) = rx.recv().await {
        let delta = data.len() as u32;
        if let Some(tx) = &user
            && tx.send(data).await.is_err()
        {
            // The session does not want this stream's bytes: discard them from now on.
            user = None;
        }
        drop(permit);
        let _ = conn.frame(Frame::WindowUpdate { id, delta }).await;
        let _ = conn.frame(Frame::WindowUpdate { id: 0, delta }).await;
    }
}

/// Writes what the session sends on `rx` as data frames on `id`, then FIN. Once `closing` is
/// set it writes only what is already queued.
pub(super) async fn pump(
    id: u32,
    mut rx: mpsc::Receiver<Bytes>,
    conn: Conn,
    mut closing: watch::Receiver<bool>,
) {
    enum Next {
        Data(Bytes),
        Eof,
        Closing,
        Dead,
    }
    let mut dead = conn.shared.dead.subscribe();
    loop {
        let next = tokio::select! {
            biased;
            item = rx.recv() => item.map_or(Next::Eof, Next::Data),
            Ok(_) = closing.wait_for(|c| *c) => Next::Closing,
            Ok(_) = dead.wait_for(|d| *d) => Next::Dead,
        };
        match next {
            Next::Data(data) => {
                if conn.send_data(id, data).await.is_err() {
                    return;
                }
            }
            Next::Eof => break,
            Next::Closing => {
                while let Ok(data) = rx.try_recv() {
                    if conn.send_data(id, data).await.is_err() {
                        return;
                    }
                }
                break;
            }
            Next::Dead => return,
        }
    }
    let _ = conn.send_fin(id).await;
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::Receiver<Out>,
    mut encoder: Encoder,
    shared: Arc<Shared>,
) {
    let mut dead = shared.dead.subscribe();
    let result: Result<(), SpdyError> = async {
        loop {
            let out = tokio::select! {
                out = rx.recv() => out,
                Ok(_) = dead.wait_for(|d| *d) => None,
            };
            match out {
                Some(Out::Frame(frame)) => {
                    let bytes = encoder.encode(&frame)?;
                    io.write_all(&bytes).await?;
                    if rx.is_empty() {
                        io.flush().await?;
                    }
                }
                Some(Out::Shutdown(ack)) => {
                    io.flush().await?;
                    io.shutdown().await?;
                    let _ = ack.send(());
                    return Ok(());
                }
                None => return Ok(()),
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "SPDY write");
        shared.mark_dead();
    }
}

pub(super) struct Started {
    pub(super) conn: Conn,
    pub(super) streams: mpsc::Receiver<NewStream>,
    pub(super) reader: JoinHandle<()>,
    pub(super) writer: JoinHandle<()>,
    pub(super) gone: oneshot::Receiver<()>,
}

impl Started {
    pub(super) fn abort(&self) {
        self.reader.abort();
        self.writer.abort();
        self.conn.shared.mark_dead();
    }
}

pub(super) fn start<T>(io: T) -> Result<Started, SpdyError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let encoder = Encoder::new()?;
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel(64);
    let (gone_tx, gone) = oneshot::channel();
    let shared = Arc::new(Shared {
        flow: Mutex::new(Flow {
            enforce: false,
            initial: i64::from(DEFAULT_WINDOW),
            session: i64::from(DEFAULT_WINDOW),
            streams: HashMap::new(),
            last_id: 0,
            closing: false,
        }),
        changed: Notify::new(),
        dead: watch::channel(false).0,
        gone: Mutex::new(Some(gone_tx)),
    });
    let conn = Conn {
        out: out_tx,
        shared: shared.clone(),
    };
    let writer = tokio::spawn(write_loop(wr, out_rx, encoder, shared));
    let (streams_tx, streams) = mpsc::channel(CHANNEL_DEPTH);
    let reader = tokio::spawn(
        Reader {
            frames: FrameReader::new(rd),
            conn: conn.clone(),
            streams: streams_tx,
            inbound: HashMap::new(),
        }
        .run(),
    );
    Ok(Started {
        conn,
        streams,
        reader,
        writer,
        gone,
    })
}

#[cfg(test)]
mod tests {
    use super::super::session::accept_command;
    use super::super::test_client::{Client, T, st};
    use super::*;
    use crate::streaming::{CommandStreams, Expected};
    use tokio::io::DuplexStream;

    async fn exec_with_output(c: &mut Client, b: DuplexStream) -> (CommandStreams, u32) {
        let expected = Expected {
            stdin: true,
            stdout: true,
            ..Default::default()
        };
        let server = tokio::spawn(accept_command(b, expected, T));
        c.open(&st("error")).await;
        c.open(&st("stdin")).await;
        let stdout = c.open(&st("stdout")).await;
        (server.await.unwrap().unwrap(), stdout)
    }

    /// A client that keeps windows (it sent SETTINGS) gets no more than its window.
    #[tokio::test]
    async fn output_respects_client_windows() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut c = Client::new(a);
        let window = 16 * 1024;
        c.send(Frame::Settings {
            flags: 0,
            entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, window)],
        })
        .await;
        let (mut s, stdout) = exec_with_output(&mut c, b).await;
        let total = 200 * 1024;
        let out = s.stdout.take().unwrap();
        tokio::spawn(async move {
            for _ in 0..total / 1024 {
                out.send(Bytes::from(vec![b'x'; 1024])).await.unwrap();
            }
        });
        // Frames through a channel: timing out on a half-read frame would lose bytes.
        let (dummy, _) = tokio::io::split(tokio::io::duplex(1).0);
        let mut r = std::mem::replace(&mut c.r, FrameReader::new(dummy));
        let (ftx, mut frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(f)) = r.read_frame().await {
                if ftx.send(f).is_err() {
                    break;
                }
            }
        });
        let mut got = 0usize;
        let mut granted = window as usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while got < total {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stuck at {got} of {granted}"
            );
            match tokio::time::timeout(Duration::from_millis(300), frames.recv()).await {
                Ok(f) => match f {
                    Some(Frame::Data { id, data, .. }) => {
                        assert_eq!(id, stdout);
                        got += data.len();
                        assert!(got <= granted, "{got} bytes sent, window {granted}");
                    }
                    Some(_) => {}
                    None => panic!("EOF"),
                },
                // Quiet for a while, though the window is not used up: just slow.
                Err(_) if got < granted => {}
                Err(_) => {
                    // Stalled with exactly the window used. Grant 48 KiB more.
                    let delta = 48 * 1024;
                    c.send(Frame::WindowUpdate { id: stdout, delta }).await;
                    c.send(Frame::WindowUpdate { id: 0, delta }).await;
                    granted += delta as usize;
                }
            }
        }
        assert_eq!(got, total);
    }

    /// At most MAX_STREAMS streams are open at once: one more is refused; when one ends, a new
    /// one is accepted again.
    #[tokio::test]
    async fn streams_per_connection_are_bounded() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut c = Client::new(a);
        let mut started = start(b).unwrap();
        let mut streams = std::mem::replace(&mut started.streams, mpsc::channel(1).1);
        let keep = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Some(s) = streams.recv().await {
                kept.push(s);
            }
            kept
        });
        for _ in 0..MAX_STREAMS {
            let id = c.open(&st("data")).await;
            assert!(matches!(c.next_nwu().await, Some(Frame::SynReply { id: r, .. }) if r == id));
        }
        let refused = c.open(&st("data")).await;
        match c.next_nwu().await {
            Some(Frame::RstStream { id, status }) => {
                assert_eq!((id, status), (refused, RST_REFUSED_STREAM));
            }
            other => panic!("{other:?}"),
        }
        // The client resets its first stream: room for one more.
        c.send(Frame::RstStream { id: 1, status: 5 }).await;
        let id = c.open(&st("data")).await;
        assert!(matches!(c.next_nwu().await, Some(Frame::SynReply { id: r, .. }) if r == id));
        started.abort();
        keep.abort();
    }

    /// spdystream never sends WINDOW_UPDATE: output must not stall at 64 KiB.
    #[tokio::test]
    async fn output_to_a_client_without_flow_control() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut c = Client::new(a);
        let (mut s, stdout) = exec_with_output(&mut c, b).await;
        let total = 300 * 1024;
        let out = s.stdout.take().unwrap();
        let writer = tokio::spawn(async move {
            out.send(Bytes::from(vec![b'y'; total])).await.unwrap();
            s.error.send(crate::streaming::status_json(0)).unwrap();
        });
        let (got, _) = c.drain().await;
        assert_eq!(got[&stdout].0.len(), total);
        writer.await.unwrap();
    }

    /// berth grants windows back as the session consumes stdin; a client keeping windows
    /// can send far more than 64 KiB.
    #[tokio::test]
    async fn stdin_window_updates() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut c = Client::new(a);
        let (mut s, _) = exec_with_output(&mut c, b).await;
        let stdin = 3;
        let mut rx = s.stdin.take().unwrap();
        let total = 1024 * 1024;
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while let Some(b) = rx.recv().await {
                n += b.len();
            }
            n
        });
        let (mut stream_win, mut session_win) = (DEFAULT_WINDOW as usize, DEFAULT_WINDOW as usize);
        let mut sent = 0;
        while sent < total {
            let n = 8192.min(stream_win).min(session_win).min(total - sent);
            if n == 0 {
                match c.next().await {
                    Some(Frame::WindowUpdate { id: 0, delta }) => session_win += delta as usize,
                    Some(Frame::WindowUpdate { id, delta }) if id == stdin => {
                        stream_win += delta as usize
                    }
                    Some(_) => {}
                    None => panic!("EOF"),
                }
                continue;
            }
            c.data(stdin, &vec![b'z'; n], false).await;
            sent += n;
            stream_win -= n;
            session_win -= n;
        }
        c.data(stdin, b"", true).await;
        assert_eq!(
            tokio::time::timeout(T, reader).await.unwrap().unwrap(),
            total
        );
    }
}
