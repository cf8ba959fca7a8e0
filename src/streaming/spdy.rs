//! SPDY/3.1 server sessions for the streaming server (see mod.rs).
//!
//! kubectl, crictl and kubelet speak SPDY/3.1 through moby/spdystream after an HTTP `Upgrade:
//! SPDY/3.1` (answered by the caller, [`super::server`]). The client opens one stream per channel
//! (`streamtype` header: `error`, `stdin`, `stdout`, `stderr`, `resize`; for port-forward `data`
//! and `error` pairs carrying `port` and `requestid`); the server answers each SYN_STREAM with a
//! SYN_REPLY. Header blocks are zlib-compressed with the SPDY/3 dictionary, one compression
//! context per direction for the whole connection.
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

use bytes::{BufMut, Bytes};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{CommandStreams, Expected, PortStreams, TerminalSize};

/// Errors of the SPDY transport.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("SPDY header compression: {0}")]
    Compression(String),
    #[error("timed out after {timeout:?} waiting for the client's streams (missing: {missing})")]
    Timeout { timeout: Duration, missing: String },
    #[error("the client closed the connection before opening its streams")]
    Closed,
}

const VERSION: u32 = 3;
const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// FLAG_FIN of data frames, SYN_STREAM, SYN_REPLY and HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// SETTINGS id of the initial stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// RST_STREAM status codes.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_INVALID_STREAM: u32 = 2;
pub const RST_REFUSED_STREAM: u32 = 3;

/// The initial stream and session window of SPDY/3.1.
pub const DEFAULT_WINDOW: u32 = 65536;
const MAX_WINDOW: i64 = 0x7fff_ffff;
const MAX_FRAME_LEN: usize = (1 << 24) - 1;
/// The largest data frame berth writes.
const MAX_CHUNK: usize = 32 * 1024;
/// Cap on a decompressed header block.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Depth of the bounded channels handed to the session (in messages).
const CHANNEL_DEPTH: usize = 16;
/// How long pumps may take to flush what was queued before the final status.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long berth waits for the client to close after GOAWAY.
const LINGER: Duration = Duration::from_secs(5);

