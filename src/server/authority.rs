//! `:authority` on a unix socket, for every gRPC client.
//!
//! Go gRPC (kubelet, crictl) sends `:authority: localhost` on a unix socket; gRPC C-core (Python
//! grpcio ≥ 1.57, C++, Ruby) sends the socket path percent-encoded (`tmp%2Fberth.sock`),
//! grpc-java the raw path, and an empty authority is legal HTTP/2. The HTTP/2 layer under tonic
//! (hyperium/h2) parses `:authority` with the `http` crate's URI rules and resets such streams
//! with PROTOCOL_ERROR before any service or middleware sees the request (see h2
//! `server.rs::convert_poll_message`; h2 PR #487 and the grpc and grpc-java trackers). Go's
//! HTTP/2 server, and so containerd, serves them all.
//!
//! The fix lives here, between the accepted socket and h2, and only on the client-to-server
//! direction: [`Inbound`] reads the HTTP/2 frame stream, decodes every request header block with
//! the client's HPACK state (`loona-hpack`: Huffman and the dynamic table), replaces an
//! `:authority` that `http` would refuse with `localhost` (what Go clients send), and hands h2 the
//! same headers re-encoded as literals without indexing. h2's own HPACK table therefore stays
//! empty and can never disagree with the client's. Every other frame passes unchanged, and so does
//! a stream that does not start with the HTTP/2 preface. A block this code cannot decode is passed
//! as it came and the stream is left alone from then on: h2 reports the error itself.
//!
//! Covered by the unit tests below (grpcio's captured bytes, Huffman, the dynamic table, split
//! frames) and by the e2e suite (a current grpcio client, raw HTTP/2 with each authority form).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer must accept (SETTINGS_MAX_FRAME_SIZE's initial value).
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is passed through as is (h2 refuses it anyway).
const MAX_BLOCK: usize = 1 << 20;
/// A frame larger than this is not held whole: the stream is passed through from there on.
const MAX_HELD_FRAME: usize = 16 << 20;
/// The dynamic table size h2 advertises (SETTINGS_HEADER_TABLE_SIZE, its default): the largest
/// table the client may ask for.
const HEADER_TABLE_SIZE: usize = 4096;
/// What replaces an authority h2 would refuse.
const REPLACEMENT: &[u8] = b"localhost";

/// The client-to-server byte stream, rewritten as described in the module doc.
pub struct Inbound {
    /// Bytes read but not yet processed (a partial frame).
    pending: Vec<u8>,
    state: State,
    decoder: loona_hpack::Decoder<'static>,
    /// The header block being collected: its HEADERS frame and CONTINUATIONs as received.
    block: Option<Block>,
    /// Authorities replaced so far.
    pub replaced: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preface,
    Frames,
    /// Not HTTP/2 with prior knowledge, or given up: everything passes unchanged.
    Passthrough,
}

struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as they came, for when the block cannot be decoded.
    original: Vec<u8>,
}

impl Default for Inbound {
    fn default() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Inbound {
            pending: Vec::new(),
            state: State::Preface,
            decoder,
            block: None,
            replaced: 0,
        }
    }
}

