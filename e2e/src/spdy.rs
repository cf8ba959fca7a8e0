//! A SPDY/3.1 client for the streaming server, written apart from berth's server (it shares
//! no code with it): the HTTP/1.1 upgrade, framing with zlib-compressed header blocks, streams
//! with SPDY/3.1 flow control, and kubectl-like exec/attach and port-forward on top.
//!
//! Like kubectl (spdystream), the client sends no WINDOW_UPDATE unless asked to
//! ([`Options::flow_control`]: then it announces its window with SETTINGS and grants it back as
//! the test reads). It always keeps the server's windows when sending.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};

/// The SPDY/3 header dictionary (zlib DICTID 0xe3c6a7c2).
const DICT: &[u8] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put\x00\
    \x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eaccept-char\
    set\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\x00\x0daccept-\
    ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dauthorization\x00\x00\x00\
    \x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10c\
    ontent-encoding\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\
    \x00\x10content-location\x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\x00\x00\
    \x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\
    \x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\
    \x00\x00\x11if-modified-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\
    \x00\x00\x13if-unmodified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\
    \x00\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\
    \x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0br\
    etry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\x00\
    \x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\x00\x04va\
    ry\x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\
    \x06method\x00\x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\x06200 OK\x00\x00\x00\
    \x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\
    \x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin10010120120220520630030230\
    3304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative In\
    formation204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden\
    404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb \
    Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
    chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,te\
    xt/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-\
    8859-1,utf-,*,enq=0.";

/// The exec/attach protocols kubectl offers, newest first.
pub const COMMAND_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

const CONTROL: u32 = 0x8000_0000;
const FIN: u8 = 1;
const WINDOW: i64 = 65536;
const CHUNK: usize = 16 * 1024;

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Framing

/// A frame as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    Syn {
        id: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    Reply {
        id: u32,
        headers: Vec<(String, String)>,
    },
    Headers {
        id: u32,
        fin: bool,
        headers: Vec<(String, String)>,
    },
    Rst {
        id: u32,
        status: u32,
    },
    /// (id, value) settings.
    Settings(Vec<(u32, u32)>),
    Ping(u32),
    GoAway {
        last: u32,
        status: u32,
    },
    Window {
        id: u32,
        delta: u32,
    },
    Data {
        id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    Other(u16),
}

/// Encodes frames; one compression context for the whole connection.
pub struct Codec {
    z: Compress,
}

impl Codec {
    pub fn new() -> io::Result<Codec> {
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(DICT).map_err(|e| err(e.to_string()))?;
        Ok(Codec { z })
    }

    fn block(&mut self, headers: &[(String, String)]) -> io::Result<Vec<u8>> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            for s in [k.to_ascii_lowercase().as_bytes(), v.as_bytes()] {
                raw.extend((s.len() as u32).to_be_bytes());
                raw.extend(s);
            }
        }
        let mut out = Vec::with_capacity(raw.len() * 2 + 128);
        let mut off = 0;
        loop {
            let before = self.z.total_in();
            self.z
                .compress_vec(&raw[off..], &mut out, FlushCompress::Sync)
                .map_err(|e| err(e.to_string()))?;
            off += (self.z.total_in() - before) as usize;
            if off == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(1024);
        }
    }

    pub fn encode(&mut self, f: &Wire) -> io::Result<Vec<u8>> {
        let ctl = |kind: u16, flags: u8, body: Vec<u8>| {
            let mut v = (CONTROL | (3 << 16) | u32::from(kind))
                .to_be_bytes()
                .to_vec();
            v.push(flags);
            v.extend(&(body.len() as u32).to_be_bytes()[1..]);
            v.extend(body);
            v
        };
        let be = |n: u32| n.to_be_bytes();
        Ok(match f {
            Wire::Data { id, fin, data } => {
                let mut v = be(*id).to_vec();
                v.push(if *fin { FIN } else { 0 });
                v.extend(&(data.len() as u32).to_be_bytes()[1..]);
                v.extend(data);
                v
            }
            Wire::Syn { id, fin, headers } => {
                let mut b = be(*id).to_vec();
                b.extend([0, 0, 0, 0, 0, 0]);
                b.extend(self.block(headers)?);
                ctl(1, if *fin { FIN } else { 0 }, b)
            }
            Wire::Reply { id, headers } => {
                let mut b = be(*id).to_vec();
                b.extend(self.block(headers)?);
                ctl(2, 0, b)
            }
            Wire::Headers { id, fin, headers } => {
                let mut b = be(*id).to_vec();
                b.extend(self.block(headers)?);
                ctl(8, if *fin { FIN } else { 0 }, b)
            }
            Wire::Rst { id, status } => ctl(3, 0, [be(*id), be(*status)].concat()),
            Wire::Settings(s) => {
                let mut b = be(s.len() as u32).to_vec();
                for (id, value) in s {
                    b.extend(be(*id & 0xff_ffff));
                    b.extend(be(*value));
                }
                ctl(4, 0, b)
            }
            Wire::Ping(id) => ctl(6, 0, be(*id).to_vec()),
            Wire::GoAway { last, status } => ctl(7, 0, [be(*last), be(*status)].concat()),
            Wire::Window { id, delta } => ctl(9, 0, [be(*id), be(*delta)].concat()),
            Wire::Other(kind) => ctl(*kind, 0, Vec::new()),
        })
    }
}

