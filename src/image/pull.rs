//! PullImage: resolve the reference on the configured hosts, pick the host platform from an
//! index, then download every layer in parallel, each one decompressed, verified and unpacked
//! while it streams.

use crate::error::{DomainError, IoContext, IoError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::hosts::{RegistryHost, resolve_hosts};
use super::progress::{LayerState, PullFailure, PullTracker};
use super::reference::{ImageRef, validate_digest};
use super::{ImageError, ImageRecord, Images};
use crate::metrics;
use crate::snapshot::SnapshotRecord;
use crate::snapshot::apply::{ApplyError, Chunk, apply_layer};
use crate::store::{Change, IMAGES, SNAPSHOTS};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
const CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// Image configs are small; a larger one is hostile.
const MAX_CONFIG_BYTES: i64 = 16 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<DescriptorJson>,
    layers: Option<Vec<DescriptorJson>>,
    manifests: Option<Vec<IndexEntryJson>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson {
    media_type: String,
    digest: String,
    size: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntryJson {
    #[serde(default)]
    media_type: String,
    digest: String,
    platform: Option<PlatformJson>,
}

#[derive(Debug, Deserialize)]
struct PlatformJson {
    os: String,
    architecture: String,
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigJson {
    config: Option<ConfigInner>,
    rootfs: RootFsJson,
}

#[derive(Debug, Deserialize)]
struct ConfigInner {
    #[serde(rename = "User", default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RootFsJson {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

/// One registry endpoint with a client set up for it.
struct Remote {
    client: Client,
    reference: Reference,
    host: RegistryHost,
    auth: RegistryAuth,
}

/// Where one layer of an image goes: its uncompressed digest, its snapshot and that
/// snapshot's parent.
struct LayerTarget<'a> {
    diff_id: &'a str,
    chain_id: &'a str,
    parent: Option<String>,
}

/// What a pull fetched, before its record is committed.
struct Fetched {
    id: String,
    top_digest: String,
    size: u64,
    layers: Vec<String>,
    blobs: Vec<String>,
    user: String,
}

/// The pull's parsing of the registry's documents (a manifest or an index, with the platform
/// choice; an image config), on untrusted bytes: what `make fuzz` drives. Never panics.
pub fn parse_documents(top: &[u8], config: &[u8]) -> (bool, bool) {
    let manifest = serde_json::from_slice::<ManifestJson>(top)
        .ok()
        .inspect(|m| {
            if let Some(entries) = &m.manifests {
                let _ = pick_platform(entries);
            }
        });
    let config = serde_json::from_slice::<ConfigJson>(config).ok();
    (manifest.is_some(), config.is_some())
}

/// The OCI architecture name of this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl Images {
    /// Pull `reference` and return the image id. The pull runs to its end even if the caller
    /// goes away, so a cancelled request never leaves half-made state.
    pub async fn pull(
        self: &Arc<Self>,
        reference: &str,
        auth: RegistryAuth,
    ) -> Result<String, ImageError> {
        let r = ImageRef::parse(reference)?;
        let task = {
            let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
            self.start_pull(&mut pulls, r, auth).1
        };
        task.await
            .map_err(|e| ImageError::Internal(format!("pull task failed: {e}")))?
    }

    /// Pull `reference` as [`Images::pull`] does, or join the pull of the same reference that
    /// is running (whoever started it), and return that pull's progress. The pull runs to its
    /// end whatever the caller does.
    pub fn pull_with_progress(
        self: &Arc<Self>,
        reference: &str,
        auth: RegistryAuth,
    ) -> Result<Arc<PullTracker>, ImageError> {
        let r = ImageRef::parse(reference)?;
        let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = pulls.get(&r.to_string()) {
            return Ok(running.clone());
        }
        let (tracker, _task) = self.start_pull(&mut pulls, r, auth);
        Ok(tracker)
    }

    /// Start a pull with its tracker, which later callers join unless another pull of the same
    /// reference is already the one they join.
    fn start_pull(
        self: &Arc<Self>,
        pulls: &mut HashMap<String, Arc<PullTracker>>,
        r: ImageRef,
        auth: RegistryAuth,
    ) -> (
        Arc<PullTracker>,
        tokio::task::JoinHandle<Result<String, ImageError>>,
    ) {
        let key = r.to_string();
        let tracker = PullTracker::new(key.clone());
        pulls.entry(key).or_insert_with(|| tracker.clone());
        let this = self.clone();
        let t = tracker.clone();
        let task = tokio::spawn(async move {
            let result = this.pull_ref(&r, auth, &t).await;
            t.finish(match &result {
                Ok(id) => Ok(id.clone()),
                Err(e) => Err(PullFailure {
                    kind: e.kind(),
                    message: e.to_string(),
                }),
            });
            let mut pulls = this.pulls.lock().unwrap_or_else(|e| e.into_inner());
            if pulls
                .get(&r.to_string())
                .is_some_and(|p| Arc::ptr_eq(p, &t))
            {
                pulls.remove(&r.to_string());
            }
            result
        });
        (tracker, task)
    }

    async fn pull_ref(
        &self,
        r: &ImageRef,
        auth: RegistryAuth,
        tracker: &PullTracker,
    ) -> Result<String, ImageError> {
        let r = r.clone();
        let started = Instant::now();
        let gc_guard = self.gc_lock.read().await;
        let fetched = self.fetch(&r, &auth, tracker).await;
        let result = match fetched {
            Ok(f) => self.commit_image(&r, f).await,
            Err(e) => Err(e),
        };
        drop(gc_guard);
        match &result {
            Ok(id) => {
                metrics::get()
                    .pull_duration
                    .with_label_values(&["ok"])
                    .observe(started.elapsed().as_secs_f64());
                tracing::info!(image = %r, id = %id, elapsed_ms = started.elapsed().as_millis() as u64, "image pulled");
            }
            Err(e) => {
                metrics::get()
                    .pull_duration
                    .with_label_values(&["error"])
                    .observe(started.elapsed().as_secs_f64());
                tracing::warn!(image = %r, error = %e, "pull failed");
                // Layers this pull committed belong to no image: drop them now.
                if let Err(g) = self.gc().await {
                    tracing::warn!(error = %g, "cleanup after a failed pull");
                }
            }
        }
        result
    }

    async fn fetch(
        &self,
        r: &ImageRef,
        auth: &RegistryAuth,
        tracker: &PullTracker,
    ) -> Result<Fetched, ImageError> {
        let image = r.to_string();
        let hosts = resolve_hosts(&self.hosts_dir, r.registry())?;
        let mut last_err = None;
        let mut found = None;
        for host in hosts {
            if !host.resolve && r.digest().is_none() {
                continue;
            }
            let remote = match self.remote(r, host, auth) {
                Ok(remote) => remote,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            match remote
                .client
                .pull_manifest_raw(&remote.reference, auth, ACCEPT)
                .await
            {
                Ok((bytes, digest)) => {
                    found = Some((remote, bytes, digest));
                    break;
                }
                Err(e) => {
                    let e = classify(e, &image, &remote);
                    tracing::debug!(host = %remote.host.url(), error = %e, "resolve failed on host");
                    last_err = Some(e);
                }
            }
        }
        let Some((remote, top_bytes, top_digest)) = found else {
            return Err(last_err.unwrap_or_else(|| ImageError::NotFound {
                image: image.clone(),
                cause: "no registry host is configured to resolve it".into(),
            }));
        };
        let invalid = |cause: String| ImageError::InvalidImage {
            image: image.clone(),
            cause,
        };
        let top: ManifestJson = serde_json::from_slice(&top_bytes)
            .map_err(|e| invalid(format!("manifest {top_digest} is not valid JSON: {e}")))?;
        let mut blobs = vec![top_digest.clone()];
        let manifest_bytes_and_digest = if let Some(entries) = &top.manifests {
            let child = pick_platform(entries).ok_or_else(|| ImageError::NotFound {
                image: image.clone(),
                cause: format!(
                    "no manifest for linux/{} in index {top_digest}",
                    host_arch()
                ),
            })?;
            validate_digest(&child.digest).map_err(&invalid)?;
            let child_ref = remote.reference.clone_with_digest(child.digest.clone());
            let (bytes, digest) = remote
                .client
                .pull_manifest_raw(&child_ref, auth, ACCEPT)
                .await
                .map_err(|e| classify(e, &image, &remote))?;
            blobs.push(digest.clone());
            (bytes, digest)
        } else {
            (top_bytes.clone(), top_digest.clone())
        };
        let (manifest_bytes, manifest_digest) = manifest_bytes_and_digest;
        let manifest: ManifestJson = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| invalid(format!("manifest {manifest_digest} is not valid JSON: {e}")))?;
        if manifest.schema_version == Some(1) {
            return Err(invalid(
                "Docker schema 1 manifests are not supported".into(),
            ));
        }
        if let Some(mt) = &manifest.media_type
            && mt != OCI_MANIFEST
            && mt != DOCKER_MANIFEST
        {
            return Err(invalid(format!("unsupported manifest media type {mt}")));
        }
        let (Some(config_desc), Some(layers)) = (manifest.config, manifest.layers) else {
            return Err(invalid(format!(
                "manifest {manifest_digest} has no config or layers"
            )));
        };
        if !CONFIG_TYPES.contains(&config_desc.media_type.as_str()) {
            return Err(invalid(format!(
                "config media type {} is not a container image",
                config_desc.media_type
            )));
        }
        validate_digest(&config_desc.digest).map_err(&invalid)?;
        if !(0..=MAX_CONFIG_BYTES).contains(&config_desc.size) {
            return Err(invalid(format!(
                "config size {} is out of range",
                config_desc.size
            )));
        }
        for l in &layers {
            validate_digest(&l.digest).map_err(&invalid)?;
            if l.size < 0 {
                return Err(invalid(format!("layer {} has a negative size", l.digest)));
            }
            if !l.media_type.contains("tar") {
                return Err(invalid(format!(
                    "layer {} has media type {}, not a filesystem layer",
                    l.digest, l.media_type
                )));
            }
        }
        tracker.set_layers(layers.iter().map(|l| (l.digest.clone(), l.size as u64)));
        let config_bytes = self
            .fetch_config(&remote, &config_desc, &image, tracker)
            .await?;
        let config: ConfigJson = serde_json::from_slice(&config_bytes).map_err(|e| {
            invalid(format!(
                "config {} is not an image config: {e}",
                config_desc.digest
            ))
        })?;
        if config.rootfs.kind != "layers" {
            return Err(invalid(format!(
                "rootfs type {:?} is not \"layers\"",
                config.rootfs.kind
            )));
        }
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(invalid(format!(
                "the config lists {} diff ids for {} layers",
                config.rootfs.diff_ids.len(),
                layers.len()
            )));
        }
        for d in &config.rootfs.diff_ids {
            validate_digest(d).map_err(&invalid)?;
        }
        let chains = crate::snapshot::chain_ids(&config.rootfs.diff_ids);

        // Every layer at once (bounded), each one to its end, so no unpack is left running.
        let remote = &remote;
        let jobs: Vec<_> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let parent = i.checked_sub(1).map(|p| chains[p].clone());
                self.ensure_layer(
                    remote,
                    &image,
                    l,
                    LayerTarget {
                        diff_id: &config.rootfs.diff_ids[i],
                        chain_id: &chains[i],
                        parent,
                    },
                    (tracker, i),
                )
            })
            .collect();
        let results: Vec<Result<(), ImageError>> = futures_util::stream::iter(jobs)
            .buffer_unordered(self.config.max_concurrent_downloads)
            .collect()
            .await;
        for r in results {
            r?;
        }

        if top_digest != manifest_digest {
            self.content
                .write_verified(&top_digest, &top_bytes)
                .context(format!("storing index {top_digest}"))?;
        }
        self.content
            .write_verified(&manifest_digest, &manifest_bytes)
            .context(format!("storing manifest {manifest_digest}"))?;
        self.content
            .write_verified(&config_desc.digest, &config_bytes)
            .context(format!("storing config {}", config_desc.digest))?;
        blobs.push(config_desc.digest.clone());
        blobs.extend(layers.iter().map(|l| l.digest.clone()));
        // As containerd counts it: every blob of the image (index, manifest, config, layers).
        let manifests_size = if top_digest != manifest_digest {
            (top_bytes.len() + manifest_bytes.len()) as u64
        } else {
            manifest_bytes.len() as u64
        };
        let size = manifests_size
            + config_desc.size as u64
            + layers.iter().map(|l| l.size as u64).sum::<u64>();
        metrics::get().pull_bytes.inc_by(size);
        metrics::get().pull_size.observe(size as f64);
        Ok(Fetched {
            id: config_desc.digest,
            top_digest,
            size,
            layers: chains,
            blobs,
            user: config.config.and_then(|c| c.user).unwrap_or_default(),
        })
    }

    fn remote(
        &self,
        r: &ImageRef,
        host: RegistryHost,
        auth: &RegistryAuth,
    ) -> Result<Remote, ImageError> {
        let mut certs = Vec::new();
        for f in &host.ca_files {
            let data = std::fs::read(f).context(format!(
                "reading CA file {} for {}",
                f.display(),
                host.url()
            ))?;
            certs.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let config = ClientConfig {
            protocol: if host.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: host.skip_verify,
            extra_root_certificates: certs,
            platform_resolver: None,
            max_concurrent_download: self.config.max_concurrent_downloads,
            read_timeout: Some(Duration::from_secs(self.config.read_timeout_secs)),
            connect_timeout: Some(Duration::from_secs(10)),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let mut reference = r.oci().clone();
        let upstream = if r.registry() == "docker.io" {
            "index.docker.io"
        } else {
            r.registry()
        };
        if host.host != upstream {
            reference.set_mirror_registry(host.host.clone());
        }
        Ok(Remote {
            client: Client::new(config),
            reference,
            host,
            auth: auth.clone(),
        })
    }

    async fn fetch_config(
        &self,
        remote: &Remote,
        desc: &DescriptorJson,
        image: &str,
        tracker: &PullTracker,
    ) -> Result<Vec<u8>, ImageError> {
        if let Ok(bytes) = self.content.read(&desc.digest) {
            return Ok(bytes);
        }
        tracker.config_downloaded();
        let mut out = Vec::with_capacity(desc.size as usize);
        remote
            .client
            .pull_blob(&remote.reference, desc.digest.as_str(), &mut out)
            .await
            .map_err(|e| classify(e, image, remote))?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&out)));
        if actual != desc.digest {
            return Err(ImageError::DigestMismatch {
                image: image.to_string(),
                cause: format!("config {} hashes to {actual}", desc.digest),
            });
        }
        Ok(out)
    }

    fn layer_lock(&self, chain_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(chain_id.to_string()).or_default().clone()
    }

    fn layer_unlock(&self, chain_id: &str) {
        let mut m = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(chain_id).is_some_and(|l| Arc::strong_count(l) == 1) {
            m.remove(chain_id);
        }
    }

    /// Make sure the snapshot for `chain_id` exists, downloading and unpacking it if needed.
    async fn ensure_layer(
        &self,
        remote: &Remote,
        image: &str,
        layer: &DescriptorJson,
        target: LayerTarget<'_>,
        progress: (&PullTracker, usize),
    ) -> Result<(), ImageError> {
        let (tracker, index) = progress;
        let chain_id = target.chain_id;
        if self.snapshots.get(chain_id).is_some() {
            tracker.layer_state(index, LayerState::AlreadyPresent);
            return Ok(());
        }
        let lock = self.layer_lock(chain_id);
        let result = {
            let _held = lock.lock().await;
            if self.snapshots.get(chain_id).is_some() {
                // Another pull downloaded it while this one waited.
                tracker.layer_state(index, LayerState::Done);
                Ok(())
            } else {
                self.download_layer(remote, image, layer, target, progress)
                    .await
            }
        };
        drop(lock);
        self.layer_unlock(chain_id);
        result
    }

    async fn download_layer(
        &self,
        remote: &Remote,
        image: &str,
        layer: &DescriptorJson,
        target: LayerTarget<'_>,
        progress: (&PullTracker, usize),
    ) -> Result<(), ImageError> {
        let (tracker, index) = progress;
        let LayerTarget {
            diff_id,
            chain_id,
            parent,
        } = target;
        let started = Instant::now();
        let (id, fs) = self
            .snapshots
            .allocate()
            .context("creating a snapshot directory")?;
        let ingest = self.content.ingest_path();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let worker = {
            let (ingest, fs, diff_id) = (ingest.clone(), fs.clone(), diff_id.to_string());
            let limits = self.config.layer_limits();
            tokio::task::spawn_blocking(move || apply_layer(rx, &ingest, &fs, &diff_id, limits))
        };
        let downloaded = self.stream_layer(remote, image, layer, tx, progress).await;
        if downloaded.is_ok() {
            tracker.layer_state(index, LayerState::Extracting);
        }
        let applied = worker
            .await
            .map_err(|e| ImageError::Internal(format!("unpack task failed: {e}")));
        let outcome = match (downloaded, applied) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(Err(e))) => Err(apply_error(e, image, &layer.digest)),
            (Ok(()), Ok(Ok(applied))) => {
                let rec = SnapshotRecord {
                    chain_id: chain_id.to_string(),
                    id,
                    parent,
                    diff_id: applied.diff_id,
                    bytes: applied.stats.bytes,
                    inodes: applied.stats.inodes,
                };
                self.content
                    .commit(&ingest, &layer.digest)
                    .map_err(|source| {
                        ImageError::Io(IoError::new(
                            format!("storing layer {}", layer.digest),
                            source,
                        ))
                    })
                    .and_then(|()| {
                        Ok(self
                            .store
                            .apply(vec![Change::put(SNAPSHOTS, chain_id, &rec)?])?)
                    })
                    .map(|()| self.snapshots.insert(rec))
            }
        };
        if outcome.is_err() {
            let _ = std::fs::remove_file(&ingest);
            if let Err(e) = self.snapshots.remove_dir(id) {
                tracing::warn!(snapshot = id, error = %e, "removing a failed unpack");
            }
        } else {
            tracker.layer_state(index, LayerState::Done);
            metrics::get()
                .unpack_duration
                .observe(started.elapsed().as_secs_f64());
        }
        outcome
    }

    /// Stream one blob into the unpack worker; the worker learns of any failure in-band.
    async fn stream_layer(
        &self,
        remote: &Remote,
        image: &str,
        layer: &DescriptorJson,
        tx: tokio::sync::mpsc::Sender<Chunk>,
        progress: (&PullTracker, usize),
    ) -> Result<(), ImageError> {
        let (tracker, index) = progress;
        let fail = |e: ImageError| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Chunk::Failed(e.to_string())).await;
                Err(e)
            }
        };
        let mut stream = match remote
            .client
            .pull_blob_stream(&remote.reference, layer.digest.as_str())
            .await
        {
            Ok(s) => s,
            Err(e) => return fail(classify(e, image, remote)).await,
        };
        tracker.layer_state(index, LayerState::Downloading);
        let expected = layer.size as u64;
        let mut received = 0u64;
        while let Some(item) = stream.next().await {
            match item {
                Ok(bytes) => {
                    received += bytes.len() as u64;
                    tracker.layer_bytes(index, received.min(expected));
                    if received > expected {
                        return fail(ImageError::DigestMismatch {
                            image: image.to_string(),
                            cause: format!(
                                "layer {} is larger than its declared {expected} bytes",
                                layer.digest
                            ),
                        })
                        .await;
                    }
                    if tx.send(Chunk::Data(bytes)).await.is_err() {
                        // The worker stopped (unsafe layer): its error is the one to report.
                        return Ok(());
                    }
                }
                Err(e) => {
                    let err = if e
                        .get_ref()
                        .and_then(|i| i.downcast_ref::<DigestError>())
                        .is_some()
                    {
                        ImageError::DigestMismatch {
                            image: image.to_string(),
                            cause: format!("layer {}: {e}", layer.digest),
                        }
                    } else {
                        ImageError::Unavailable {
                            image: image.to_string(),
                            cause: format!("downloading layer {}: {e}", layer.digest),
                        }
                    };
                    return fail(err).await;
                }
            }
        }
        if received != expected {
            return fail(ImageError::DigestMismatch {
                image: image.to_string(),
                cause: format!(
                    "layer {} has {received} bytes, its descriptor says {expected}",
                    layer.digest
                ),
            })
            .await;
        }
        let _ = tx.send(Chunk::End).await;
        Ok(())
    }

    /// Record the image (or add names to an existing one); a tag moves from any other image.
    async fn commit_image(&self, r: &ImageRef, f: Fetched) -> Result<String, ImageError> {
        let _c = self.commit_lock.lock().await;
        let tag = r.tag().map(|_| r.to_string());
        let repo_digest = r.repo_digest(&f.top_digest);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let (mut rec, previous_owner) = {
            let index = self.index();
            let rec = index.images.get(&f.id).cloned().unwrap_or(ImageRecord {
                id: f.id.clone(),
                repo_tags: Vec::new(),
                repo_digests: Vec::new(),
                size: f.size,
                layers: f.layers.clone(),
                blobs: Vec::new(),
                user: f.user.clone(),
                pulled_at: now,
            });
            let prev = tag
                .as_ref()
                .and_then(|t| index.names.get(t))
                .filter(|owner| **owner != f.id)
                .and_then(|owner| index.images.get(owner).cloned());
            (rec, prev)
        };
        if let Some(t) = &tag
            && !rec.repo_tags.contains(t)
        {
            rec.repo_tags.push(t.clone());
        }
        if !rec.repo_digests.contains(&repo_digest) {
            rec.repo_digests.push(repo_digest);
        }
        for b in f.blobs {
            if !rec.blobs.contains(&b) {
                rec.blobs.push(b);
            }
        }
        let mut changes = vec![Change::put(IMAGES, &rec.id, &rec)?];
        let previous_owner = previous_owner.map(|mut old| {
            old.repo_tags.retain(|t| Some(t) != tag.as_ref());
            old
        });
        if let Some(old) = &previous_owner {
            changes.push(Change::put(IMAGES, &old.id, old)?);
        }
        self.store.apply(changes)?;
        let mut index = self.index_mut();
        if let Some(old) = previous_owner {
            index.images.insert(old.id.clone(), old);
        }
        let id = rec.id.clone();
        index.insert(rec);
        Ok(id)
    }
}