impl Inbound {
    /// Take bytes read from the client; append to `out` what h2 may read now.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.state == State::Passthrough {
            out.extend_from_slice(input);
            return;
        }
        self.pending.extend_from_slice(input);
        let mut at = 0;
        loop {
            match self.state {
                State::Passthrough => {
                    out.extend_from_slice(&self.pending[at..]);
                    at = self.pending.len();
                    break;
                }
                State::Preface => {
                    let have = &self.pending[at..];
                    let n = have.len().min(PREFACE.len());
                    if have[..n] != PREFACE[..n] {
                        self.state = State::Passthrough;
                        continue;
                    }
                    if n < PREFACE.len() {
                        break;
                    }
                    out.extend_from_slice(PREFACE);
                    at += PREFACE.len();
                    self.state = State::Frames;
                }
                State::Frames => {
                    let have = &self.pending[at..];
                    if have.len() < 9 {
                        break;
                    }
                    let len = usize::from(have[0]) << 16
                        | usize::from(have[1]) << 8
                        | usize::from(have[2]);
                    if len > MAX_HELD_FRAME {
                        self.give_up(out);
                        continue;
                    }
                    if have.len() < 9 + len {
                        break;
                    }
                    let frame = have[..9 + len].to_vec();
                    at += 9 + len;
                    self.frame(&frame, out);
                }
            }
        }
        self.pending.drain(..at);
    }

    /// The client closed: hand over whatever was held (h2 reports a truncated stream).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.give_up(out);
        out.append(&mut self.pending);
    }

    /// Stop rewriting: release a held block as it came; pass everything from now on.
    fn give_up(&mut self, out: &mut Vec<u8>) {
        if let Some(b) = self.block.take() {
            out.extend_from_slice(&b.original);
        }
        self.state = State::Passthrough;
    }

    fn frame(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let (typ, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[9..];
        match (typ, self.block.as_mut()) {
            (FRAME_HEADERS, None) => {
                let Some((priority, fragment)) = headers_fragment(flags, payload) else {
                    out.extend_from_slice(frame);
                    return self.give_up(out);
                };
                self.block = Some(Block {
                    stream,
                    end_stream: flags & FLAG_END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                    original: frame.to_vec(),
                });
            }
            (FRAME_CONTINUATION, Some(b)) if b.stream == stream => {
                b.fragment.extend_from_slice(payload);
                b.original.extend_from_slice(frame);
                if b.fragment.len() > MAX_BLOCK {
                    return self.give_up(out);
                }
            }
            (_, None) => {
                out.extend_from_slice(frame);
                return;
            }
            (_, Some(_)) => {
                // Anything but the block's CONTINUATION in the middle of a block is a
                // connection error for h2: let it see exactly what came.
                self.give_up(out);
                out.extend_from_slice(frame);
                return;
            }
        }
        if flags & FLAG_END_HEADERS != 0
            && let Some(b) = self.block.take()
        {
            match self.rewrite(&b) {
                Some(frames) => out.extend_from_slice(&frames),
                None => {
                    self.block = Some(b);
                    self.give_up(out);
                }
            }
        }
    }

    /// The block decoded with the client's HPACK state and re-encoded for h2 (literals
    /// without indexing), an unacceptable `:authority` replaced. None if it does not decode.
    fn rewrite(&mut self, b: &Block) -> Option<Vec<u8>> {
        let mut fields = self.decoder.decode(&b.fragment).ok()?;
        for (name, value) in &mut fields {
            if name.as_slice() == b":authority"
                && http::uri::Authority::try_from(value.as_slice()).is_err()
            {
                *value = REPLACEMENT.to_vec();
                self.replaced += 1;
            }
        }
        let mut block = Vec::new();
        for (name, value) in &fields {
            // Literal header field without indexing, new name (RFC 7541 6.2.2), raw strings.
            block.push(0x00);
            encode_string(name, &mut block);
            encode_string(value, &mut block);
        }
        Some(headers_frames(b, &block))
    }
}

/// The priority fields and the header block fragment of a HEADERS payload.
fn headers_fragment(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut p = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        pad = usize::from(*p.first()?);
        p = &p[1..];
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        priority = Some(p.get(..5)?.try_into().ok()?);
        p = &p[5..];
    }
    let end = p.len().checked_sub(pad)?;
    Some((priority, &p[..end]))
}

/// A HEADERS frame (and CONTINUATIONs) carrying `block`, each within the minimum frame size.
fn headers_frames(b: &Block, block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 32);
    let mut first = Vec::new();
    let mut flags = 0u8;
    if b.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if let Some(p) = b.priority {
        flags |= FLAG_PRIORITY;
        first.extend_from_slice(&p);
    }
    let room = MAX_FRAME - first.len();
    let (head, mut rest) = block.split_at(block.len().min(room));
    first.extend_from_slice(head);
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    push_frame(&mut out, FRAME_HEADERS, flags, b.stream, &first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = tail;
        let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        push_frame(&mut out, FRAME_CONTINUATION, flags, b.stream, chunk);
    }
    out
}

fn push_frame(out: &mut Vec<u8>, typ: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, typ, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK string literal, not Huffman-coded (RFC 7541 5.2).
fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    encode_int(s.len(), 7, 0x00, out);
    out.extend_from_slice(s);
}