/// Decodes frames; one decompression context for the whole connection.
pub struct Decoder {
    z: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            z: Decompress::new(true),
        }
    }
}

fn word(b: &[u8], at: usize) -> io::Result<u32> {
    let s = b.get(at..at + 4).ok_or_else(|| err("short SPDY frame"))?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

impl Decoder {
    fn block(&mut self, mut input: &[u8]) -> io::Result<Vec<(String, String)>> {
        let mut raw = Vec::with_capacity(4096);
        while !input.is_empty() || raw.len() == raw.capacity() {
            if raw.len() == raw.capacity() {
                if raw.len() > (1 << 20) {
                    return Err(err("header block too large"));
                }
                raw.reserve(4096);
            }
            let (before, had) = (self.z.total_in(), raw.len());
            let res = self
                .z
                .decompress_vec(input, &mut raw, FlushDecompress::Sync);
            let used = (self.z.total_in() - before) as usize;
            input = &input[used..];
            let stuck = used == 0 && raw.len() == had && raw.len() < raw.capacity();
            match res {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(DICT)
                        .map_err(|e| err(e.to_string()))?;
                }
                Err(e) => return Err(err(e.to_string())),
            }
            if stuck && !input.is_empty() {
                return Err(err("header block does not inflate"));
            }
        }
        let count = word(&raw, 0)?;
        let mut at = 4;
        let mut next = |raw: &[u8]| -> io::Result<String> {
            let n = word(raw, at)? as usize;
            let s = raw
                .get(at + 4..at + 4 + n)
                .ok_or_else(|| err("short header block"))?;
            at += 4 + n;
            Ok(String::from_utf8_lossy(s).into_owned())
        };
        let mut out = Vec::new();
        for _ in 0..count {
            let k = next(&raw)?;
            let v = next(&raw)?;
            out.push((k, v));
        }
        Ok(out)
    }

    /// Reads one frame; None at EOF.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<Option<Wire>> {
        let mut h = [0u8; 8];
        match r.read_exact(&mut h).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let first = word(&h, 0)?;
        let flags = h[4];
        let len = (word(&h, 4)? & 0xff_ffff) as usize;
        let mut b = vec![0; len];
        r.read_exact(&mut b).await?;
        let fin = flags & FIN != 0;
        if first & CONTROL == 0 {
            return Ok(Some(Wire::Data {
                id: first,
                fin,
                data: b,
            }));
        }
        if (first >> 16) & 0x7fff != 3 {
            return Err(err("not SPDY/3"));
        }
        let id = word(&b, 0).map(|w| w & 0x7fff_ffff);
        Ok(Some(match first & 0xffff {
            1 => Wire::Syn {
                id: id?,
                fin,
                headers: self.block(b.get(10..).unwrap_or_default())?,
            },
            2 => Wire::Reply {
                id: id?,
                headers: self.block(b.get(4..).unwrap_or_default())?,
            },
            8 => Wire::Headers {
                id: id?,
                fin,
                headers: self.block(b.get(4..).unwrap_or_default())?,
            },
            3 => Wire::Rst {
                id: id?,
                status: word(&b, 4)?,
            },
            4 => {
                let n = word(&b, 0)? as usize;
                let mut s = Vec::new();
                for i in 0..n {
                    s.push((word(&b, 4 + 8 * i)? & 0xff_ffff, word(&b, 8 + 8 * i)?));
                }
                Wire::Settings(s)
            }
            6 => Wire::Ping(word(&b, 0)?),
            7 => Wire::GoAway {
                last: id?,
                status: word(&b, 4).unwrap_or(0),
            },
            9 => Wire::Window {
                id: id?,
                delta: word(&b, 4)? & 0x7fff_ffff,
            },
            other => Wire::Other(other as u16),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP upgrade

/// Splits `http://host:port/path?query` into (host:port, /path?query).
pub fn split_url(url: &str) -> io::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| err(format!("not an http:// URL: {url}")))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((host.to_string(), path.to_string()))
}

/// Connects to `url` and upgrades to SPDY/3.1 offering `protocols`; returns the stream and the
/// protocol the server chose.
pub async fn upgrade(url: &str, protocols: &[&str]) -> io::Result<(TcpStream, String)> {
    let (host, path) = split_url(url)?;
    let mut tcp = TcpStream::connect(&host).await?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: berth-e2e\r\n\
         Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
    );
    for p in protocols {
        req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await?;
    // Byte by byte, so that nothing after the response head is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 {
            return Err(err("HTTP response head too long"));
        }
        let mut b = [0u8; 1];
        if tcp.read(&mut b).await? == 0 {
            return Err(err(format!(
                "connection closed during upgrade: {}",
                String::from_utf8_lossy(&head)
            )));
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("101") {
        // Read a little of the body for the error message.
        let mut body = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut body))
            .await
            .unwrap_or(Ok(0))
            .unwrap_or(0);
        return Err(err(format!(
            "upgrade refused: {status}: {}",
            String::from_utf8_lossy(&body[..n]).trim()
        )));
    }
    let mut chosen = String::new();
    let mut upgrade_ok = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "x-stream-protocol-version" {
                chosen = v.to_string();
            } else if k == "upgrade" {
                upgrade_ok = v.eq_ignore_ascii_case("SPDY/3.1");
            }
        }
    }
    if !upgrade_ok {
        return Err(err(format!("101 without Upgrade: SPDY/3.1:\n{head}")));
    }
    Ok((tcp, chosen))
}