fn pick_platform(entries: &[IndexEntryJson]) -> Option<&IndexEntryJson> {
    let arch = host_arch();
    let matching = entries.iter().filter(|e| {
        e.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            && (e.media_type.is_empty()
                || e.media_type == OCI_MANIFEST
                || e.media_type == DOCKER_MANIFEST)
    });
    // On arm64 prefer the v8 variant (or none); elsewhere variants do not occur.
    let mut best = None;
    for e in matching {
        let variant = e.platform.as_ref().and_then(|p| p.variant.as_deref());
        if variant.is_none() || variant == Some("v8") {
            return Some(e);
        }
        best.get_or_insert(e);
    }
    best
}

fn apply_error(e: ApplyError, image: &str, layer: &str) -> ImageError {
    match e {
        ApplyError::Unsafe(u) => ImageError::UnsafeLayer {
            image: image.to_string(),
            layer: layer.to_string(),
            cause: u.to_string(),
        },
        ApplyError::DiffIdMismatch { .. } => ImageError::DigestMismatch {
            image: image.to_string(),
            cause: format!("layer {layer}: {e}"),
        },
        ApplyError::Download(why) => ImageError::Unavailable {
            image: image.to_string(),
            cause: format!("layer {layer}: {why}"),
        },
        ApplyError::Decompress(_) => ImageError::InvalidImage {
            image: image.to_string(),
            cause: format!("layer {layer}: {e}"),
        },
        ApplyError::Io { .. } => ImageError::Io(IoError::new(
            format!("unpacking layer {layer} of {image}"),
            std::io::Error::other(e.to_string()),
        )),
    }
}