/// An HPACK integer with an N-bit prefix (RFC 7541 5.1).
fn encode_int(mut v: usize, prefix: u8, first_bits: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first_bits | v as u8);
        return;
    }
    out.push(first_bits | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// An accepted connection whose inbound bytes go through [`Inbound`]; writes pass unchanged.
pub struct AuthorityFix<S> {
    inner: S,
    inbound: Inbound,
    /// Processed bytes not yet read by h2, from `ready_at`.
    ready: Vec<u8>,
    ready_at: usize,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            inbound: Inbound::default(),
            ready: Vec::new(),
            ready_at: 0,
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_at);
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; 16 << 10];
            let mut rb = ReadBuf::new(&mut raw);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
                this.inbound.finish(&mut this.ready);
            } else {
                this.inbound.feed(rb.filled(), &mut this.ready);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(typ: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        push_frame(&mut f, typ, flags, stream, payload);
        f
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The HEADERS payload grpcio 1.85.3 (gRPC C-core) sent for Version on unix:/tmp/cap.sock.
    const GRPCIO: &str = "40053a70617468222f72756e74696d652e76312e52756e74696d65536572766963652f56657273696f6e400a3a617574686f726974790e746d702532466361702e736f636b8386400c636f6e74656e742d74797065106170706c69636174696f6e2f677270634002746508747261696c6572734014677270632d6163636570742d656e636f64696e67176964656e746974792c206465666c6174652c20677a6970400c677270632d74696d656f7574043939376d400a757365722d6167656e7430677270632d707974686f6e2f312e38352e3320677270632d632f35382e302e3020286c696e75783b2063687474703229";

    fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut v = PREFACE.to_vec();
        v.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        for f in frames {
            v.extend_from_slice(f);
        }
        v
    }

    /// Feed in chunks of `chunk` bytes; what h2 would read.
    fn through(input: &[u8], chunk: usize) -> (Vec<u8>, usize) {
        let mut i = Inbound::default();
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            i.feed(c, &mut out);
        }
        i.finish(&mut out);
        (out, i.replaced)
    }

    /// The header lists of every HEADERS block in an HTTP/2 client stream, decoded as h2 would
    /// (one fresh HPACK state for the connection).
    fn header_lists(stream: &[u8]) -> Vec<Vec<(String, String)>> {
        assert!(stream.starts_with(PREFACE));
        let mut d = loona_hpack::Decoder::new();
        let mut at = PREFACE.len();
        let mut lists = Vec::new();
        let mut block = Vec::new();
        while at < stream.len() {
            let len = usize::from(stream[at]) << 16
                | usize::from(stream[at + 1]) << 8
                | usize::from(stream[at + 2]);
            let (typ, flags) = (stream[at + 3], stream[at + 4]);
            let payload = &stream[at + 9..at + 9 + len];
            if typ == FRAME_HEADERS {
                block = headers_fragment(flags, payload).unwrap().1.to_vec();
            } else if typ == FRAME_CONTINUATION {
                block.extend_from_slice(payload);
            }
            if (typ == FRAME_HEADERS || typ == FRAME_CONTINUATION) && flags & FLAG_END_HEADERS != 0
            {
                let l = d.decode(&block).unwrap();
                lists.push(
                    l.into_iter()
                        .map(|(n, v)| {
                            (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
                        })
                        .collect(),
                );
            }
            at += 9 + len;
        }
        lists
    }

    fn authority(list: &[(String, String)]) -> Option<&str> {
        list.iter()
            .find(|(n, _)| n == ":authority")
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn grpc_core_percent_encoded_path_becomes_localhost() {
        let payload = unhex(GRPCIO);
        let data = frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]);
        let input = connection(&[
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &payload),
            data.clone(),
        ]);
        for chunk in [1, 2, 7, 9, 25, 4096] {
            let (out, replaced) = through(&input, chunk);
            assert_eq!(replaced, 1);
            let lists = header_lists(&out);
            assert_eq!(lists.len(), 1);
            assert_eq!(authority(&lists[0]), Some("localhost"));
            assert_eq!(
                lists[0][0],
                (":path".into(), "/runtime.v1.RuntimeService/Version".into())
            );
            assert!(lists[0].contains(&("te".into(), "trailers".into())));
            assert!(out.ends_with(&data), "the DATA frame passes unchanged");
        }
    }

    /// Blocks encoded with the dynamic table, as a real encoder does: the second request refers
    /// to the first one's entries by index.
    #[test]
    fn dynamic_table_and_huffman_stay_consistent() {
        let mut enc = loona_hpack::Encoder::new();
        let mut frames = Vec::new();
        for (stream, auth) in [
            (1u32, "/run/berth/berth.sock"),
            (3, "/run/berth/berth.sock"),
            (5, ""),
        ] {
            let headers: Vec<(&[u8], &[u8])> = vec![
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", b"/runtime.v1.RuntimeService/Version"),
                (b":authority", auth.as_bytes()),
                (b"content-type", b"application/grpc"),
            ];
            let block = enc.encode(headers);
            frames.push(frame(
                FRAME_HEADERS,
                FLAG_END_HEADERS | FLAG_END_STREAM,
                stream,
                &block,
            ));
        }
        let (out, replaced) = through(&connection(&frames), 3);
        assert_eq!(replaced, 3);
        let lists = header_lists(&out);
        assert_eq!(lists.len(), 3);
        for l in &lists {
            assert_eq!(authority(l), Some("localhost"));
            assert_eq!(l[2].1, "/runtime.v1.RuntimeService/Version");
        }
    }

    /// A Huffman-coded `a%2F` (RFC 7541 Appendix B) under the static `:authority` name, added to
    /// the dynamic table; the next request refers to it by index only.
    #[test]
    fn huffman_value_and_indexed_reference() {
        let first = [0x83, 0x41, 0x83, 0x1a, 0xa2, 0xc3];
        let second = [0x83, 0xbe];
        let mut d = loona_hpack::Decoder::new();
        assert_eq!(d.decode(&first).unwrap()[1].1, b"a%2F");
        let input = connection(&[
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &first),
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &second),
        ]);
        let (out, replaced) = through(&input, 2);
        assert_eq!(replaced, 2);
        let lists = header_lists(&out);
        assert_eq!(authority(&lists[0]), Some("localhost"));
        assert_eq!(authority(&lists[1]), Some("localhost"));
        assert_eq!(lists[1][0], (":method".into(), "POST".into()));
    }

    #[test]
    fn valid_authorities_are_kept_and_other_frames_pass() {
        let mut enc = loona_hpack::Encoder::new();
        let block = enc.encode(vec![
            (&b":method"[..], &b"POST"[..]),
            (b":path", b"/x"),
            (b":authority", b"localhost:1234"),
        ]);
        let ping = frame(0x6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let input = connection(&[
            ping.clone(),
            frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &block),
        ]);
        let (out, replaced) = through(&input, 5);
        assert_eq!(replaced, 0);
        assert_eq!(authority(&header_lists(&out)[0]), Some("localhost:1234"));
        let settings_end = PREFACE.len() + 9;
        assert_eq!(&out[settings_end..settings_end + ping.len()], &ping[..]);
    }

    #[test]
    fn split_padded_prioritized_blocks() {
        let mut enc = loona_hpack::Encoder::new();
        let long = "v".repeat(40_000);
        let block = enc.encode(vec![
            (&b":method"[..], &b"POST"[..]),
            (b":path", b"/x"),
            (b":authority", b"tmp%2Fcap.sock"),
            (b"x-long", long.as_bytes()),
        ]);
        // HEADERS padded and with priority, then two CONTINUATIONs.
        let (a, rest) = block.split_at(10);
        let (b, c) = rest.split_at(rest.len() / 2);
        let mut first = vec![3u8];
        first.extend_from_slice(&[0, 0, 0, 0, 16]);
        first.extend_from_slice(a);
        first.extend_from_slice(&[0, 0, 0]);
        let input = connection(&[
            frame(FRAME_HEADERS, FLAG_PADDED | FLAG_PRIORITY, 7, &first),
            frame(FRAME_CONTINUATION, 0, 7, b),
            frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 7, c),
        ]);
        let (out, replaced) = through(&input, 1000);
        assert_eq!(replaced, 1);
        let lists = header_lists(&out);
        assert_eq!(authority(&lists[0]), Some("localhost"));
        assert_eq!(lists[0][3].1.len(), 40_000);
        // Every frame within the minimum frame size.
        let mut at = PREFACE.len();
        while at < out.len() {
            let len = usize::from(out[at]) << 16
                | usize::from(out[at + 1]) << 8
                | usize::from(out[at + 2]);
            assert!(len <= MAX_FRAME);
            at += 9 + len;
        }
    }

    #[test]
    fn not_http2_or_undecodable_passes_unchanged() {
        let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(through(&http1, 3).0, http1);
        let bad = connection(&[frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS,
            1,
            &[0xff, 0xff, 0xff],
        )]);
        assert_eq!(through(&bad, 4).0, bad);
        let short = PREFACE[..10].to_vec();
        assert_eq!(through(&short, 3).0, short);
    }

    #[test]
    fn hpack_integers() {
        let mut v = Vec::new();
        encode_int(10, 5, 0, &mut v);
        assert_eq!(v, [10]);
        v.clear();
        encode_int(1337, 5, 0, &mut v);
        assert_eq!(v, [31, 154, 10]);
        v.clear();
        encode_int(127, 7, 0, &mut v);
        assert_eq!(v, [127, 0]);
    }
}