// ---------------------------------------------------------------------------------------------
// Connection and streams

/// Client options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Announce and keep a receive window (SETTINGS + WINDOW_UPDATE as data is read), as
    /// spdystream (kubectl, crictl) does not.
    pub flow_control: bool,
}

enum Cmd {
    Frame(Wire),
    Shutdown,
}

struct StreamState {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    reply: Option<oneshot::Sender<()>>,
    window: i64,
    reset: bool,
}

struct State {
    next_id: u32,
    streams: HashMap<u32, StreamState>,
    session: i64,
    initial: i64,
    closed: bool,
    goaway: bool,
    next_ping: u32,
    pings: HashMap<u32, oneshot::Sender<()>>,
}

struct Inner {
    cmds: mpsc::UnboundedSender<Cmd>,
    state: Mutex<State>,
    changed: Notify,
    opts: Options,
    open_lock: tokio::sync::Mutex<()>,
}

/// A SPDY/3.1 client connection.
#[derive(Clone)]
pub struct SpdyConn {
    inner: Arc<Inner>,
}

/// One client-opened stream.
pub struct SpdyStream {
    pub id: u32,
    conn: SpdyConn,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, f: Wire) -> io::Result<()> {
        self.cmds
            .send(Cmd::Frame(f))
            .map_err(|_| err("SPDY connection closed"))
    }
}

