//! The streaming side of a layer pull: compressed chunks arrive from the registry, are teed into
//! the content store's ingest file, decompressed (format sniffed from the bytes), hashed for the
//! diff id and unpacked, all in one pass on a blocking thread.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::unpack::{Limits, UnpackError, UnpackStats, unpack_layer};

/// What the network side sends: data, a clean end (digest verified), or the reason it stopped.
#[derive(Debug)]
pub enum Chunk {
    Data(Bytes),
    End,
    Failed(String),
}

/// Errors applying one layer.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Unsafe(#[from] UnpackError),
    #[error("layer diff id is {actual}, the image config says {expected}")]
    DiffIdMismatch { expected: String, actual: String },
    #[error("download failed: {0}")]
    Download(String),
    #[error("decompressing layer: {0}")]
    Decompress(std::io::Error),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The result of a successful apply.
#[derive(Debug, Clone)]
pub struct Applied {
    pub diff_id: String,
    pub stats: UnpackStats,
}

/// Reads chunks from the channel, writing each one to the ingest file first.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    current: Bytes,
    tee: File,
    failed: Option<String>,
    ended: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(b)) => {
                    self.tee.write_all(&b)?;
                    self.current = b;
                }
                Some(Chunk::End) => self.ended = true,
                Some(Chunk::Failed(why)) => {
                    self.failed = Some(why.clone());
                    return Err(std::io::Error::other(why));
                }
                None => {
                    let why = "download stopped before the end of the layer".to_string();
                    self.failed = Some(why.clone());
                    return Err(std::io::Error::other(why));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Hashes what passes through.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

enum Compression {
    None,
    Gzip,
    Zstd,
}

fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Unpack the decompressed stream and hash all of it (the tar's trailing padding counts too).
fn decode_unpack<R: Read>(
    decoder: R,
    dest: &Path,
    limits: Limits,
) -> Result<(String, UnpackStats), ApplyError> {
    let mut hashed = Hashing {
        inner: decoder,
        hash: Sha256::new(),
    };
    let stats = unpack_layer(&mut hashed, dest, limits)?;
    std::io::copy(&mut hashed, &mut std::io::sink()).map_err(ApplyError::Decompress)?;
    Ok((
        format!("sha256:{}", hex::encode(hashed.hash.finalize())),
        stats,
    ))
}

/// Apply one layer: `rx` feeds the compressed blob, `ingest` receives a copy of it, `dest` (an
/// empty directory) receives the unpacked layer, within `limits`. On error the caller removes
/// `dest` and `ingest`.
pub fn apply_layer(
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    ingest: &Path,
    dest: &Path,
    expected_diff_id: &str,
    limits: Limits,
) -> Result<Applied, ApplyError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ApplyError::Io { path, source }
    };
    let tee = File::create(ingest).map_err(io_err(ingest))?;
    let mut chunks = ChunkReader {
        rx,
        current: Bytes::new(),
        tee,
        failed: None,
        ended: false,
    };
    let result = (|| -> Result<(String, UnpackStats), ApplyError> {
        let mut buf = BufReader::with_capacity(256 * 1024, &mut chunks);
        let kind = sniff(buf.fill_buf().map_err(ApplyError::Decompress)?);
        let (diff_id, stats) = match kind {
            Compression::Gzip => {
                decode_unpack(flate2::bufread::MultiGzDecoder::new(&mut buf), dest, limits)?
            }
            Compression::Zstd => decode_unpack(
                zstd::Decoder::with_buffer(&mut buf).map_err(ApplyError::Decompress)?,
                dest,
                limits,
            )?,
            Compression::None => decode_unpack(&mut buf, dest, limits)?,
        };
        std::io::copy(&mut buf, &mut std::io::sink()).map_err(ApplyError::Decompress)?;
        Ok((diff_id, stats))
    })();
    // A download failure explains any decompress/unpack error that followed it.
    if let Some(why) = chunks.failed.take() {
        return Err(ApplyError::Download(why));
    }
    let (diff_id, stats) = result?;
    if diff_id != expected_diff_id {
        return Err(ApplyError::DiffIdMismatch {
            expected: expected_diff_id.to_string(),
            actual: diff_id,
        });
    }
    chunks.tee.sync_all().map_err(io_err(ingest))?;
    Ok(Applied { diff_id, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn run(blob: Vec<u8>, end: Chunk, expected: &str) -> (Result<Applied, ApplyError>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("fs");
        std::fs::create_dir(&dest).unwrap();
        let ingest = dir.path().join("ingest");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let expected = expected.to_string();
        let (d2, i2) = (dest.clone(), ingest.clone());
        let worker =
            std::thread::spawn(move || apply_layer(rx, &i2, &d2, &expected, Limits::default()));
        for c in blob.chunks(7) {
            tx.blocking_send(Chunk::Data(Bytes::copy_from_slice(c)))
                .unwrap();
        }
        let _ = tx.blocking_send(end);
        drop(tx);
        let r = worker.join().unwrap();
        if r.is_ok() {
            assert_eq!(std::fs::read(dest.join("hello.txt")).unwrap(), b"hello");
        }
        (r, std::fs::read(&ingest).unwrap_or_default())
    }

    #[test]
    fn gzip_zstd_and_plain_layers_apply_and_tee() {
        let tar = layer_tar();
        let diff = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        for blob in [tar.clone(), gz, zst] {
            let (r, teed) = run(blob.clone(), Chunk::End, &diff);
            let applied = r.unwrap();
            assert_eq!(applied.diff_id, diff);
            assert_eq!(applied.stats.bytes, 5);
            assert_eq!(teed, blob);
        }
    }

    #[test]
    fn wrong_diff_id_and_failed_or_truncated_downloads_are_errors() {
        let tar = layer_tar();
        let (r, _) = run(tar.clone(), Chunk::End, "sha256:00");
        assert!(matches!(r, Err(ApplyError::DiffIdMismatch { .. })));
        let diff = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
        let (r, _) = run(tar.clone(), Chunk::Failed("digest mismatch".into()), &diff);
        assert!(matches!(r, Err(ApplyError::Download(m)) if m.contains("digest mismatch")));
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let dir = tempfile::tempdir().unwrap();
        tx.blocking_send(Chunk::Data(Bytes::copy_from_slice(&tar[..100])))
            .unwrap();
        drop(tx);
        let r = apply_layer(
            rx,
            &dir.path().join("i"),
            dir.path(),
            &diff,
            Limits::default(),
        );
        assert!(matches!(r, Err(ApplyError::Download(_))));
    }
}
