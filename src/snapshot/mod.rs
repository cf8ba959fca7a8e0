//! Unpacked image layers: one overlayfs lower dir per layer at `snapshots/<n>/fs`, keyed by the
//! layer's chain id so images that share a base share its directories; and, as containerd's
//! snapshotter, a container's view of them: [`Snapshotter::prepare`] makes the container's
//! writable layer ([`active`]) and returns the [`Mount`] that shows the image under it, which the
//! container mounts at its rootfs ([`mount`]) and later unmounts before removing the layer.

pub mod active;
pub mod apply;
pub mod mount;
mod tarstream;
pub mod unpack;

pub use active::ActiveSnapshot;
pub use mount::{IdmappedLayers, Mount, MountError};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::IoError;

/// One committed, fully unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Chain id of this layer on top of its parents.
    pub chain_id: String,
    /// Directory number under `snapshots/` (short, so overlay mount options stay small).
    pub id: u64,
    /// Chain id of the layer below, if any.
    pub parent: Option<String>,
    /// Digest of the uncompressed layer tar.
    pub diff_id: String,
    /// Bytes of regular file data written.
    pub bytes: u64,
    /// Filesystem objects created.
    pub inodes: u64,
}

/// The snapshot directory tree and an in-memory view of the committed records.
pub struct Snapshotter {
    dir: PathBuf,
    next_id: AtomicU64,
    records: RwLock<HashMap<String, SnapshotRecord>>,
}

/// A user-namespaced pod's mapping, as a container's snapshot needs it (containerd's remap
/// labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remap {
    /// The pod's pinned user namespace: the layers are seen through its mapping.
    pub userns: PathBuf,
    /// The host uid and gid of the pod's root, which owns the writable layer (None: unmapped).
    pub root_uid: Option<u32>,
    pub root_gid: Option<u32>,
}