/// The zlib dictionary of SPDY/3 header blocks (its Adler-32, the zlib DICTID, is 0xe3c6a7c2).
pub const DICTIONARY: [u8; 1423] = [
    0x00, 0x00, 0x00, 0x07, 0x6f, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x00, 0x00, 0x00, 0x04, 0x68,
    0x65, 0x61, 0x64, 0x00, 0x00, 0x00, 0x04, 0x70, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x03, 0x70,
    0x75, 0x74, 0x00, 0x00, 0x00, 0x06, 0x64, 0x65, 0x6c, 0x65, 0x74, 0x65, 0x00, 0x00, 0x00, 0x05,
    0x74, 0x72, 0x61, 0x63, 0x65, 0x00, 0x00, 0x00, 0x06, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x00,
    0x00, 0x00, 0x0e, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65,
    0x74, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f,
    0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x6c,
    0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x63, 0x63, 0x65, 0x70,
    0x74, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x73, 0x00, 0x00, 0x00, 0x03, 0x61, 0x67, 0x65, 0x00,
    0x00, 0x00, 0x05, 0x61, 0x6c, 0x6c, 0x6f, 0x77, 0x00, 0x00, 0x00, 0x0d, 0x61, 0x75, 0x74, 0x68,
    0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x61, 0x63,
    0x68, 0x65, 0x2d, 0x63, 0x6f, 0x6e, 0x74, 0x72, 0x6f, 0x6c, 0x00, 0x00, 0x00, 0x0a, 0x63, 0x6f,
    0x6e, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x62, 0x61, 0x73, 0x65, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10,
    0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65,
    0x00, 0x00, 0x00, 0x0e, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x65, 0x6e, 0x67,
    0x74, 0x68, 0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x6f,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0b, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
    0x74, 0x2d, 0x6d, 0x64, 0x35, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74,
    0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
    0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x00, 0x00, 0x00, 0x04, 0x64, 0x61, 0x74, 0x65, 0x00, 0x00,
    0x00, 0x04, 0x65, 0x74, 0x61, 0x67, 0x00, 0x00, 0x00, 0x06, 0x65, 0x78, 0x70, 0x65, 0x63, 0x74,
    0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x70, 0x69, 0x72, 0x65, 0x73, 0x00, 0x00, 0x00, 0x04, 0x66,
    0x72, 0x6f, 0x6d, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x08, 0x69,
    0x66, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00, 0x11, 0x69, 0x66, 0x2d, 0x6d, 0x6f,
    0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65, 0x00, 0x00, 0x00, 0x0d,
    0x69, 0x66, 0x2d, 0x6e, 0x6f, 0x6e, 0x65, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00, 0x00, 0x00,
    0x08, 0x69, 0x66, 0x2d, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00, 0x13, 0x69, 0x66, 0x2d,
    0x75, 0x6e, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65,
    0x00, 0x00, 0x00, 0x0d, 0x6c, 0x61, 0x73, 0x74, 0x2d, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69, 0x65,
    0x64, 0x00, 0x00, 0x00, 0x08, 0x6c, 0x6f, 0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00,
    0x0c, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x6f, 0x72, 0x77, 0x61, 0x72, 0x64, 0x73, 0x00, 0x00, 0x00,
    0x06, 0x70, 0x72, 0x61, 0x67, 0x6d, 0x61, 0x00, 0x00, 0x00, 0x12, 0x70, 0x72, 0x6f, 0x78, 0x79,
    0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00, 0x00,
    0x13, 0x70, 0x72, 0x6f, 0x78, 0x79, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61,
    0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x05, 0x72, 0x61, 0x6e, 0x67, 0x65, 0x00, 0x00, 0x00,
    0x07, 0x72, 0x65, 0x66, 0x65, 0x72, 0x65, 0x72, 0x00, 0x00, 0x00, 0x0b, 0x72, 0x65, 0x74, 0x72,
    0x79, 0x2d, 0x61, 0x66, 0x74, 0x65, 0x72, 0x00, 0x00, 0x00, 0x06, 0x73, 0x65, 0x72, 0x76, 0x65,
    0x72, 0x00, 0x00, 0x00, 0x02, 0x74, 0x65, 0x00, 0x00, 0x00, 0x07, 0x74, 0x72, 0x61, 0x69, 0x6c,
    0x65, 0x72, 0x00, 0x00, 0x00, 0x11, 0x74, 0x72, 0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x2d, 0x65,
    0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x07, 0x75, 0x70, 0x67, 0x72, 0x61,
    0x64, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x75, 0x73, 0x65, 0x72, 0x2d, 0x61, 0x67, 0x65, 0x6e, 0x74,
    0x00, 0x00, 0x00, 0x04, 0x76, 0x61, 0x72, 0x79, 0x00, 0x00, 0x00, 0x03, 0x76, 0x69, 0x61, 0x00,
    0x00, 0x00, 0x07, 0x77, 0x61, 0x72, 0x6e, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10, 0x77, 0x77,
    0x77, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00,
    0x00, 0x06, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64, 0x00, 0x00, 0x00, 0x03, 0x67, 0x65, 0x74, 0x00,
    0x00, 0x00, 0x06, 0x73, 0x74, 0x61, 0x74, 0x75, 0x73, 0x00, 0x00, 0x00, 0x06, 0x32, 0x30, 0x30,
    0x20, 0x4f, 0x4b, 0x00, 0x00, 0x00, 0x07, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x00, 0x00,
    0x00, 0x08, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x00, 0x00, 0x03, 0x75, 0x72,
    0x6c, 0x00, 0x00, 0x00, 0x06, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63, 0x00, 0x00, 0x00, 0x0a, 0x73,
    0x65, 0x74, 0x2d, 0x63, 0x6f, 0x6f, 0x6b, 0x69, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x6b, 0x65, 0x65,
    0x70, 0x2d, 0x61, 0x6c, 0x69, 0x76, 0x65, 0x00, 0x00, 0x00, 0x06, 0x6f, 0x72, 0x69, 0x67, 0x69,
    0x6e, 0x31, 0x30, 0x30, 0x31, 0x30, 0x31, 0x32, 0x30, 0x31, 0x32, 0x30, 0x32, 0x32, 0x30, 0x35,
    0x32, 0x30, 0x36, 0x33, 0x30, 0x30, 0x33, 0x30, 0x32, 0x33, 0x30, 0x33, 0x33, 0x30, 0x34, 0x33,
    0x30, 0x35, 0x33, 0x30, 0x36, 0x33, 0x30, 0x37, 0x34, 0x30, 0x32, 0x34, 0x30, 0x35, 0x34, 0x30,
    0x36, 0x34, 0x30, 0x37, 0x34, 0x30, 0x38, 0x34, 0x30, 0x39, 0x34, 0x31, 0x30, 0x34, 0x31, 0x31,
    0x34, 0x31, 0x32, 0x34, 0x31, 0x33, 0x34, 0x31, 0x34, 0x34, 0x31, 0x35, 0x34, 0x31, 0x36, 0x34,
    0x31, 0x37, 0x35, 0x30, 0x32, 0x35, 0x30, 0x34, 0x35, 0x30, 0x35, 0x32, 0x30, 0x33, 0x20, 0x4e,
    0x6f, 0x6e, 0x2d, 0x41, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x74, 0x61, 0x74, 0x69, 0x76, 0x65,
    0x20, 0x49, 0x6e, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x32, 0x30, 0x34, 0x20,
    0x4e, 0x6f, 0x20, 0x43, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x33, 0x30, 0x31, 0x20, 0x4d, 0x6f,
    0x76, 0x65, 0x64, 0x20, 0x50, 0x65, 0x72, 0x6d, 0x61, 0x6e, 0x65, 0x6e, 0x74, 0x6c, 0x79, 0x34,
    0x30, 0x30, 0x20, 0x42, 0x61, 0x64, 0x20, 0x52, 0x65, 0x71, 0x75, 0x65, 0x73, 0x74, 0x34, 0x30,
    0x31, 0x20, 0x55, 0x6e, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x65, 0x64, 0x34, 0x30,
    0x33, 0x20, 0x46, 0x6f, 0x72, 0x62, 0x69, 0x64, 0x64, 0x65, 0x6e, 0x34, 0x30, 0x34, 0x20, 0x4e,
    0x6f, 0x74, 0x20, 0x46, 0x6f, 0x75, 0x6e, 0x64, 0x35, 0x30, 0x30, 0x20, 0x49, 0x6e, 0x74, 0x65,
    0x72, 0x6e, 0x61, 0x6c, 0x20, 0x53, 0x65, 0x72, 0x76, 0x65, 0x72, 0x20, 0x45, 0x72, 0x72, 0x6f,
    0x72, 0x35, 0x30, 0x31, 0x20, 0x4e, 0x6f, 0x74, 0x20, 0x49, 0x6d, 0x70, 0x6c, 0x65, 0x6d, 0x65,
    0x6e, 0x74, 0x65, 0x64, 0x35, 0x30, 0x33, 0x20, 0x53, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x20,
    0x55, 0x6e, 0x61, 0x76, 0x61, 0x69, 0x6c, 0x61, 0x62, 0x6c, 0x65, 0x4a, 0x61, 0x6e, 0x20, 0x46,
    0x65, 0x62, 0x20, 0x4d, 0x61, 0x72, 0x20, 0x41, 0x70, 0x72, 0x20, 0x4d, 0x61, 0x79, 0x20, 0x4a,
    0x75, 0x6e, 0x20, 0x4a, 0x75, 0x6c, 0x20, 0x41, 0x75, 0x67, 0x20, 0x53, 0x65, 0x70, 0x74, 0x20,
    0x4f, 0x63, 0x74, 0x20, 0x4e, 0x6f, 0x76, 0x20, 0x44, 0x65, 0x63, 0x20, 0x30, 0x30, 0x3a, 0x30,
    0x30, 0x3a, 0x30, 0x30, 0x20, 0x4d, 0x6f, 0x6e, 0x2c, 0x20, 0x54, 0x75, 0x65, 0x2c, 0x20, 0x57,
    0x65, 0x64, 0x2c, 0x20, 0x54, 0x68, 0x75, 0x2c, 0x20, 0x46, 0x72, 0x69, 0x2c, 0x20, 0x53, 0x61,
    0x74, 0x2c, 0x20, 0x53, 0x75, 0x6e, 0x2c, 0x20, 0x47, 0x4d, 0x54, 0x63, 0x68, 0x75, 0x6e, 0x6b,
    0x65, 0x64, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x68, 0x74, 0x6d, 0x6c, 0x2c, 0x69, 0x6d, 0x61,
    0x67, 0x65, 0x2f, 0x70, 0x6e, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x6a, 0x70, 0x67,
    0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x67, 0x69, 0x66, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x6d, 0x6c, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x68, 0x74, 0x6d, 0x6c, 0x2b, 0x78, 0x6d, 0x6c,
    0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c, 0x61, 0x69, 0x6e, 0x2c, 0x74, 0x65, 0x78, 0x74,
    0x2f, 0x6a, 0x61, 0x76, 0x61, 0x73, 0x63, 0x72, 0x69, 0x70, 0x74, 0x2c, 0x70, 0x75, 0x62, 0x6c,
    0x69, 0x63, 0x70, 0x72, 0x69, 0x76, 0x61, 0x74, 0x65, 0x6d, 0x61, 0x78, 0x2d, 0x61, 0x67, 0x65,
    0x3d, 0x67, 0x7a, 0x69, 0x70, 0x2c, 0x64, 0x65, 0x66, 0x6c, 0x61, 0x74, 0x65, 0x2c, 0x73, 0x64,
    0x63, 0x68, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x75, 0x74, 0x66, 0x2d, 0x38, 0x63,
    0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x69, 0x73, 0x6f, 0x2d, 0x38, 0x38, 0x35, 0x39, 0x2d,
    0x31, 0x2c, 0x75, 0x74, 0x66, 0x2d, 0x2c, 0x2a, 0x2c, 0x65, 0x6e, 0x71, 0x3d, 0x30, 0x2e,
];