impl SpdyConn {
    /// Runs the client on an upgraded connection.
    pub fn new<T>(io: T, opts: Options) -> io::Result<SpdyConn>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let mut codec = Codec::new()?;
        let (mut rd, mut wr) = tokio::io::split(io);
        let (cmds, mut cmd_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            cmds,
            state: Mutex::new(State {
                next_id: 1,
                streams: HashMap::new(),
                session: WINDOW,
                initial: WINDOW,
                closed: false,
                goaway: false,
                next_ping: 1,
                pings: HashMap::new(),
            }),
            changed: Notify::new(),
            opts,
            open_lock: tokio::sync::Mutex::new(()),
        });
        if opts.flow_control {
            inner.send(Wire::Settings(vec![(7, WINDOW as u32)]))?;
        }
        let w_inner = inner.clone();
        tokio::spawn(async move {
            while let Some(cmd) = cmd_rx.recv().await {
                let res = match cmd {
                    Cmd::Frame(f) => match codec.encode(&f) {
                        Ok(b) => wr.write_all(&b).await,
                        Err(e) => Err(e),
                    },
                    Cmd::Shutdown => {
                        let _ = wr.shutdown().await;
                        break;
                    }
                };
                if res.is_err() {
                    break;
                }
            }
            w_inner.state().closed = true;
            w_inner.changed.notify_waiters();
        });
        let r_inner = inner.clone();
        tokio::spawn(async move {
            let mut dec = Decoder::default();
            while let Ok(Some(f)) = dec.read(&mut rd).await {
                let mut st = r_inner.state();
                match f {
                    Wire::Data { id, fin, data } => {
                        if let Some(s) = st.streams.get_mut(&id) {
                            if let Some(tx) = &s.tx
                                && !data.is_empty()
                            {
                                let _ = tx.send(data);
                            }
                            if fin {
                                s.tx = None;
                            }
                        }
                    }
                    Wire::Reply { id, .. } => {
                        if let Some(reply) = st.streams.get_mut(&id).and_then(|s| s.reply.take()) {
                            let _ = reply.send(());
                        }
                    }
                    Wire::Rst { id, .. } => {
                        if let Some(s) = st.streams.get_mut(&id) {
                            s.tx = None;
                            s.reply = None;
                            s.reset = true;
                        }
                    }
                    Wire::Window { id: 0, delta } => st.session += i64::from(delta),
                    Wire::Window { id, delta } => {
                        if let Some(s) = st.streams.get_mut(&id) {
                            s.window += i64::from(delta);
                        }
                    }
                    Wire::Settings(s) => {
                        for (id, value) in s {
                            if id == 7 {
                                let delta = i64::from(value) - st.initial;
                                st.initial = i64::from(value);
                                for s in st.streams.values_mut() {
                                    s.window += delta;
                                }
                            }
                        }
                    }
                    Wire::Ping(id) if id % 2 == 0 => {
                        let _ = r_inner.send(Wire::Ping(id));
                    }
                    Wire::Ping(id) => {
                        if let Some(done) = st.pings.remove(&id) {
                            let _ = done.send(());
                        }
                    }
                    Wire::Syn { id, .. } => {
                        let _ = r_inner.send(Wire::Rst { id, status: 3 });
                    }
                    Wire::GoAway { .. } => st.goaway = true,
                    Wire::Headers { id, fin: true, .. } => {
                        if let Some(s) = st.streams.get_mut(&id) {
                            s.tx = None;
                        }
                    }
                    _ => {}
                }
                drop(st);
                r_inner.changed.notify_waiters();
            }
            let mut st = r_inner.state();
            st.closed = true;
            st.pings.clear();
            for s in st.streams.values_mut() {
                s.tx = None;
                s.reply = None;
            }
            drop(st);
            r_inner.changed.notify_waiters();
        });
        Ok(SpdyConn { inner })
    }

    /// Upgrades `url` to SPDY/3.1 and runs the client on it.
    pub async fn connect(
        url: &str,
        protocols: &[&str],
        opts: Options,
    ) -> io::Result<(SpdyConn, String)> {
        let (tcp, chosen) = upgrade(url, protocols).await?;
        Ok((SpdyConn::new(tcp, opts)?, chosen))
    }

    /// Opens a stream and waits for the server's SYN_REPLY.
    pub async fn open(&self, headers: &[(&str, &str)], fin: bool) -> io::Result<SpdyStream> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let (tx, rx) = mpsc::unbounded_channel();
        let id = {
            let _order = self.inner.open_lock.lock().await;
            let id = {
                let mut st = self.inner.state();
                if st.closed || st.goaway {
                    return Err(err("SPDY connection closed"));
                }
                let id = st.next_id;
                st.next_id += 2;
                let window = st.initial;
                st.streams.insert(
                    id,
                    StreamState {
                        tx: Some(tx),
                        reply: Some(reply_tx),
                        window,
                        reset: false,
                    },
                );
                id
            };
            let headers = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.inner.send(Wire::Syn { id, fin, headers })?;
            id
        };
        tokio::time::timeout(Duration::from_secs(30), reply_rx)
            .await
            .map_err(|_| err(format!("no SYN_REPLY for stream {id}")))?
            .map_err(|_| err(format!("stream {id} refused or connection closed")))?;
        Ok(SpdyStream {
            id,
            conn: self.clone(),
            rx,
        })
    }

    /// A PING round trip.
    pub async fn ping(&self) -> io::Result<Duration> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = self.inner.state();
            let id = st.next_ping;
            st.next_ping = st.next_ping.wrapping_add(2) | 1;
            st.pings.insert(id, tx);
            id
        };
        let start = std::time::Instant::now();
        self.inner.send(Wire::Ping(id))?;
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .map_err(|_| err("no PING reply"))?
            .map_err(|_| err("connection closed before the PING reply"))?;
        Ok(start.elapsed())
    }

    /// GOAWAY and close the write side.
    pub fn close(&self) {
        let last = self.inner.state().next_id.saturating_sub(2);
        let _ = self.inner.send(Wire::GoAway { last, status: 0 });
        let _ = self.inner.cmds.send(Cmd::Shutdown);
    }

    /// Whether the server said GOAWAY.
    pub fn server_went_away(&self) -> bool {
        self.inner.state().goaway
    }
}

