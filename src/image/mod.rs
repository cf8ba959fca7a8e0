//! Images: references, registry pulls, the content store, image records and garbage collection.

pub mod content;
mod error;
pub mod hosts;
pub mod progress;
pub mod pull;
pub mod reference;

use crate::error::{IoContext, IoError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::snapshot::{SnapshotRecord, Snapshotter};
use crate::store::{Change, IMAGES, SNAPSHOTS, Store};
use content::ContentStore;
use reference::{ImageRef, looks_like_id};

pub use error::ImageError;

/// One image: a config digest (its id) with the names that point at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest.
    pub id: String,
    /// `registry/repo:tag` names.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:...` of the manifest (or index) each name was pulled by.
    pub repo_digests: Vec<String>,
    /// Bytes of every blob as the registry serves them (index, manifest, config, layers).
    pub size: u64,
    /// Chain ids, base layer first.
    pub layers: Vec<String>,
    /// Every blob of this image in the content store (index, manifest, config, layers).
    pub blobs: Vec<String>,
    /// The config's `User`.
    pub user: String,
    /// Unix seconds of the first pull.
    pub pulled_at: i64,
}

impl ImageRecord {
    /// Every name (tags and digests).
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.repo_tags.iter().chain(self.repo_digests.iter())
    }
}

#[derive(Default)]
struct Index {
    images: HashMap<String, ImageRecord>,
    names: HashMap<String, String>,
}

impl Index {
    fn insert(&mut self, rec: ImageRecord) {
        for n in rec.names() {
            self.names.insert(n.clone(), rec.id.clone());
        }
        self.images.insert(rec.id.clone(), rec);
    }

    fn remove(&mut self, id: &str) -> Option<ImageRecord> {
        let rec = self.images.remove(id)?;
        for n in rec.names() {
            if self.names.get(n).is_some_and(|x| x == id) {
                self.names.remove(n);
            }
        }
        Some(rec)
    }
}