/// A name/value header block (names lowercase, as on the wire).
pub type HeaderBlock = Vec<(String, String)>;

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: HeaderBlock,
    },
    SynReply {
        id: u32,
        flags: u8,
        headers: HeaderBlock,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    /// (flags, id, value) entries.
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        id: u32,
        flags: u8,
        headers: HeaderBlock,
    },
    WindowUpdate {
        id: u32,
        delta: u32,
    },
    Data {
        id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame berth has no use for (e.g. CREDENTIAL); ignored.
    Unknown {
        kind: u16,
    },
}

/// The value of a header in a block (names compared case-insensitively).
pub fn header<'a>(headers: &'a HeaderBlock, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn put_u24(out: &mut Vec<u8>, n: usize) {
    out.push((n >> 16) as u8);
    out.push((n >> 8) as u8);
    out.push(n as u8);
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Result<Vec<u8>, SpdyError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(SpdyError::Protocol("control frame too large".into()));
    }
    let mut out = Vec::with_capacity(8 + payload.len());
    out.put_u32(0x8000_0000 | (VERSION << 16) | u32::from(kind));
    out.push(flags);
    put_u24(&mut out, payload.len());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Serializes frames; owns the connection's outgoing header compression context.
pub struct Encoder {
    deflate: Compress,
}