impl SpdyStream {
    /// Writes `data` within the server's windows.
    pub async fn write(&self, mut data: &[u8]) -> io::Result<()> {
        let inner = &self.conn.inner;
        while !data.is_empty() {
            let notified = inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let n = {
                let mut st = inner.state();
                let session = st.session;
                let closed = st.closed;
                let s = st
                    .streams
                    .get_mut(&self.id)
                    .ok_or_else(|| err("no such stream"))?;
                if s.reset || closed {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        format!("stream {} closed", self.id),
                    ));
                }
                let n = data
                    .len()
                    .min(CHUNK)
                    .min(s.window.min(session).max(0) as usize);
                s.window -= n as i64;
                st.session -= n as i64;
                n
            };
            if n == 0 {
                tokio::time::timeout(Duration::from_secs(60), notified)
                    .await
                    .map_err(|_| err("server window stayed closed"))?;
                continue;
            }
            inner.send(Wire::Data {
                id: self.id,
                fin: false,
                data: data[..n].to_vec(),
            })?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Half-closes the stream (FIN).
    pub fn close_write(&self) -> io::Result<()> {
        self.conn.inner.send(Wire::Data {
            id: self.id,
            fin: true,
            data: Vec::new(),
        })
    }

    /// Resets the stream (RST_STREAM CANCEL), as kubectl's port-forward does when done.
    pub fn reset(&self) {
        let _ = self.conn.inner.send(Wire::Rst {
            id: self.id,
            status: 5,
        });
    }

