//! The content store: blobs by digest under `content/blobs/sha256/<hex>`, written through
//! `content/ingest/` and renamed into place only once complete and verified.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Blobs by digest.
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
    seq: AtomicU64,
}

impl ContentStore {
    /// Open `<root>/content`, discarding ingests a crash left behind.
    pub fn open(root: &Path) -> std::io::Result<ContentStore> {
        let blobs = root.join("content/blobs/sha256");
        let ingest = root.join("content/ingest");
        std::fs::create_dir_all(&blobs)?;
        crate::snapshot::remove_tree(&ingest)?;
        std::fs::create_dir_all(&ingest)?;
        Ok(ContentStore {
            blobs,
            ingest,
            seq: AtomicU64::new(0),
        })
    }

    /// Where the blob with `digest` lives (it may not exist).
    pub fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.blobs.join(hex)
    }

    /// Whether the blob is present.
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    /// Read a whole (small) blob.
    pub fn read(&self, digest: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path(digest))
    }

    /// A fresh ingest path for a streamed blob.
    pub fn ingest_path(&self) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.ingest.join(format!("{}-{n}", std::process::id()))
    }

    /// Move a complete, verified, synced ingest file into place.
    pub fn commit(&self, ingest: &Path, digest: &str) -> std::io::Result<()> {
        std::fs::rename(ingest, self.path(digest))?;
        File::open(&self.blobs)?.sync_all()
    }

    /// Store `data` under `digest` after checking it hashes to it.
    pub fn write_verified(&self, digest: &str, data: &[u8]) -> std::io::Result<()> {
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        if actual != digest {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("content hashes to {actual}, expected {digest}"),
            ));
        }
        if self.has(digest) {
            return Ok(());
        }
        let tmp = self.ingest_path();
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        self.commit(&tmp, digest)
    }

    /// Remove a blob (absent is fine).
    pub fn remove(&self, digest: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every stored blob's digest.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.blobs)? {
            if let Some(name) = e?.file_name().to_str() {
                out.push(format!("sha256:{name}"));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_writes_and_crash_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("content/ingest")).unwrap();
        std::fs::write(dir.path().join("content/ingest/stale"), b"x").unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        assert!(!dir.path().join("content/ingest/stale").exists());
        let d = format!("sha256:{}", hex::encode(Sha256::digest(b"abc")));
        cs.write_verified(&d, b"abc").unwrap();
        assert_eq!(cs.read(&d).unwrap(), b"abc");
        assert_eq!(cs.list().unwrap(), vec![d.clone()]);
        let wrong = format!("sha256:{}", "0".repeat(64));
        assert!(cs.write_verified(&wrong, b"abc").is_err());
        assert!(!cs.has(&wrong));
        cs.remove(&d).unwrap();
        cs.remove(&d).unwrap();
        assert!(!cs.has(&d));
    }
}