impl Encoder {
    pub fn new() -> Result<Self, SpdyError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&DICTIONARY)
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        Ok(Encoder { deflate })
    }

    fn header_block(&mut self, headers: &HeaderBlock) -> Result<Vec<u8>, SpdyError> {
        let mut plain = Vec::new();
        plain.put_u32(headers.len() as u32);
        for (name, value) in headers {
            plain.put_u32(name.len() as u32);
            plain.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            plain.put_u32(value.len() as u32);
            plain.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let start = self.deflate.total_in();
        loop {
            let consumed = (self.deflate.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.deflate
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let consumed = (self.deflate.total_in() - start) as usize;
            // A sync flush is complete once deflate returns with output space left.
            if consumed == plain.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// The frame's bytes on the wire.
    pub fn encode(&mut self, frame: &Frame) -> Result<Vec<u8>, SpdyError> {
        let mut p = Vec::new();
        let (kind, flags) = match frame {
            Frame::Data { id, flags, data } => {
                if data.len() > MAX_FRAME_LEN {
                    return Err(SpdyError::Protocol("data frame too large".into()));
                }
                let mut out = Vec::with_capacity(8 + data.len());
                out.put_u32(id & 0x7fff_ffff);
                out.push(*flags);
                put_u24(&mut out, data.len());
                out.extend_from_slice(data);
                return Ok(out);
            }
            Frame::SynStream {
                id,
                associated,
                priority,
                flags,
                headers,
            } => {
                p.put_u32(id & 0x7fff_ffff);
                p.put_u32(associated & 0x7fff_ffff);
                p.push((priority & 0x07) << 5);
                p.push(0);
                p.extend(self.header_block(headers)?);
                (TYPE_SYN_STREAM, *flags)
            }
            Frame::SynReply { id, flags, headers } => {
                p.put_u32(id & 0x7fff_ffff);
                p.extend(self.header_block(headers)?);
                (TYPE_SYN_REPLY, *flags)
            }
            Frame::Headers { id, flags, headers } => {
                p.put_u32(id & 0x7fff_ffff);
                p.extend(self.header_block(headers)?);
                (TYPE_HEADERS, *flags)
            }
            Frame::RstStream { id, status } => {
                p.put_u32(id & 0x7fff_ffff);
                p.put_u32(*status);
                (TYPE_RST_STREAM, 0)
            }
            Frame::Settings { flags, entries } => {
                p.put_u32(entries.len() as u32);
                for (f, id, value) in entries {
                    p.push(*f);
                    p.extend_from_slice(&id.to_be_bytes()[1..]);
                    p.put_u32(*value);
                }
                (TYPE_SETTINGS, *flags)
            }
            Frame::Ping { id } => {
                p.put_u32(*id);
                (TYPE_PING, 0)
            }
            Frame::GoAway { last_good, status } => {
                p.put_u32(last_good & 0x7fff_ffff);
                p.put_u32(*status);
                (TYPE_GOAWAY, 0)
            }
            Frame::WindowUpdate { id, delta } => {
                p.put_u32(id & 0x7fff_ffff);
                p.put_u32(delta & 0x7fff_ffff);
                (TYPE_WINDOW_UPDATE, 0)
            }
            Frame::Unknown { kind } => (*kind, 0),
        };
        control(kind, flags, &p)
    }
}

fn be32(p: &[u8], at: usize) -> Result<u32, SpdyError> {
    p.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| SpdyError::Protocol("short control frame".into()))
}

fn parse_block(b: &[u8]) -> Result<HeaderBlock, SpdyError> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        let s = b
            .get(at..at + n)
            .ok_or_else(|| SpdyError::Protocol("truncated header block".into()))?;
        at += n;
        Ok(s)
    };
    let count = be32(take(4)?, 0)? as usize;
    let mut headers = Vec::with_capacity(count.min(b.len() / 8));
    for _ in 0..count {
        let n = be32(take(4)?, 0)? as usize;
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = be32(take(4)?, 0)? as usize;
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

/// Reads frames; owns the connection's incoming header decompression context.
pub struct FrameReader<R> {
    io: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        FrameReader {
            io,
            inflate: Decompress::new(true),
        }
    }

    fn header_block(&mut self, input: &[u8]) -> Result<HeaderBlock, SpdyError> {
        let zerr = |e: flate2::DecompressError| SpdyError::Compression(e.to_string());
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start = self.inflate.total_in();
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::Protocol("header block too large".into()));
                }
                out.reserve(out.len().max(256));
            }
            let consumed = (self.inflate.total_in() - start) as usize;
            let before = out.len();
            match self
                .inflate
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(&DICTIONARY).map_err(zerr)?;
                    continue;
                }
                Err(e) => return Err(zerr(e)),
            }
            let now = (self.inflate.total_in() - start) as usize;
            if now == input.len() && out.len() < out.capacity() {
                break;
            }
            if now == consumed && out.len() == before && out.len() < out.capacity() {
                return Err(SpdyError::Compression(
                    "header block does not inflate".into(),
                ));
            }
        }
        parse_block(&out)
    }

    /// The next frame; None at a clean end of the connection (between frames).
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        let n = self.io.read(&mut head).await?;
        if n == 0 {
            return Ok(None);
        }
        self.io.read_exact(&mut head[n..]).await?;
        let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = (usize::from(head[5]) << 16) | (usize::from(head[6]) << 8) | usize::from(head[7]);
        let mut p = vec![0u8; len];
        self.io.read_exact(&mut p).await?;
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                id: first,
                flags,
                data: Bytes::from(p),
            }));
        }
        let version = (first >> 16) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Protocol(format!("SPDY version {version}")));
        }
        let id = || Ok::<u32, SpdyError>(be32(&p, 0)? & 0x7fff_ffff);
        let frame = match (first & 0xffff) as u16 {
            TYPE_SYN_STREAM => {
                if p.len() < 10 {
                    return Err(SpdyError::Protocol("short SYN_STREAM".into()));
                }
                Frame::SynStream {
                    id: id()?,
                    associated: be32(&p, 4)? & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    flags,
                    headers: self.header_block(&p[10..])?,
                }
            }
            TYPE_SYN_REPLY => Frame::SynReply {
                id: id()?,
                flags,
                headers: self.header_block(p.get(4..).unwrap_or_default())?,
            },
            TYPE_HEADERS => Frame::Headers {
                id: id()?,
                flags,
                headers: self.header_block(p.get(4..).unwrap_or_default())?,
            },
            TYPE_RST_STREAM => Frame::RstStream {
                id: id()?,
                status: be32(&p, 4)?,
            },
            TYPE_SETTINGS => {
                let count = be32(&p, 0)? as usize;
                let mut entries = Vec::with_capacity(count.min(p.len() / 8));
                for i in 0..count {
                    let at = 4 + 8 * i;
                    let word = be32(&p, at)?;
                    entries.push(((word >> 24) as u8, word & 0xff_ffff, be32(&p, at + 4)?));
                }
                Frame::Settings { flags, entries }
            }
            TYPE_PING => Frame::Ping { id: be32(&p, 0)? },
            TYPE_GOAWAY => Frame::GoAway {
                last_good: id()?,
                status: be32(&p, 4).unwrap_or(0),
            },
            TYPE_WINDOW_UPDATE => Frame::WindowUpdate {
                id: id()?,
                delta: be32(&p, 4)? & 0x7fff_ffff,
            },
            kind => Frame::Unknown { kind },
        };
        Ok(Some(frame))
    }
}

// ---------------------------------------------------------------------------------------------
// The connection.

enum Out {
    Frame(Frame),
    /// Flush, shut the write half down, acknowledge.
    Shutdown(oneshot::Sender<()>),
}

/// Why a send on a stream failed.
#[derive(Debug)]
enum SendError {
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

struct Shared {
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

    fn mark_dead(&self) {
        self.dead.send_replace(true);
        self.changed.notify_waiters();
        let gone = self.gone.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(gone) = gone {
            let _ = gone.send(());
        }
    }
}

#[derive(Clone)]
struct Conn {
    out: mpsc::Sender<Out>,
    shared: Arc<Shared>,
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

