//! The SPDY/3.1 wire format: frames to and from bytes. Header blocks are zlib-compressed with the
//! SPDY/3 dictionary, one compression context per direction for the whole connection (so the
//! [`Encoder`] and the [`FrameReader`] each own one).

use bytes::{BufMut, Bytes};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::SpdyError;

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
const MAX_FRAME_LEN: usize = (1 << 24) - 1;
/// Cap on a decompressed header block.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// The first buffer a header block inflates into; it grows (up to [`MAX_HEADER_BLOCK`]) only as
/// the block really inflates, never from what a length claims.
const INITIAL_HEADER_BUFFER: usize = 4096;

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
        let mut out =
            Vec::with_capacity(input.len().saturating_mul(4).min(INITIAL_HEADER_BUFFER) + 64);
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
        // The payload buffer grows with the bytes that arrive: a frame head claiming 16 MiB that
        // sends nothing more costs nothing.
        let mut p = Vec::new();
        (&mut self.io).take(len as u64).read_to_end(&mut p).await?;
        if p.len() < len {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// An AsyncRead over bytes that remembers the largest buffer it was handed.
    struct Recording<'a> {
        data: &'a [u8],
        largest: usize,
    }

    impl AsyncRead for Recording<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.largest = self.largest.max(buf.remaining());
            let n = buf.remaining().min(self.data.len());
            buf.put_slice(&self.data[..n]);
            self.data = &self.data[n..];
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// A frame head claiming the largest payload, then a little and the end: the reader fails
    /// without having set aside a buffer of the claimed size.
    #[tokio::test]
    async fn a_claimed_length_is_not_preallocated() {
        let mut wire = vec![0, 0, 0, 1, 0, 0xff, 0xff, 0xff];
        wire.extend([7u8; 1000]);
        let mut io = Recording {
            data: &wire,
            largest: 0,
        };
        let mut r = FrameReader::new(&mut io);
        let err = r.read_frame().await.unwrap_err();
        assert!(matches!(err, SpdyError::Io(_)), "{err:?}");
        drop(r);
        assert!(io.largest < 64 * 1024, "a {} byte buffer", io.largest);
    }

    /// Header blocks whose counts and lengths claim more than the block holds, or that inflate
    /// past the cap, are refused.
    #[tokio::test]
    async fn header_block_claims_are_checked() {
        let syn = |block: &[u8]| {
            let mut deflate = Compress::new(Compression::default(), true);
            deflate.set_dictionary(&DICTIONARY).unwrap();
            let mut z = Vec::with_capacity(block.len() + 1024);
            deflate
                .compress_vec(block, &mut z, FlushCompress::Sync)
                .unwrap();
            let mut p = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            p.extend(z);
            control(TYPE_SYN_STREAM, 0, &p).unwrap()
        };
        // 2^31 - 1 pairs; one name 2^31 - 1 bytes long; then a block inflating to 4 MiB.
        let mut huge_name = vec![0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff];
        huge_name.extend(b"abc");
        let mut bomb = vec![0, 0, 0, 1, 0, 0x40, 0, 0];
        bomb.resize(4 << 20, b'a');
        for (block, want) in [
            (vec![0x7f, 0xff, 0xff, 0xff], "truncated"),
            (huge_name, "truncated"),
            (bomb, "too large"),
        ] {
            let wire = syn(&block);
            let mut r = FrameReader::new(&wire[..]);
            let err = r.read_frame().await.unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
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
}