/// The image service's domain: records in memory and in the store, content and snapshots.
pub struct Images {
    store: Arc<Store>,
    pub content: ContentStore,
    pub snapshots: Snapshotter,
    hosts_dir: PathBuf,
    config: ImageConfig,
    index: RwLock<Index>,
    /// Serialises record updates (names move between images).
    commit_lock: tokio::sync::Mutex<()>,
    /// Pulls hold it shared; garbage collection exclusive, so it never sees a half-made image.
    gc_lock: tokio::sync::RwLock<()>,
    /// One download per layer at a time, whatever the number of concurrent pulls.
    inflight: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Chain ids held by something other than an image (containers' rootfs).
    extra_roots: ExtraRoots,
    /// The pull of each reference that berth's Pull API joins, while it runs.
    pulls: std::sync::Mutex<HashMap<String, Arc<progress::PullTracker>>>,
}

/// Garbage-collection roots outside the image records.
pub type ExtraRoots = Box<dyn Fn() -> Vec<String> + Send + Sync>;

impl Images {
    /// Load records, drop whatever a crash left half-made, and collect garbage.
    pub async fn open(
        store: Arc<Store>,
        root: &Path,
        hosts_dir: &Path,
        config: ImageConfig,
        extra_roots: ExtraRoots,
    ) -> Result<Images, ImageError> {
        let snaps: Vec<SnapshotRecord> = store
            .load::<SnapshotRecord>(SNAPSHOTS)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let snapshots =
            Snapshotter::open(&root.join("snapshots"), snaps).context("opening snapshots")?;
        let content = ContentStore::open(root).context("opening the content store")?;
        let mut index = Index::default();
        for (_, rec) in store.load::<ImageRecord>(IMAGES)? {
            index.insert(rec);
        }
        let images = Images {
            store,
            content,
            snapshots,
            hosts_dir: hosts_dir.to_path_buf(),
            config,
            index: RwLock::new(index),
            commit_lock: tokio::sync::Mutex::new(()),
            gc_lock: tokio::sync::RwLock::new(()),
            inflight: std::sync::Mutex::new(HashMap::new()),
            extra_roots,
            pulls: std::sync::Mutex::new(HashMap::new()),
        };
        images.gc().await?;
        Ok(images)
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every image, sorted by id.
    pub fn list(&self) -> Vec<ImageRecord> {
        let mut v: Vec<_> = self.index().images.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Find an image by id (full or unique prefix), tag or digest reference.
    pub fn resolve(&self, s: &str) -> Option<ImageRecord> {
        let index = self.index();
        if looks_like_id(s) {
            let id = if s.starts_with("sha256:") {
                s.to_string()
            } else {
                format!("sha256:{s}")
            };
            if let Some(r) = index.images.get(&id) {
                return Some(r.clone());
            }
        }
        if let Ok(r) = ImageRef::parse(s)
            && let Some(id) = index.names.get(&r.to_string())
        {
            return index.images.get(id).cloned();
        }
        // A unique id prefix, as crictl's short ids.
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut found = index
            .images
            .values()
            .filter(|r| r.id["sha256:".len()..].starts_with(hex));
        match (found.next(), found.next()) {
            (Some(r), None) => Some(r.clone()),
            _ => None,
        }
    }

    /// Remove by id or digest (the whole image) or by tag (only that tag while others remain).
    /// An absent image is not an error.
    pub async fn remove(&self, s: &str) -> Result<(), ImageError> {
        {
            let _c = self.commit_lock.lock().await;
            let Some(rec) = self.resolve(s) else {
                return Ok(());
            };
            let tag = ImageRef::parse(s)
                .ok()
                .filter(|r| r.tag().is_some())
                .map(|r| r.to_string())
                .filter(|t| rec.repo_tags.contains(t));
            match tag {
                Some(tag) if rec.repo_tags.len() > 1 => {
                    let mut updated = rec.clone();
                    updated.repo_tags.retain(|t| t != &tag);
                    self.store
                        .apply(vec![Change::put(IMAGES, &updated.id, &updated)?])?;
                    let mut index = self.index_mut();
                    index.names.remove(&tag);
                    index.images.insert(updated.id.clone(), updated);
                    return Ok(());
                }
                _ => {
                    self.store.apply(vec![Change::delete(IMAGES, &rec.id)])?;
                    self.index_mut().remove(&rec.id);
                    tracing::info!(image = %rec.id, "image removed");
                }
            }
        }
        self.gc().await
    }

    /// Remove snapshots and blobs no image uses.
    pub async fn gc(&self) -> Result<(), ImageError> {
        let _g = self.gc_lock.write().await;
        let (live_chains, live_blobs) = {
            let index = self.index();
            let mut chains = HashSet::new();
            let mut blobs = HashSet::new();
            for r in index.images.values() {
                chains.extend(r.layers.iter().cloned());
                blobs.extend(r.blobs.iter().cloned());
            }
            chains.extend((self.extra_roots)());
            (chains, blobs)
        };
        let dead: Vec<SnapshotRecord> = self
            .snapshots
            .all()
            .into_iter()
            .filter(|s| !live_chains.contains(&s.chain_id))
            .collect();
        if !dead.is_empty() {
            self.store.apply(
                dead.iter()
                    .map(|s| Change::delete(SNAPSHOTS, &s.chain_id))
                    .collect(),
            )?;
        }
        for s in &dead {
            self.snapshots.forget(&s.chain_id);
        }
        let blobs = self.content.list().context("listing the content store")?;
        let dead_blobs: Vec<String> = blobs
            .into_iter()
            .filter(|b| !live_blobs.contains(b))
            .collect();
        if dead.is_empty() && dead_blobs.is_empty() {
            return Ok(());
        }
        tracing::debug!(
            snapshots = dead.len(),
            blobs = dead_blobs.len(),
            "garbage collecting"
        );
        let dirs: Vec<u64> = dead.iter().map(|s| s.id).collect();
        let snapshots_dir = self.snapshots.dir().to_path_buf();
        let content_paths: Vec<PathBuf> = dead_blobs.iter().map(|d| self.content.path(d)).collect();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            for id in dirs {
                crate::snapshot::remove_tree(&snapshots_dir.join(id.to_string()))?;
            }
            for p in content_paths {
                crate::snapshot::remove_tree(&p)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| ImageError::Internal(format!("garbage collection task: {e}")))?
        .map_err(|source| ImageError::Io(IoError::new("garbage collection", source)))
    }

    /// The filesystem holding image layers, with the bytes and inodes they use.
    pub fn fs_usage(&self) -> (PathBuf, u64, u64) {
        let (bytes, inodes) = self.snapshots.usage();
        (self.snapshots.dir().to_path_buf(), bytes, inodes)
    }

    /// The stored image config of an image, as JSON bytes.
    pub fn config_json(&self, id: &str) -> Result<Vec<u8>, ImageError> {
        self.content.read(id).map_err(|source| {
            ImageError::Io(IoError::new(
                format!("reading the config of image {id}"),
                source,
            ))
        })
    }
}