    /// The next bytes from the server; None once it sent FIN (or reset, or the connection
    /// ended).
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        let data = self.rx.recv().await?;
        if self.conn.inner.opts.flow_control {
            let delta = data.len() as u32;
            let _ = self.conn.inner.send(Wire::Window { id: self.id, delta });
            let _ = self.conn.inner.send(Wire::Window { id: 0, delta });
        }
        Some(data)
    }

    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(d) = self.read().await {
            all.extend(d);
        }
        all
    }
}

// ---------------------------------------------------------------------------------------------
// exec / attach

/// A running exec/attach session, kubectl-style.
pub struct SpdyExec {
    pub protocol: String,
    /// Bytes for the process's stdin; drop to send EOF.
    pub stdin: Option<mpsc::Sender<Vec<u8>>>,
    /// Terminal sizes (width, height) for the resize stream (tty only).
    pub resize: Option<mpsc::Sender<(u16, u16)>>,
    pub stdout: mpsc::Receiver<Vec<u8>>,
    pub stderr: mpsc::Receiver<Vec<u8>>,
    /// The whole error stream (a metav1.Status JSON with v4; empty when the server sent none).
    pub error: oneshot::Receiver<Vec<u8>>,
    pub conn: SpdyConn,
}

fn copy_out(mut s: SpdyStream) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(d) = s.read().await {
            if tx.send(d).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// Starts an exec/attach session on `url` (from the Exec/Attach RPC), opening the streams
/// kubectl opens: error first, then stdin, stdout, stderr (not with a tty), resize (tty).
pub async fn exec(
    url: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    opts: Options,
) -> io::Result<SpdyExec> {
    let (conn, protocol) = SpdyConn::connect(url, &COMMAND_PROTOCOLS, opts).await?;
    exec_on(conn, protocol, stdin, stdout, stderr, tty).await
}

/// [`exec`] on an already upgraded connection.
pub async fn exec_on(
    conn: SpdyConn,
    protocol: String,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> io::Result<SpdyExec> {
    let st = |t: &'static str| [("streamType", t)];
    let mut error_stream = conn.open(&st("error"), false).await?;
    let stdin_stream = if stdin {
        Some(conn.open(&st("stdin"), false).await?)
    } else {
        None
    };
    let (none_tx, none_rx) = mpsc::channel(1);
    drop(none_tx);
    let stdout_rx = if stdout {
        copy_out(conn.open(&st("stdout"), false).await?)
    } else {
        none_rx
    };
    let stderr_rx = if stderr && !tty {
        copy_out(conn.open(&st("stderr"), false).await?)
    } else {
        let (none_tx, none_rx) = mpsc::channel(1);
        drop(none_tx);
        none_rx
    };
    let resize_stream = if tty && protocol != "v2.channel.k8s.io" && protocol != "channel.k8s.io" {
        Some(conn.open(&st("resize"), false).await?)
    } else {
        None
    };
    let stdin_tx = stdin_stream.map(|s| {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if s.write(&d).await.is_err() {
                    return;
                }
            }
            let _ = s.close_write();
        });
        tx
    });
    let resize_tx = resize_stream.map(|s| {
        let (tx, mut rx) = mpsc::channel::<(u16, u16)>(16);
        tokio::spawn(async move {
            while let Some((w, h)) = rx.recv().await {
                let msg = serde_json::json!({"Width": w, "Height": h}).to_string() + "\n";
                if s.write(msg.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = s.close_write();
        });
        tx
    });
    let (err_tx, err_rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = err_tx.send(error_stream.read_to_end().await);
    });
    Ok(SpdyExec {
        protocol,
        stdin: stdin_tx,
        resize: resize_tx,
        stdout: stdout_rx,
        stderr: stderr_rx,
        error: err_rx,
        conn,
    })
}

/// What a finished exec produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The error stream's bytes (metav1.Status JSON).
    pub status: Vec<u8>,
}