    async fn send_data(&self, id: u32, mut data: Bytes) -> Result<(), SendError> {
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
    async fn send_fin(&self, id: u32) -> Result<(), SendError> {
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
    async fn close(&self) {
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
struct NewStream {
    id: u32,
    headers: HeaderBlock,
    /// What the client sends on it (None: FIN).
    data: mpsc::Receiver<Bytes>,
}

impl NewStream {
    fn header(&self, name: &str) -> Option<&str> {
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
                let (last_id, closing) = {
                    let flow = self.conn.shared.flow();
                    (flow.last_id, flow.closing)
                };
                if id == 0 || id % 2 == 0 || id <= last_id {
                    let status = RST_PROTOCOL_ERROR;
                    return self.conn.frame(Frame::RstStream { id, status }).await;
                }
                if closing {
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
async fn pump(
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

struct Started {
    conn: Conn,
    streams: mpsc::Receiver<NewStream>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    gone: oneshot::Receiver<()>,
}

impl Started {
    fn abort(&self) {
        self.reader.abort();
        self.writer.abort();
        self.conn.shared.mark_dead();
    }
}

fn start<T>(io: T) -> Result<Started, SpdyError>
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

// ---------------------------------------------------------------------------------------------
// exec / attach

/// Parses the resize stream: concatenated `{"Width":W,"Height":H}` objects, split anyhow.
async fn parse_resize(mut data: mpsc::Receiver<Bytes>, tx: mpsc::Sender<TerminalSize>) {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = data.recv().await {
        buf.extend_from_slice(&chunk);
        let mut sizes = Vec::new();
        let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<TerminalSize>();
        let consumed = loop {
            match it.next() {
                Some(Ok(size)) => sizes.push(size),
                Some(Err(e)) if e.is_eof() => break it.byte_offset(),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "bad resize message");
                    break buf.len();
                }
                None => break buf.len(),
            }
        };
        buf.drain(..consumed);
        if buf.len() > 4096 {
            buf.clear();
        }
        for size in sizes {
            if tx.send(size).await.is_err() {
                return;
            }
        }
    }
}

fn kind_of(s: &NewStream) -> String {
    s.header("streamtype")
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Accepts an exec/attach connection: waits (up to `timeout`) until the client has opened the
/// error stream and every stream `expected` needs, then runs the connection in the background.
/// With a tty the resize stream may come at any time (and never, for v1/v2 clients).
///
/// The session writes the final status with [`CommandStreams::error`]: berth then flushes what
/// was already queued on stdout/stderr, writes the status on the error stream, closes every
/// stream and the connection.
pub async fn accept_command<T>(
    io: T,
    expected: Expected,
    timeout: Duration,
) -> Result<CommandStreams, SpdyError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut started = start(io)?;
    let required: Vec<&str> = [
        Some("error"),
        expected.stdin.then_some("stdin"),
        expected.stdout.then_some("stdout"),
        (expected.stderr && !expected.tty).then_some("stderr"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut found: HashMap<String, NewStream> = HashMap::new();
    let waited = tokio::time::timeout(timeout, async {
        while !required.iter().all(|k| found.contains_key(*k)) {
            let Some(s) = started.streams.recv().await else {
                return Err(SpdyError::Closed);
            };
            let kind = kind_of(&s);
            match kind.as_str() {
                "error" | "stdin" | "stdout" | "stderr" | "resize" => {
                    found.entry(kind).or_insert(s);
                }
                other => tracing::debug!(streamtype = other, "ignoring SPDY stream"),
            }
        }
        Ok(())
    })
    .await;
    match waited {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            started.abort();
            return Err(e);
        }
        Err(_) => {
            started.abort();
            let missing: Vec<&str> = required
                .iter()
                .filter(|k| !found.contains_key(**k))
                .copied()
                .collect();
            return Err(SpdyError::Timeout {
                timeout,
                missing: missing.join(", "),
            });
        }
    }

    let Started {
        conn,
        mut streams,
        reader,
        writer: _,
        gone,
    } = started;
    let (closing_tx, closing) = watch::channel(false);
    let mut pumps = Vec::new();
    let mut output = |kind: &str, wanted: bool| -> Option<mpsc::Sender<Bytes>> {
        let s = found.get(kind).filter(|_| wanted)?;
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        pumps.push(tokio::spawn(pump(s.id, rx, conn.clone(), closing.clone())));
        Some(tx)
    };
    let stdout = output("stdout", expected.stdout);
    let stderr = output("stderr", expected.stderr);
    let stdin = found
        .remove("stdin")
        .filter(|_| expected.stdin)
        .map(|s| s.data);
    let (resize_tx, resize) = if expected.tty {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let mut have_resize = false;
    if let (Some(s), Some(tx)) = (found.remove("resize"), &resize_tx) {
        tokio::spawn(parse_resize(s.data, tx.clone()));
        have_resize = true;
    }
    let error_id = found.get("error").map(|s| s.id).unwrap_or_default();
    drop(found);
    let (error, mut status_rx) = oneshot::channel::<Bytes>();

    tokio::spawn(async move {
        let status = loop {
            tokio::select! {
                status = &mut status_rx => break status.ok(),
                s = streams.recv() => match s {
                    Some(s) => {
                        if let (false, "resize", Some(tx)) = (have_resize, kind_of(&s).as_str(), &resize_tx) {
                            tokio::spawn(parse_resize(s.data, tx.clone()));
                            have_resize = true;
                        }
                    }
                    // The connection is gone; pumps notice on their own.
                    None => return,
                },
            }
        };
        drop(resize_tx);
        closing_tx.send_replace(true);
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        for p in &mut pumps {
            if tokio::time::timeout_at(deadline, &mut *p).await.is_err() {
                p.abort();
            }
        }
        if let Some(status) = status {
            let _ = conn.send_data(error_id, status).await;
        }
        conn.close().await;
        // Let the client read everything and close first (closing with unread input would
        // reset the connection under it).
        let mut reader = reader;
        if tokio::time::timeout(LINGER, &mut reader).await.is_err() {
            reader.abort();
        }
        conn.shared.mark_dead();
    });

    Ok(CommandStreams {
        stdin,
        stdout,
        stderr,
        resize,
        error,
        gone,
    })
}

// ---------------------------------------------------------------------------------------------
// port-forward

#[derive(Default)]
struct Pair {
    port: Option<String>,
    data: Option<(u32, mpsc::Receiver<Bytes>)>,
    error: Option<u32>,
}

/// Accepts a port-forward connection: yields one [`PortStreams`] per pair of `data` and `error`
/// streams sharing a `requestid` (streams without one pair up as kubelet pairs old clients':
/// error stream N with data stream N+2). The second receiver resolves when the connection ends.
pub async fn accept_port_forward<T>(
    io: T,
) -> Result<(mpsc::Receiver<PortStreams>, oneshot::Receiver<()>), SpdyError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Started {
        conn,
        mut streams,
        reader: _,
        writer: _,
        gone,
    } = start(io)?;
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tokio::spawn(async move {
        // Never set: port-forward streams end one by one.
        let (_closing_tx, closing) = watch::channel(false);
        let mut pending: HashMap<String, Pair> = HashMap::new();
        while let Some(s) = streams.recv().await {
            let kind = kind_of(&s);
            let request = match s.header("requestid") {
                Some(r) => r.to_string(),
                None if kind == "data" => s.id.saturating_sub(2).to_string(),
                None => s.id.to_string(),
            };
            let pair = pending.entry(request.clone()).or_default();
            if let Some(port) = s.header("port") {
                pair.port = Some(port.to_string());
            }
            match kind.as_str() {
                "data" if pair.data.is_none() => pair.data = Some((s.id, s.data)),
                "error" if pair.error.is_none() => pair.error = Some(s.id),
                other => {
                    tracing::debug!(streamtype = other, request, "ignoring SPDY stream");
                    continue;
                }
            }
            let (Some(_), Some(_)) = (&pair.data, pair.error) else {
                continue;
            };
            let Some(Pair {
                port,
                data: Some((data_id, data_in)),
                error: Some(error_id),
            }) = pending.remove(&request)
            else {
                continue;
            };
            let port_text = port.unwrap_or_default();
            let Ok(port) = port_text.parse::<u16>() else {
                let conn = conn.clone();
                tokio::spawn(async move {
                    let msg =
                        format!("invalid port {port_text:?} in port-forward request {request}");
                    let _ = conn.send_data(error_id, Bytes::from(msg)).await;
                    let _ = conn.send_fin(error_id).await;
                    let _ = conn.send_fin(data_id).await;
                });
                continue;
            };
            let (data_out, data_rx) = mpsc::channel(CHANNEL_DEPTH);
            let (error_out, error_rx) = mpsc::channel(CHANNEL_DEPTH);
            tokio::spawn(pump(data_id, data_rx, conn.clone(), closing.clone()));
            tokio::spawn(pump(error_id, error_rx, conn.clone(), closing.clone()));
            let streams = PortStreams {
                port,
                data_in,
                data_out,
                error_out,
            };
            if tx.send(streams).await.is_err() {
                // Nobody serves this connection any more.
                conn.close().await;
                return;
            }
        }
    });
    Ok((rx, gone))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

    const T: Duration = Duration::from_secs(5);

    /// A minimal SPDY client over the same framing code.
    struct Client {
        w: WriteHalf<DuplexStream>,
        enc: Encoder,
        r: FrameReader<ReadHalf<DuplexStream>>,
        next_id: u32,
    }

    impl Client {
        fn new(io: DuplexStream) -> Client {
            let (r, w) = tokio::io::split(io);
            Client {
                w,
                enc: Encoder::new().unwrap(),
                r: FrameReader::new(r),
                next_id: 1,
            }
        }

        async fn send(&mut self, f: Frame) {
            let b = self.enc.encode(&f).unwrap();
            self.w.write_all(&b).await.unwrap();
        }

        async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
            let id = self.next_id;
            self.next_id += 2;
            let headers = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            self.send(Frame::SynStream {
                id,
                associated: 0,
                priority: 0,
                flags: 0,
                headers,
            })
            .await;
            id
        }

        async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
            let flags = if fin { FLAG_FIN } else { 0 };
            let data = Bytes::copy_from_slice(data);
            self.send(Frame::Data { id, flags, data }).await;
        }

        async fn next(&mut self) -> Option<Frame> {
            tokio::time::timeout(T, self.r.read_frame())
                .await
                .expect("frame in time")
                .unwrap()
        }

        /// The next frame that is not a WINDOW_UPDATE.
        async fn next_nwu(&mut self) -> Option<Frame> {
            loop {
                match self.next().await {
                    Some(Frame::WindowUpdate { .. }) => {}
                    other => return other,
                }
            }
        }

        /// Reads until EOF; per stream: bytes and whether FIN came. Also GOAWAY seen.
        async fn drain(&mut self) -> (HashMap<u32, (Vec<u8>, bool)>, bool) {
            let mut out: HashMap<u32, (Vec<u8>, bool)> = HashMap::new();
            let mut goaway = false;
            while let Some(f) = self.next().await {
                match f {
                    Frame::Data { id, flags, data } => {
                        let e = out.entry(id).or_default();
                        assert!(!e.1, "data after FIN on {id}");
                        e.0.extend_from_slice(&data);
                        e.1 = flags & FLAG_FIN != 0;
                    }
                    Frame::GoAway { .. } => goaway = true,
                    Frame::WindowUpdate { .. } | Frame::SynReply { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            (out, goaway)
        }
    }

    fn st(kind: &str) -> Vec<(&str, &str)> {
        vec![("streamtype", kind)]
    }

    #[test]
    fn dictionary_is_spdy3() {
        let mut c = Compress::new(Compression::default(), true);
        assert_eq!(c.set_dictionary(&DICTIONARY).unwrap(), 0xe3c6_a7c2);
    }

    #[tokio::test]
    async fn framing_round_trip() {
        let h = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let frames = vec![
            Frame::SynStream {
                id: 1,
                associated: 0,
                priority: 3,
                flags: FLAG_FIN,
                headers: h("streamtype", "error"),
            },
            Frame::SynReply {
                id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::SynStream {
                id: 3,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: vec![
                    ("streamtype".into(), "data".into()),
                    ("port".into(), "8080".into()),
                    ("requestid".into(), "0".into()),
                ],
            },
            Frame::Headers {
                id: 3,
                flags: 0,
                headers: h("x", "y\0z"),
            },
            Frame::RstStream { id: 3, status: 5 },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20), (1, 4, 100)],
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
            Frame::WindowUpdate { id: 0, delta: 1234 },
            Frame::Data {
                id: 5,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                id: 5,
                flags: 0,
                data: Bytes::from(vec![7u8; 100_000]),
            },
        ];
        let mut enc = Encoder::new().unwrap();
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(enc.encode(f).unwrap());
        }
        // The first header block is a zlib stream using the SPDY/3 dictionary.
        assert_eq!(&wire[18 + 2..18 + 6], &[0xe3, 0xc6, 0xa7, 0xc2]);
        let mut r = FrameReader::new(&wire[..]);
        for f in &frames {
            assert_eq!(r.read_frame().await.unwrap().as_ref(), Some(f));
        }
        assert_eq!(r.read_frame().await.unwrap(), None);
    }

    /// Two SYN_STREAMs compressed by C zlib (Python's zlib, level 9, SPDY/3 dictionary, one
    /// context), as spdystream sends them.
    #[tokio::test]
    async fn reads_foreign_header_blocks() {
        let hex = "80030001000000280000000100000000000078f9e3c6a7c202a62346703a2b294a4dcc8516\
                   25aca9a08006000000ffff800300010000002e0000000300000000000002a54748d15c04ce05\
                   16061606409ab308129599a024ce6880a119540e2502000000ffff";
        let wire: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut r = FrameReader::new(&wire[..]);
        let Some(Frame::SynStream { id: 1, headers, .. }) = r.read_frame().await.unwrap() else {
            panic!("not a SYN_STREAM");
        };
        assert_eq!(header(&headers, "streamType"), Some("error"));
        let Some(Frame::SynStream { id: 3, headers, .. }) = r.read_frame().await.unwrap() else {
            panic!("not a SYN_STREAM");
        };
        assert_eq!(header(&headers, "streamtype"), Some("data"));
        assert_eq!(header(&headers, "port"), Some("8080"));
        assert_eq!(header(&headers, "requestid"), Some("0"));
    }

    #[tokio::test]
    async fn exec_session() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let server = tokio::spawn(accept_command(b, expected, T));
        let mut c = Client::new(a);
        let err = c.open(&st("error")).await;
        let stdin = c.open(&st("stdin")).await;
        let stdout = c.open(&st("stdout")).await;
        let stderr = c.open(&st("stderr")).await;
        for id in [err, stdin, stdout, stderr] {
            assert!(matches!(c.next_nwu().await, Some(Frame::SynReply { id: i, .. }) if i == id));
        }
        let mut s = server.await.unwrap().unwrap();
        assert!(s.resize.is_none());
        c.send(Frame::Ping { id: 1 }).await;
        assert_eq!(c.next_nwu().await, Some(Frame::Ping { id: 1 }));

        c.data(stdin, b"abc", false).await;
        c.data(stdin, b"def", true).await;
        let mut input = Vec::new();
        let mut rx = s.stdin.take().unwrap();
        while let Some(b) = rx.recv().await {
            input.extend_from_slice(&b);
        }
        assert_eq!(input, b"abcdef");

        // Output still queued when the status is sent must go out before it.
        let out = s.stdout.take().unwrap();
        let errw = s.stderr.take().unwrap();
        out.send(Bytes::from_static(b"hello ")).await.unwrap();
        out.send(Bytes::from_static(b"world")).await.unwrap();
        errw.send(Bytes::from_static(b"oops")).await.unwrap();
        s.error.send(crate::streaming::status_json(3)).unwrap();
        let (got, goaway) = c.drain().await;
        assert!(goaway);
        assert_eq!(got[&stdout], (b"hello world".to_vec(), true));
        assert_eq!(got[&stderr], (b"oops".to_vec(), true));
        let (status, fin) = &got[&err];
        assert!(fin);
        let v: serde_json::Value = serde_json::from_slice(status).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        drop(c);
        tokio::time::timeout(T, s.gone).await.unwrap().unwrap();
        assert!(out.send(Bytes::from_static(b"late")).await.is_err());
    }

    #[tokio::test]
    async fn tty_resize_and_late_resize_stream() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: false,
            stdout: true,
            stderr: true,
            tty: true,
        };
        let server = tokio::spawn(accept_command(b, expected, T));
        let mut c = Client::new(a);
        c.open(&st("error")).await;
        c.open(&st("stdout")).await;
        let mut s = server.await.unwrap().unwrap();
        assert!(s.stderr.is_none() && s.stdin.is_none());
        let resize = c.open(&st("resize")).await;
        c.data(resize, br#"{"Width":80,"Height":24}{"Width":1"#, false)
            .await;
        c.data(resize, b"00,\"Height\":50}\n{\"Width\":7,", false)
            .await;
        c.data(resize, br#""Height":9}"#, true).await;
        let mut rx = s.resize.take().unwrap();
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let size = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
            sizes.push((size.width, size.height));
        }
        assert_eq!(sizes, [(80, 24), (100, 50), (7, 9)]);
        // The status alone also ends the session when the session keeps its senders.
        let _keep = s.stdout.take();
        s.error.send(crate::streaming::status_json(0)).unwrap();
        let (got, goaway) = c.drain().await;
        assert!(goaway);
        assert_eq!(got[&1].0, br#"{"metadata":{},"status":"Success"}"#);
        assert!(got[&3].1, "stdout FIN");
        // The server closed every stream it had not closed.
        assert!(got[&resize].1);
    }

    #[tokio::test]
    async fn missing_streams_time_out() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: true,
            stdout: true,
            ..Default::default()
        };
        let server = tokio::spawn(accept_command(b, expected, Duration::from_millis(200)));
        let mut c = Client::new(a);
        c.open(&st("error")).await;
        c.open(&st("stdout")).await;
        match server.await.unwrap() {
            Err(SpdyError::Timeout { missing, .. }) => assert_eq!(missing, "stdin"),
            other => panic!("{other:?}"),
        }
        // And a client that goes away early is an error too.
        let (a, b) = tokio::io::duplex(1 << 16);
        drop(a);
        let r = accept_command(b, expected, T).await;
        assert!(matches!(r, Err(SpdyError::Closed)), "{r:?}");
    }

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

    #[tokio::test]
    async fn port_forward_pairs() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut c = Client::new(a);
        let (mut rx, gone) = accept_port_forward(b).await.unwrap();
        let e1 = c
            .open(&[
                ("streamtype", "error"),
                ("port", "8080"),
                ("requestid", "0"),
            ])
            .await;
        let e2 = c
            .open(&[
                ("streamtype", "error"),
                ("port", "9090"),
                ("requestid", "1"),
            ])
            .await;
        let d2 = c
            .open(&[("streamtype", "data"), ("port", "9090"), ("requestid", "1")])
            .await;
        let d1 = c
            .open(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")])
            .await;
        // An old client without request ids: error N pairs with data N+2.
        let e3 = c.open(&[("streamtype", "error"), ("port", "7070")]).await;
        let d3 = c.open(&[("streamtype", "data"), ("port", "7070")]).await;
        let p2 = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        let mut p1 = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        let p3 = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        assert_eq!((p1.port, p2.port, p3.port), (8080, 9090, 7070));

        c.data(d1, b"ping", true).await;
        assert_eq!(&p1.data_in.recv().await.unwrap()[..], b"ping");
        assert!(p1.data_in.recv().await.is_none());
        p1.data_out.send(Bytes::from_static(b"pong")).await.unwrap();
        drop(p1);
        p2.error_out
            .send(Bytes::from_static(b"dial failed"))
            .await
            .unwrap();
        drop(p2);
        drop(p3);
        let mut got: HashMap<u32, (Vec<u8>, bool)> = HashMap::new();
        while !([e1, d1, e2, d2, e3, d3].iter()).all(|id| got.get(id).is_some_and(|g| g.1)) {
            if let Some(Frame::Data { id, flags, data }) = c.next_nwu().await {
                let e = got.entry(id).or_default();
                e.0.extend_from_slice(&data);
                e.1 = flags & FLAG_FIN != 0;
            }
        }
        assert_eq!(got[&d1].0, b"pong");
        assert_eq!(got[&e2].0, b"dial failed");
        assert!(got[&e1].0.is_empty() && got[&d2].0.is_empty());
        drop(c);
        tokio::time::timeout(T, gone).await.unwrap().unwrap();
        assert!(tokio::time::timeout(T, rx.recv()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn port_forward_reset_stream_stops_output() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut c = Client::new(a);
        let (mut rx, _gone) = accept_port_forward(b).await.unwrap();
        let rid = [("requestid", "5"), ("port", "80")];
        c.open(&[rid[0], rid[1], ("streamtype", "error")]).await;
        let d = c.open(&[rid[0], rid[1], ("streamtype", "data")]).await;
        let p = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        c.send(Frame::RstStream { id: d, status: 5 }).await;
        let closed = tokio::time::timeout(T, async {
            loop {
                if p.data_out.send(Bytes::from_static(b"x")).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        closed.await.unwrap();
    }
}

/// berth's server against the e2e suite's SPDY client (e2e/src/spdy.rs, written apart from this
/// module and depending only on tokio, flate2 and serde_json): two implementations must agree.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../e2e/src/spdy.rs"]
mod e2e_client;

#[cfg(test)]
mod interop {
    use super::e2e_client as client;
    use super::*;
    use client::{Options, SpdyConn};

    async fn exec_case(flow_control: bool, tty: bool) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: true,
            stdout: true,
            stderr: !tty,
            tty,
        };
        let server = tokio::spawn(async move {
            let mut s = accept_command(b, expected, Duration::from_secs(5))
                .await
                .unwrap();
            let mut stdin = s.stdin.take().unwrap();
            let stdout = s.stdout.take().unwrap();
            let mut n = 0;
            while let Some(d) = stdin.recv().await {
                n += d.len();
                stdout
                    .send(Bytes::from(d.to_ascii_uppercase()))
                    .await
                    .unwrap();
            }
            if let Some(e) = s.stderr.take() {
                e.send(Bytes::from(format!("{n} bytes"))).await.unwrap();
            }
            let size = match s.resize.as_mut() {
                Some(r) => r.recv().await,
                None => None,
            };
            s.error.send(crate::streaming::status_json(3)).unwrap();
            size
        });
        let conn = SpdyConn::new(a, Options { flow_control }).unwrap();
        conn.ping().await.unwrap();
        let session = client::exec_on(conn, "v4.channel.k8s.io".into(), true, true, true, tty)
            .await
            .unwrap();
        if let Some(r) = &session.resize {
            r.send((132, 43)).await.unwrap();
        }
        let input: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let got = client::finish(session, Some(&input)).await.unwrap();
        assert_eq!(got.stdout, input.to_ascii_uppercase());
        assert_eq!(got.exit_code(), Some(3));
        let size = server.await.unwrap();
        if tty {
            assert!(got.stderr.is_empty());
            assert_eq!(
                size,
                Some(TerminalSize {
                    width: 132,
                    height: 43
                })
            );
        } else {
            assert_eq!(got.stderr, b"300000 bytes");
        }
    }

    #[tokio::test]
    async fn exec_kubectl_like() {
        exec_case(false, false).await;
    }

    #[tokio::test]
    async fn exec_with_flow_control() {
        exec_case(true, false).await;
    }

    #[tokio::test]
    async fn exec_tty() {
        exec_case(false, true).await;
    }

    #[tokio::test]
    async fn port_forward() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut rx, _gone) = accept_port_forward(b).await.unwrap();
        tokio::spawn(async move {
            while let Some(mut p) = rx.recv().await {
                tokio::spawn(async move {
                    if p.port == 81 {
                        let _ = p.error_out.send(Bytes::from_static(b"refused")).await;
                        return;
                    }
                    while let Some(d) = p.data_in.recv().await {
                        let _ = p.data_out.send(d).await;
                    }
                });
            }
        });
        let conn = SpdyConn::new(a, Options::default()).unwrap();
        let mut one = client::open_port(&conn, 80, 0).await.unwrap();
        let mut two = client::open_port(&conn, 81, 1).await.unwrap();
        let big = vec![5u8; 200_000];
        one.data.write(&big).await.unwrap();
        one.data.close_write().unwrap();
        assert_eq!(one.data.read_to_end().await, big);
        assert_eq!(two.error.read_to_end().await, b"refused");
        assert!(two.data.read_to_end().await.is_empty());
        one.data.reset();
        conn.close();
    }
}