/// Map a registry client error to what the CRI client should see.
fn classify(e: OciDistributionError, image: &str, remote: &Remote) -> ImageError {
    let image = image.to_string();
    let has_creds = remote.auth != RegistryAuth::Anonymous;
    let denied = |cause: String| {
        if has_creds {
            ImageError::PermissionDenied {
                image: image.clone(),
                cause,
            }
        } else {
            ImageError::Unauthenticated {
                image: image.clone(),
                cause,
            }
        }
    };
    let at = remote.host.url();
    match e {
        OciDistributionError::ImageManifestNotFoundError(m) => ImageError::NotFound {
            image,
            cause: format!("{at}: {m}"),
        },
        OciDistributionError::AuthenticationFailure(m) => denied(format!("{at}: {m}")),
        OciDistributionError::UnauthorizedError { url } => denied(format!("{url}: unauthorized")),
        OciDistributionError::ServerError {
            code: 404,
            url,
            message,
        } => ImageError::NotFound {
            image,
            cause: format!("{url}: {message}"),
        },
        OciDistributionError::ServerError {
            code: 401 | 403,
            url,
            message,
        } => denied(format!("{url}: {message}")),
        OciDistributionError::ServerError { code, url, message } if code >= 500 => {
            ImageError::Unavailable {
                image,
                cause: format!("{url}: HTTP {code}: {message}"),
            }
        }
        OciDistributionError::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let cause = format!("{url}: {envelope}");
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                ImageError::NotFound { image, cause }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                denied(cause)
            } else {
                ImageError::Registry { image, cause }
            }
        }
        OciDistributionError::RequestError(re) => ImageError::Unavailable {
            image,
            cause: format!("{at}: {}", error_chain(&re)),
        },
        OciDistributionError::DigestError(d) => ImageError::DigestMismatch {
            image,
            cause: format!("{at}: {d}"),
        },
        OciDistributionError::ManifestParsingError(m)
        | OciDistributionError::SpecViolationError(m) => ImageError::InvalidImage {
            image,
            cause: format!("{at}: {m}"),
        },
        other => ImageError::Registry {
            image,
            cause: format!("{at}: {other}"),
        },
    }
}

/// An error with its sources, so "connection refused" is not hidden behind "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, d: &str) -> IndexEntryJson {
        IndexEntryJson {
            media_type: OCI_MANIFEST.into(),
            digest: d.into(),
            platform: Some(PlatformJson {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    #[test]
    fn platform_choice() {
        let arch = host_arch();
        let entries = vec![
            entry("linux", "s390x", None, "a"),
            entry("windows", arch, None, "b"),
            entry("linux", arch, None, "c"),
        ];
        assert_eq!(
            pick_platform(&entries).map(|e| e.digest.as_str()),
            Some("c")
        );
        assert!(pick_platform(&entries[..2]).is_none());
    }
}