impl ExecOutput {
    /// The exit code the status reports (0 for Success), None if it does not parse.
    pub fn exit_code(&self) -> Option<i32> {
        if self.status.is_empty() {
            return Some(0);
        }
        let v: serde_json::Value = serde_json::from_slice(&self.status).ok()?;
        if v["status"] == "Success" {
            return Some(0);
        }
        v["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }
}

/// Runs an exec/attach to completion: sends `stdin` (then EOF), collects stdout, stderr and the
/// status.
pub async fn run_exec(url: &str, stdin: Option<&[u8]>, tty: bool) -> io::Result<ExecOutput> {
    let session = exec(url, stdin.is_some(), true, true, tty, Options::default()).await?;
    finish(session, stdin).await
}

/// Feeds `stdin`, collects everything until the session ends.
pub async fn finish(mut session: SpdyExec, stdin: Option<&[u8]>) -> io::Result<ExecOutput> {
    if let (Some(tx), Some(data)) = (session.stdin.take(), stdin) {
        let data = data.to_vec();
        tokio::spawn(async move {
            for chunk in data.chunks(CHUNK) {
                if tx.send(chunk.to_vec()).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut stdout_rx = session.stdout;
    let mut stderr_rx = session.stderr;
    let out = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(d) = stdout_rx.recv().await {
            all.extend(d);
        }
        all
    });
    let errs = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(d) = stderr_rx.recv().await {
            all.extend(d);
        }
        all
    });
    let status = session
        .error
        .await
        .map_err(|_| err("error stream reader vanished"))?;
    let stdout = out.await.map_err(|e| err(e.to_string()))?;
    let stderr = errs.await.map_err(|e| err(e.to_string()))?;
    session.conn.close();
    Ok(ExecOutput {
        stdout,
        stderr,
        status,
    })
}

// ---------------------------------------------------------------------------------------------
// port-forward

/// One forwarded connection: the data stream (read/write) and the error stream (read).
pub struct PortConn {
    pub data: SpdyStream,
    pub error: SpdyStream,
}

/// Upgrades a port-forward URL (from the PortForward RPC).
pub async fn port_forward(url: &str) -> io::Result<SpdyConn> {
    let (conn, proto) =
        SpdyConn::connect(url, &[PORT_FORWARD_PROTOCOL], Options::default()).await?;
    if proto != PORT_FORWARD_PROTOCOL {
        return Err(err(format!("server chose {proto:?}")));
    }
    Ok(conn)
}

/// Opens one forwarded connection to `port`, as kubectl does: the error stream (closed for
/// writing at once), then the data stream, both with `port` and `requestID`.
pub async fn open_port(conn: &SpdyConn, port: u16, request_id: u32) -> io::Result<PortConn> {
    let port = port.to_string();
    let rid = request_id.to_string();
    let h = |t: &'static str| {
        [
            ("streamType", t),
            ("port", port.as_str()),
            ("requestID", rid.as_str()),
        ]
    };
    let error = conn.open(&h("error"), true).await?;
    let data = conn.open(&h("data"), false).await?;
    Ok(PortConn { data, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_id() {
        assert_eq!(DICT.len(), 1423);
        let mut z = Compress::new(Compression::default(), true);
        assert_eq!(z.set_dictionary(DICT).unwrap(), 0xe3c6_a7c2);
    }

    #[tokio::test]
    async fn framing_round_trip() {
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let frames = vec![
            Wire::Syn {
                id: 1,
                fin: false,
                headers: h("streamtype", "error"),
            },
            Wire::Syn {
                id: 3,
                fin: true,
                headers: vec![
                    ("streamtype".into(), "data".into()),
                    ("port".into(), "80".into()),
                ],
            },
            Wire::Reply {
                id: 3,
                headers: vec![],
            },
            Wire::Headers {
                id: 3,
                fin: true,
                headers: h("a", "b"),
            },
            Wire::Rst { id: 3, status: 5 },
            Wire::Settings(vec![(7, 1 << 20)]),
            Wire::Ping(2),
            Wire::GoAway { last: 3, status: 0 },
            Wire::Window { id: 1, delta: 99 },
            Wire::Data {
                id: 1,
                fin: true,
                data: vec![1; 70_000],
            },
            Wire::Other(10),
        ];
        let mut c = Codec::new().unwrap();
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(c.encode(f).unwrap());
        }
        let mut d = Decoder::default();
        let mut r = &wire[..];
        for f in &frames {
            assert_eq!(d.read(&mut r).await.unwrap().as_ref(), Some(f));
        }
        assert_eq!(d.read(&mut r).await.unwrap(), None);
    }

    /// SYN_STREAMs compressed by C zlib (Python, level 9), one context: an outside oracle.
    #[tokio::test]
    async fn decodes_foreign_blocks() {
        let hex = "80030001000000280000000100000000000078f9e3c6a7c202a62346703a2b294a4dcc8516\
                   25aca9a08006000000ffff800300010000002e0000000300000000000002a54748d15c04ce05\
                   16061606409ab308129599a024ce6880a119540e2502000000ffff";
        let wire: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut d = Decoder::default();
        let mut r = &wire[..];
        let f1 = d.read(&mut r).await.unwrap().unwrap();
        let f2 = d.read(&mut r).await.unwrap().unwrap();
        assert!(
            matches!(&f1, Wire::Syn { id: 1, headers, .. } if headers == &[("streamtype".to_string(), "error".to_string())])
        );
        let Wire::Syn { id: 3, headers, .. } = f2 else {
            panic!("{f2:?}")
        };
        assert!(headers.contains(&("requestid".to_string(), "0".to_string())));
    }

    /// The client against a scripted server built from this module's codec: exec with stdin,
    /// windows kept both ways.
    #[tokio::test]
    async fn exec_against_scripted_server() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let conn = SpdyConn::new(a, Options { flow_control: true }).unwrap();
        let server = tokio::spawn(async move {
            let mut codec = Codec::new().unwrap();
            let mut dec = Decoder::default();
            let mut types = HashMap::new();
            let mut stdin = Vec::new();
            let mut stdin_done = false;
            while !stdin_done || types.len() < 3 {
                match dec.read(&mut b).await.unwrap().unwrap() {
                    Wire::Syn { id, headers, .. } => {
                        assert_eq!(headers[0].0, "streamtype", "lowercase on the wire");
                        types.insert(headers[0].1.clone(), id);
                        let reply = codec
                            .encode(&Wire::Reply {
                                id,
                                headers: vec![],
                            })
                            .unwrap();
                        b.write_all(&reply).await.unwrap();
                    }
                    Wire::Data { data, fin, .. } => {
                        stdin.extend(&data);
                        stdin_done |= fin;
                        let delta = data.len() as u32;
                        for id in [0, types["stdin"]] {
                            let w = codec.encode(&Wire::Window { id, delta }).unwrap();
                            b.write_all(&w).await.unwrap();
                        }
                    }
                    _ => {}
                }
            }
            let out = |id: u32, fin: bool, data: &[u8]| Wire::Data {
                id,
                fin,
                data: data.to_vec(),
            };
            for f in [
                out(types["stdout"], true, &stdin[..10]),
                out(types["error"], true, br#"{"metadata":{},"status":"Failure","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#),
                Wire::GoAway { last: 5, status: 0 },
            ] {
                b.write_all(&codec.encode(&f).unwrap()).await.unwrap();
            }
            b.shutdown().await.unwrap();
            stdin.len()
        });
        let session = exec_on(conn, "v4.channel.k8s.io".into(), true, true, false, false)
            .await
            .unwrap();
        let input = vec![b'q'; 200_000];
        let got = finish(session, Some(&input)).await.unwrap();
        assert_eq!(server.await.unwrap(), input.len());
        assert_eq!(got.stdout, vec![b'q'; 10]);
        assert_eq!(got.exit_code(), Some(7));
    }
}