/// Errors preparing a container's snapshot.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A layer is not (or no longer) committed: the image must be pulled again.
    #[error("layer {0} is missing")]
    MissingLayer(String),
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Chain ids per the OCI image spec: `C0 = D0`, `Cn = sha256(Cn-1 + " " + Dn)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

impl Snapshotter {
    /// Open `dir`, removing any directory that no committed record names (an unpack that a
    /// crash interrupted).
    pub fn open(dir: &Path, records: Vec<SnapshotRecord>) -> std::io::Result<Snapshotter> {
        std::fs::create_dir_all(dir)?;
        let known: HashMap<u64, ()> = records.iter().map(|r| (r.id, ())).collect();
        let mut max_id = records.iter().map(|r| r.id).max().unwrap_or(0);
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let n = name.to_str().and_then(|s| s.parse::<u64>().ok());
            if let Some(n) = n {
                max_id = max_id.max(n);
                if known.contains_key(&n) {
                    continue;
                }
            }
            tracing::info!(path = %entry.path().display(), "removing uncommitted snapshot");
            remove_tree(&entry.path())?;
        }
        Ok(Snapshotter {
            dir: dir.to_path_buf(),
            next_id: AtomicU64::new(max_id + 1),
            records: RwLock::new(
                records
                    .into_iter()
                    .map(|r| (r.chain_id.clone(), r))
                    .collect(),
            ),
        })
    }

    /// The snapshots directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The committed record for a chain id.
    pub fn get(&self, chain_id: &str) -> Option<SnapshotRecord> {
        read(&self.records).get(chain_id).cloned()
    }

    /// Every committed record.
    pub fn all(&self) -> Vec<SnapshotRecord> {
        read(&self.records).values().cloned().collect()
    }

    /// A fresh, empty `snapshots/<n>/fs` for an unpack; the caller commits or removes it.
    pub fn allocate(&self) -> std::io::Result<(u64, PathBuf)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let fs = self.fs_path(id);
        std::fs::create_dir_all(&fs)?;
        Ok((id, fs))
    }

    /// The layer contents of snapshot `id`.
    pub fn fs_path(&self, id: u64) -> PathBuf {
        self.dir.join(id.to_string()).join("fs")
    }

    /// Remove snapshot `id`'s directory (absent is fine).
    pub fn remove_dir(&self, id: u64) -> std::io::Result<()> {
        remove_tree(&self.dir.join(id.to_string()))
    }

    /// Make a record visible (after it is durable in the store).
    pub fn insert(&self, rec: SnapshotRecord) {
        write(&self.records).insert(rec.chain_id.clone(), rec);
    }

    /// Forget a record (after its removal is durable in the store).
    pub fn forget(&self, chain_id: &str) -> Option<SnapshotRecord> {
        write(&self.records).remove(chain_id)
    }

    /// containerd's `Prepare`: make `active`, a writable layer over the committed layers
    /// `chain_ids` (base first), and return the mount that shows them as one tree; with
    /// `remap`, as a user-namespaced pod's root sees them.
    pub fn prepare(
        &self,
        active: &ActiveSnapshot,
        chain_ids: &[String],
        remap: Option<&Remap>,
    ) -> Result<Mount, PrepareError> {
        let mut lowers = Vec::with_capacity(chain_ids.len());
        for chain in chain_ids.iter().rev() {
            let snap = self
                .get(chain)
                .ok_or_else(|| PrepareError::MissingLayer(chain.clone()))?;
            lowers.push(self.fs_path(snap.id));
        }
        active.create(remap.map_or((None, None), |r| (r.root_uid, r.root_gid)))?;
        Ok(Mount {
            lowers,
            upper: active.upper(),
            work: active.work(),
            idmap: remap.map(|r| IdmappedLayers {
                userns: r.userns.clone(),
                staging: active.idmap_staging(),
            }),
        })
    }

    /// Bytes and inodes used by all committed snapshots.
    pub fn usage(&self) -> (u64, u64) {
        read(&self.records)
            .values()
            .fold((0, 0), |(b, i), r| (b + r.bytes, i + r.inodes))
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// `rm -rf` that treats a missing path as done.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let ids = chain_ids(&[d('a'), d('b')]);
        assert_eq!(ids[0], d('a'));
        let expect = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{} {}", d('a'), d('b')).as_bytes()))
        );
        assert_eq!(ids[1], expect);
    }

    #[test]
    fn open_removes_uncommitted_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("1/fs")).unwrap();
        std::fs::create_dir_all(dir.path().join("7/fs/x")).unwrap();
        std::fs::write(dir.path().join("junk"), b"x").unwrap();
        let rec = SnapshotRecord {
            chain_id: "sha256:c".into(),
            id: 1,
            parent: None,
            diff_id: "sha256:c".into(),
            bytes: 10,
            inodes: 2,
        };
        let s = Snapshotter::open(dir.path(), vec![rec]).unwrap();
        assert!(dir.path().join("1/fs").is_dir());
        assert!(!dir.path().join("7").exists());
        assert!(!dir.path().join("junk").exists());
        let (id, fs) = s.allocate().unwrap();
        assert_eq!(id, 8);
        assert!(fs.is_dir());
        assert_eq!(s.usage(), (10, 2));
    }

    #[test]
    fn prepare_stacks_the_layers_under_a_writable_one() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |n: u64, parent: Option<&str>| SnapshotRecord {
            chain_id: format!("sha256:{n}"),
            id: n,
            parent: parent.map(String::from),
            diff_id: format!("sha256:{n}"),
            bytes: 0,
            inodes: 0,
        };
        let s = Snapshotter::open(
            &dir.path().join("snapshots"),
            vec![rec(1, None), rec(2, Some("sha256:1"))],
        )
        .unwrap();
        let bundle = dir.path().join("containers/c1");
        let active = ActiveSnapshot::in_bundle(&bundle);
        let chains = ["sha256:1".to_string(), "sha256:2".to_string()];
        let m = s.prepare(&active, &chains, None).unwrap();
        assert_eq!(m.lowers, vec![s.fs_path(2), s.fs_path(1)]);
        assert_eq!(m.upper, bundle.join("rw/upper"));
        assert_eq!(m.work, bundle.join("rw/work"));
        assert!(m.upper.is_dir() && m.work.is_dir());
        assert_eq!(m.idmap, None);

        let remap = Remap {
            userns: "/run/pin/user".into(),
            root_uid: None,
            root_gid: None,
        };
        let m = s.prepare(&active, &chains, Some(&remap)).unwrap();
        assert_eq!(
            m.idmap,
            Some(IdmappedLayers {
                userns: "/run/pin/user".into(),
                staging: bundle.join("idmapped-layers"),
            })
        );

        let other = ActiveSnapshot::in_bundle(&dir.path().join("containers/c2"));
        let err = s
            .prepare(&other, &["sha256:9".to_string()], None)
            .unwrap_err();
        assert!(
            matches!(&err, PrepareError::MissingLayer(c) if c == "sha256:9"),
            "{err}"
        );
        assert!(!dir.path().join("containers/c2").exists());
    }
}
