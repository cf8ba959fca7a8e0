//! A minimal SPDY client over berth's own framing code, for the transport's unit tests.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::frame::{Encoder, FLAG_FIN, Frame, FrameReader};

pub(super) const T: Duration = Duration::from_secs(5);

/// A minimal SPDY client over the same framing code.
pub(super) struct Client {
    pub(super) w: WriteHalf<DuplexStream>,
    pub(super) enc: Encoder,
    pub(super) r: FrameReader<ReadHalf<DuplexStream>>,
    pub(super) next_id: u32,
}

impl Client {
    pub(super) fn new(io: DuplexStream) -> Client {
        let (r, w) = tokio::io::split(io);
        Client {
            w,
            enc: Encoder::new().unwrap(),
            r: FrameReader::new(r),
            next_id: 1,
        }
    }

    pub(super) async fn send(&mut self, f: Frame) {
        let b = self.enc.encode(&f).unwrap();
        self.w.write_all(&b).await.unwrap();
    }

    pub(super) async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
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

    pub(super) async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
        let flags = if fin { FLAG_FIN } else { 0 };
        let data = Bytes::copy_from_slice(data);
        self.send(Frame::Data { id, flags, data }).await;
    }

    pub(super) async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(T, self.r.read_frame())
            .await
            .expect("frame in time")
            .unwrap()
    }

    /// The next frame that is not a WINDOW_UPDATE.
    pub(super) async fn next_nwu(&mut self) -> Option<Frame> {
        loop {
            match self.next().await {
                Some(Frame::WindowUpdate { .. }) => {}
                other => return other,
            }
        }
    }

    /// Reads until EOF; per stream: bytes and whether FIN came. Also GOAWAY seen.
    pub(super) async fn drain(&mut self) -> (HashMap<u32, (Vec<u8>, bool)>, bool) {
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

pub(super) fn st(kind: &str) -> Vec<(&str, &str)> {
    vec![("streamtype", kind)]
}
