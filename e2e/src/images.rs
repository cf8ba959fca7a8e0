//! OCI test images built by our own code (from Debian's busybox-static) and pushed
//! to a [`Registry`] with oci-client.
//!
//! Everything is deterministic: fixed mtimes, uid/gid 0 unless asked otherwise, empty
//! uname/gname, entries sorted by path (unless a hostile layer needs a given order),
//! gzip with mtime 0, single-threaded zstd, seeded pseudo-random data. Digests are
//! therefore stable across runs of the same build on the same machine (they depend on
//! the bytes of `/bin/busybox` and on the flate2/zstd/serde_json builds, so never
//! hard-code them in tests: use the returned [`PushedImage`]s).
//!
//! Tars are written header by header (ustar + PAX `x` headers), not through
//! `tar::Builder`'s path helpers, so names are exactly what the [`Entry`] says:
//! `..` and absolute names can be produced with [`Entry::raw`].

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::http::install_crypto_provider;
use crate::registry::Registry;

/// Source of the busybox binary (Debian package busybox-static).
pub const BUSYBOX_BIN: &str = "/bin/busybox";
/// mtime of every tar entry: 2024-01-01T00:00:00Z.
pub const FIXED_MTIME: u64 = 1_704_067_200;
/// `created` of every image config and history entry.
pub const CREATED: &str = "2024-01-01T00:00:00Z";
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// An `Accept` header value listing every manifest type above. distribution 2.8 answers
/// a GET of an OCI manifest/index with 404 MANIFEST_UNKNOWN unless the OCI type is
/// accepted, so always send this (or the specific type).
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The OCI architecture name of the machine running the tests (`amd64`, `arm64`, ...).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

// ---------------------------------------------------------------------------
// Layer entries and tar writing
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File(Vec<u8>),
    /// Target stored verbatim.
    Symlink(String),
    /// Target is an archive path (leading `/` stripped unless [`Entry::raw`]).
    Hardlink(String),
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One tar entry. Build with the constructors, refine with the `owner`, `xattr`,
/// `mtime`, `raw` methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path in the archive. Unless `raw`: a leading `/` is stripped and directories get
    /// a trailing `/`.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits incl. setuid/setgid/sticky (`0o4755`, `0o1777`, ...).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Written as PAX records `SCHILY.xattr.<name>=<value>`.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Write `path` (and a hardlink target) byte for byte, e.g. `../escape`, `/abs`.
    pub raw: bool,
}

impl Entry {
    fn new(path: &str, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: FIXED_MTIME,
            xattrs: Vec::new(),
            raw: false,
        }
    }
    pub fn dir(path: &str, mode: u32) -> Entry {
        Entry::new(path, EntryKind::Dir, mode)
    }
    pub fn file(path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Entry {
        Entry::new(path, EntryKind::File(data.into()), mode)
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::new(path, EntryKind::Symlink(target.to_string()), 0o777)
    }
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry::new(path, EntryKind::Hardlink(target.to_string()), 0o644)
    }
    pub fn char_dev(path: &str, major: u32, minor: u32, mode: u32) -> Entry {
        Entry::new(path, EntryKind::CharDev { major, minor }, mode)
    }
    pub fn block_dev(path: &str, major: u32, minor: u32, mode: u32) -> Entry {
        Entry::new(path, EntryKind::BlockDev { major, minor }, mode)
    }
    pub fn fifo(path: &str, mode: u32) -> Entry {
        Entry::new(path, EntryKind::Fifo, mode)
    }
    /// AUFS/OCI whiteout deleting `path` from lower layers: `<dir>/.wh.<name>`.
    pub fn whiteout(path: &str) -> Entry {
        let path = path.trim_end_matches('/');
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        Entry::file(&format!("{dir}.wh.{name}"), Vec::new(), 0o644)
    }
    /// Opaque-directory marker `<dir>/.wh..wh..opq`.
    pub fn opaque(dir: &str) -> Entry {
        Entry::file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            Vec::new(),
            0o644,
        )
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn xattr(mut self, name: &str, value: impl Into<Vec<u8>>) -> Entry {
        self.xattrs.push((name.to_string(), value.into()));
        self
    }
    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }
    pub fn raw(mut self) -> Entry {
        self.raw = true;
        self
    }

    /// The name as written into the archive.
    pub fn archive_name(&self) -> String {
        if self.raw {
            return self.path.clone();
        }
        let mut p = self.path.trim_start_matches('/').to_string();
        if self.kind == EntryKind::Dir && !p.ends_with('/') {
            p.push('/');
        }
        p
    }

    fn link_name(&self) -> Option<String> {
        match &self.kind {
            EntryKind::Symlink(t) => Some(t.clone()),
            EntryKind::Hardlink(t) if self.raw => Some(t.clone()),
            EntryKind::Hardlink(t) => Some(t.trim_start_matches('/').to_string()),
            _ => None,
        }
    }
}

/// Largest value of an 8-byte ustar octal field (7 digits).
const USTAR_MAX_ID: u64 = 0o7777777;

/// Writes `entries` as a tar archive, in the given order.
pub fn build_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let name = e.archive_name();
        let link = e.link_name();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if name.len() > 100 {
            pax.push(("path".into(), name.as_bytes().to_vec()));
        }
        if let Some(l) = &link
            && l.len() > 100
        {
            pax.push(("linkpath".into(), l.as_bytes().to_vec()));
        }
        if e.uid > USTAR_MAX_ID {
            pax.push(("uid".into(), e.uid.to_string().into_bytes()));
        }
        if e.gid > USTAR_MAX_ID {
            pax.push(("gid".into(), e.gid.to_string().into_bytes()));
        }
        for (k, v) in &e.xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        if !pax.is_empty() {
            let body = pax_records(&pax);
            let base = name.trim_end_matches('/');
            let base = base.rsplit('/').next().unwrap_or(base);
            let mut h = tar::Header::new_ustar();
            set_raw(
                &mut h.as_old_mut().name,
                format!("PaxHeaders/{base}").as_bytes(),
            );
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(e.mtime);
            h.set_size(body.len() as u64);
            h.set_cksum();
            b.append(&h, body.as_slice()).expect("append pax header");
        }

        let mut h = tar::Header::new_ustar();
        set_raw(&mut h.as_old_mut().name, name.as_bytes());
        if let Some(l) = &link {
            set_raw(&mut h.as_old_mut().linkname, l.as_bytes());
        }
        h.set_mode(e.mode);
        h.set_uid(e.uid.min(USTAR_MAX_ID));
        h.set_gid(e.gid.min(USTAR_MAX_ID));
        h.set_mtime(e.mtime);
        let (ty, data): (tar::EntryType, &[u8]) = match &e.kind {
            EntryKind::Dir => (tar::EntryType::Directory, &[]),
            EntryKind::File(d) => (tar::EntryType::Regular, d),
            EntryKind::Symlink(_) => (tar::EntryType::Symlink, &[]),
            EntryKind::Hardlink(_) => (tar::EntryType::Link, &[]),
            EntryKind::CharDev { .. } => (tar::EntryType::Char, &[]),
            EntryKind::BlockDev { .. } => (tar::EntryType::Block, &[]),
            EntryKind::Fifo => (tar::EntryType::Fifo, &[]),
        };
        h.set_entry_type(ty);
        if let EntryKind::CharDev { major, minor } | EntryKind::BlockDev { major, minor } = e.kind {
            h.set_device_major(major).expect("device major");
            h.set_device_minor(minor).expect("device minor");
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).expect("append tar entry");
    }
    b.into_inner().expect("finish tar")
}

/// Copies at most `slot.len()` bytes (PAX `path`/`linkpath` carry longer names).
fn set_raw(slot: &mut [u8], bytes: &[u8]) {
    let n = bytes.len().min(slot.len());
    slot[..n].copy_from_slice(&bytes[..n]);
}

/// PAX extended header records: `"<len> <key>=<value>\n"`, len counting itself.
fn pax_records(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

// ---------------------------------------------------------------------------
// Compressed layers
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip, level 6, header mtime 0.
    Gzip,
    /// gzip level 1: for large incompressible data, where level 6 buys nothing.
    GzipFast,
    /// gzip level 0 (stored deflate blocks): the tar bytes appear verbatim inside the
    /// blob, which lets a test tamper with content and keep the gzip valid.
    GzipStored,
    /// zstd level 3, single-threaded, with content checksum.
    Zstd,
    /// Uncompressed tar.
    None,
}

impl Compression {
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::Gzip | Compression::GzipFast | Compression::GzipStored => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
            Compression::None => OCI_LAYER_TAR,
        }
    }

    pub fn is_gzip(self) -> bool {
        matches!(
            self,
            Compression::Gzip | Compression::GzipFast | Compression::GzipStored
        )
    }

    pub fn compress(self, tar: &[u8]) -> Vec<u8> {
        let gzip = |level: u32| {
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::new(level));
            enc.write_all(tar).expect("gzip");
            enc.finish().expect("gzip finish")
        };
        match self {
            Compression::Gzip => gzip(6),
            Compression::GzipFast => gzip(1),
            Compression::GzipStored => gzip(0),
            Compression::Zstd => {
                let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).expect("zstd");
                enc.include_checksum(true).expect("zstd checksum");
                enc.write_all(tar).expect("zstd write");
                enc.finish().expect("zstd finish")
            }
            Compression::None => tar.to_vec(),
        }
    }

    pub fn decompress(self, blob: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Compression::Gzip | Compression::GzipFast | Compression::GzipStored => {
                flate2::read::GzDecoder::new(blob).read_to_end(&mut out)?;
            }
            Compression::Zstd => {
                zstd::stream::Decoder::new(blob)?.read_to_end(&mut out)?;
            }
            Compression::None => out.extend_from_slice(blob),
        }
        Ok(out)
    }
}

/// A compressed layer blob with its digests.
#[derive(Clone, Debug)]
pub struct BuiltLayer {
    pub blob: Vec<u8>,
    pub compression: Compression,
    /// `sha256:` of `blob` (the layer digest in the manifest).
    pub digest: String,
    /// `sha256:` of the uncompressed tar (the diff_id in the config).
    pub diff_id: String,
    pub size: u64,
}

impl BuiltLayer {
    /// Entries sorted by archive name (a parent directory sorts before its children).
    pub fn from_entries(entries: &[Entry], compression: Compression) -> BuiltLayer {
        let mut sorted = entries.to_vec();
        sorted.sort_by_key(|e| e.archive_name());
        Self::from_entries_in_order(&sorted, compression)
    }

    /// Entries in exactly the given order (hostile layers).
    pub fn from_entries_in_order(entries: &[Entry], compression: Compression) -> BuiltLayer {
        Self::from_tar(&build_tar(entries), compression)
    }

    pub fn from_tar(tar: &[u8], compression: Compression) -> BuiltLayer {
        let blob = compression.compress(tar);
        BuiltLayer {
            digest: sha256_digest(&blob),
            diff_id: sha256_digest(tar),
            size: blob.len() as u64,
            blob,
            compression,
        }
    }

    /// The uncompressed tar.
    pub fn tar(&self) -> Vec<u8> {
        self.compression
            .decompress(&self.blob)
            .expect("decompress layer")
    }

    pub fn media_type(&self, flavour: ManifestFlavour) -> &'static str {
        match flavour {
            ManifestFlavour::Oci => self.compression.oci_media_type(),
            ManifestFlavour::DockerV2 => {
                assert!(
                    self.compression.is_gzip(),
                    "Docker schema2 layers must be gzip"
                );
                DOCKER_LAYER_GZIP
            }
        }
    }
}

/// A hostile layer whose tar opens with a PAX extended header announcing a 2 GiB record of
/// zeros: a gzip blob of a few MB (one member for the header, then the same member of 64 MiB of
/// zeros again and again). Its `diff_id` is not the tar's (hashing 2 GiB would only slow the
/// test): a runtime that read the record would fail on the diff id instead.
pub fn huge_pax_record_layer() -> BuiltLayer {
    const RECORD: u64 = 2 << 30;
    const CHUNK: usize = 64 << 20;
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_path("PaxHeaders/huge").expect("header path");
    header.set_mode(0o644);
    header.set_size(RECORD);
    header.set_cksum();
    let mut blob = Compression::Gzip.compress(header.as_bytes());
    let zeros = Compression::Gzip.compress(&vec![0u8; CHUNK]);
    // The record, its padding and the end-of-archive blocks are all zeros.
    for _ in 0..RECORD.div_ceil(CHUNK as u64) + 1 {
        blob.extend_from_slice(&zeros);
    }
    BuiltLayer {
        digest: sha256_digest(&blob),
        diff_id: sha256_digest(b"not the diff id of a 2 GiB tar"),
        size: blob.len() as u64,
        blob,
        compression: Compression::Gzip,
    }
}

/// Deterministic incompressible bytes (splitmix64 seeded from `seed`).
pub fn pseudo_random_bytes(seed: &str, len: usize) -> Vec<u8> {
    let h = Sha256::digest(seed.as_bytes());
    let mut state = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------
// Image config, manifests
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFlavour {
    /// `application/vnd.oci.image.manifest.v1+json` / `...index.v1+json`.
    Oci,
    /// Docker schema2 `application/vnd.docker.distribution.manifest.v2+json` /
    /// `...manifest.list.v2+json` (gzip layers only).
    DockerV2,
}

impl ManifestFlavour {
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ManifestFlavour::Oci => OCI_MANIFEST,
            ManifestFlavour::DockerV2 => DOCKER_MANIFEST,
        }
    }
    pub fn index_media_type(self) -> &'static str {
        match self {
            ManifestFlavour::Oci => OCI_INDEX,
            ManifestFlavour::DockerV2 => DOCKER_MANIFEST_LIST,
        }
    }
    pub fn config_media_type(self) -> &'static str {
        match self {
            ManifestFlavour::Oci => OCI_CONFIG,
            ManifestFlavour::DockerV2 => DOCKER_CONFIG,
        }
    }
}

/// The runtime part of the image config plus platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
}

impl Default for ImageConfig {
    /// Host architecture, linux, `Env [PATH=...]`, `Cmd ["sh"]`.
    fn default() -> Self {
        ImageConfig {
            architecture: host_arch().to_string(),
            os: "linux".to_string(),
            variant: None,
            env: vec![DEFAULT_PATH_ENV.to_string()],
            entrypoint: None,
            cmd: Some(vec!["sh".to_string()]),
            working_dir: None,
            user: None,
            labels: BTreeMap::new(),
            stop_signal: None,
        }
    }
}

impl ImageConfig {
    pub fn label(mut self, k: &str, v: &str) -> ImageConfig {
        self.labels.insert(k.to_string(), v.to_string());
        self
    }
}

/// Everything needed to push one image manifest.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub layers: Vec<BuiltLayer>,
    pub config: ImageConfig,
    pub flavour: ManifestFlavour,
    /// `(layer index, diff_id)`: write a wrong diff_id into the config (hostile images).
    pub diff_id_overrides: Vec<(usize, String)>,
}

impl ImageSpec {
    /// OCI flavour, no overrides.
    pub fn new(layers: Vec<BuiltLayer>, config: ImageConfig) -> ImageSpec {
        ImageSpec {
            layers,
            config,
            flavour: ManifestFlavour::Oci,
            diff_id_overrides: Vec::new(),
        }
    }

    /// diff_ids as written into the config (overrides applied).
    pub fn config_diff_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.layers.iter().map(|l| l.diff_id.clone()).collect();
        for (i, d) in &self.diff_id_overrides {
            ids[*i] = d.clone();
        }
        ids
    }

    pub fn config_json(&self) -> Vec<u8> {
        let c = &self.config;
        let mut rc = serde_json::Map::new();
        rc.insert("Env".into(), json!(c.env));
        if let Some(v) = &c.entrypoint {
            rc.insert("Entrypoint".into(), json!(v));
        }
        if let Some(v) = &c.cmd {
            rc.insert("Cmd".into(), json!(v));
        }
        if let Some(v) = &c.working_dir {
            rc.insert("WorkingDir".into(), json!(v));
        }
        if let Some(v) = &c.user {
            rc.insert("User".into(), json!(v));
        }
        if !c.labels.is_empty() {
            rc.insert("Labels".into(), json!(c.labels));
        }
        if let Some(v) = &c.stop_signal {
            rc.insert("StopSignal".into(), json!(v));
        }
        let history: Vec<serde_json::Value> = (0..self.layers.len())
            .map(|i| json!({"created": CREATED, "created_by": format!("berth-e2e layer {i}")}))
            .collect();
        let mut v = json!({
            "created": CREATED,
            "architecture": c.architecture,
            "os": c.os,
            "config": rc,
            "rootfs": {"type": "layers", "diff_ids": self.config_diff_ids()},
            "history": history,
        });
        if let Some(variant) = &c.variant {
            v["variant"] = json!(variant);
        }
        serde_json::to_vec(&v).expect("config json")
    }

    pub fn manifest_json(&self, config_digest: &str, config_size: u64) -> Vec<u8> {
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| {
                json!({
                    "mediaType": l.media_type(self.flavour),
                    "digest": l.digest,
                    "size": l.size,
                })
            })
            .collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": self.flavour.manifest_media_type(),
            "config": {
                "mediaType": self.flavour.config_media_type(),
                "digest": config_digest,
                "size": config_size,
            },
            "layers": layers,
        }))
        .expect("manifest json")
    }
}

/// A pushed image manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedImage {
    /// Registry host, e.g. `127.0.0.1:PORT`.
    pub registry: String,
    /// e.g. `busybox`, `library/busybox`.
    pub repository: String,
    /// e.g. `latest`. For the per-platform manifests of an index: the index's tag
    /// (the manifest itself is pushed by digest only).
    pub tag: String,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub manifest_size: u64,
    /// sha256 of the config blob = the CRI image id.
    pub config_digest: String,
    pub config_size: u64,
    pub layer_digests: Vec<String>,
    pub layer_media_types: Vec<String>,
    pub layer_sizes: Vec<u64>,
    /// diff_ids as in the config (what a runtime must verify against).
    pub diff_ids: Vec<String>,
    /// sha256 of each uncompressed tar (differs from `diff_ids` for `evil-diffid`).
    pub true_diff_ids: Vec<String>,
    /// Sum of the layer blob sizes.
    pub compressed_size: u64,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
}

impl PushedImage {
    /// `repository:tag`, e.g. `busybox:latest`.
    pub fn repo_tag(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
    /// `registry/repository:tag`, e.g. `127.0.0.1:PORT/busybox:latest`.
    pub fn reference(&self) -> String {
        format!("{}/{}:{}", self.registry, self.repository, self.tag)
    }
    /// `registry/repository@manifest_digest`.
    pub fn digest_reference(&self) -> String {
        format!(
            "{}/{}@{}",
            self.registry, self.repository, self.manifest_digest
        )
    }
    /// The CRI image id (config digest).
    pub fn image_id(&self) -> &str {
        &self.config_digest
    }
    /// Layers + config + manifest bytes.
    pub fn total_size(&self) -> u64 {
        self.compressed_size + self.config_size + self.manifest_size
    }
}

/// A pushed image index / manifest list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedIndex {
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// In index order.
    pub manifests: Vec<PushedImage>,
}

impl PushedIndex {
    pub fn repo_tag(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
    pub fn reference(&self) -> String {
        format!("{}/{}:{}", self.registry, self.repository, self.tag)
    }
    pub fn digest_reference(&self) -> String {
        format!("{}/{}@{}", self.registry, self.repository, self.digest)
    }
    /// The manifest for `arch` (linux). Panics if absent.
    pub fn for_arch(&self, arch: &str) -> &PushedImage {
        self.manifests
            .iter()
            .find(|m| m.architecture == arch && m.os == "linux")
            .unwrap_or_else(|| panic!("no {arch} manifest in {}", self.repo_tag()))
    }
    /// The manifest for the host architecture.
    pub fn for_host(&self) -> &PushedImage {
        self.for_arch(host_arch())
    }
}

fn split_repo_tag(repo_tag: &str) -> (&str, &str) {
    match repo_tag.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (repo_tag, "latest"),
    }
}

// ---------------------------------------------------------------------------
// Pushing
// ---------------------------------------------------------------------------

/// Pushes blobs and manifests with oci-client (plain HTTP, or HTTPS trusting a CA PEM;
/// Basic auth when given).
pub struct Pusher {
    /// Registry host (`IP:PORT`).
    pub addr: String,
    client: Client,
    /// digest -> repositories this pusher put it into.
    pushed: std::sync::Mutex<BTreeMap<String, std::collections::BTreeSet<String>>>,
}

impl Pusher {
    /// `auth`: `(user, password)` for Basic auth. `tls_ca`: PEM of a CA to trust; `None`
    /// means plain HTTP.
    pub fn new(addr: &str, auth: Option<(String, String)>, tls_ca: Option<&Path>) -> Pusher {
        install_crypto_provider();
        let mut config = ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        };
        if let Some(ca) = tls_ca {
            config.protocol = ClientProtocol::Https;
            config.extra_root_certificates = vec![Certificate {
                encoding: CertificateEncoding::Pem,
                data: std::fs::read(ca).expect("read CA PEM"),
            }];
        }
        let client = Client::new(config);
        if let Some((user, password)) = auth {
            // Only stored when there is something to send: with stored anonymous auth,
            // oci-client would re-probe GET /v2/ before every request.
            let auth = RegistryAuth::Basic(user, password);
            futures_block_on(client.store_auth_if_needed(addr, &auth));
        }
        Pusher {
            addr: addr.to_string(),
            client,
            pushed: Default::default(),
        }
    }

    /// Uses the registry's address, credentials and (if TLS) CA.
    pub fn for_registry(reg: &Registry) -> Pusher {
        Pusher::new(&reg.addr, reg.auth.clone(), reg.tls_ca.as_deref())
    }

    fn tag_ref(&self, repo: &str, tag: &str) -> Reference {
        Reference::with_tag(self.addr.clone(), repo.to_string(), tag.to_string())
    }

    fn digest_ref(&self, repo: &str, digest: &str) -> Reference {
        Reference::with_digest(self.addr.clone(), repo.to_string(), digest.to_string())
    }

    /// Uploads `data` to `repo` unless the registry already has it there. Returns the
    /// digest. Panics on failure.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        self.try_push_blob(repo, data)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Pusher::push_blob`] returning the error (e.g. for auth failure tests).
    ///
    /// A blob this `Pusher` already put into `repo` is skipped; one it put into another
    /// repository is cross-mounted from there (no re-upload); anything else is uploaded
    /// (chunked, 4 MiB PATCHes). No `HEAD` probe: distribution logs every 404 at error
    /// level, which would bury real problems in the registry's stderr.
    pub async fn try_push_blob(&self, repo: &str, data: &[u8]) -> Result<String, String> {
        let digest = sha256_digest(data);
        let known = self
            .pushed
            .lock()
            .expect("pushed lock")
            .get(&digest)
            .cloned();
        let r = self.tag_ref(repo, "latest");
        match known {
            Some(repos) if repos.contains(repo) => return Ok(digest),
            Some(repos) => {
                let from = repos.iter().next().expect("non-empty");
                self.client
                    .mount_blob(&r, &self.tag_ref(from, "latest"), &digest)
                    .await
                    .map_err(|e| format!("mount blob {digest} from {from} into {repo}: {e}"))?;
            }
            None => {
                self.client
                    .push_blob(&r, data.to_vec(), &digest)
                    .await
                    .map_err(|e| format!("push blob {digest} to {repo}: {e}"))?;
            }
        }
        self.pushed
            .lock()
            .expect("pushed lock")
            .entry(digest.clone())
            .or_default()
            .insert(repo.to_string());
        Ok(digest)
    }

    /// PUTs a manifest/index under `reference` (a tag, or a `sha256:` digest) with
    /// `Content-Type: media_type`. Returns the manifest digest.
    pub async fn push_manifest_bytes(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let r = if reference.starts_with("sha256:") {
            self.digest_ref(repo, reference)
        } else {
            self.tag_ref(repo, reference)
        };
        self.client
            .push_manifest_raw(
                &r,
                body.to_vec(),
                media_type.parse().expect("media type header"),
            )
            .await
            .unwrap_or_else(|e| panic!("push manifest {repo}:{reference}: {e}"));
        sha256_digest(body)
    }

    async fn push_image_at(
        &self,
        repo: &str,
        tag: &str,
        by_digest: bool,
        spec: &ImageSpec,
    ) -> PushedImage {
        for l in &spec.layers {
            self.push_blob(repo, &l.blob).await;
        }
        let config = spec.config_json();
        let config_digest = self.push_blob(repo, &config).await;
        let manifest = spec.manifest_json(&config_digest, config.len() as u64);
        let manifest_digest = sha256_digest(&manifest);
        let reference = if by_digest {
            manifest_digest.as_str()
        } else {
            tag
        };
        self.push_manifest_bytes(
            repo,
            reference,
            spec.flavour.manifest_media_type(),
            &manifest,
        )
        .await;
        PushedImage {
            registry: self.addr.clone(),
            repository: repo.to_string(),
            tag: tag.to_string(),
            manifest_digest,
            manifest_media_type: spec.flavour.manifest_media_type().to_string(),
            manifest_size: manifest.len() as u64,
            config_digest,
            config_size: config.len() as u64,
            layer_digests: spec.layers.iter().map(|l| l.digest.clone()).collect(),
            layer_media_types: spec
                .layers
                .iter()
                .map(|l| l.media_type(spec.flavour).to_string())
                .collect(),
            layer_sizes: spec.layers.iter().map(|l| l.size).collect(),
            diff_ids: spec.config_diff_ids(),
            true_diff_ids: spec.layers.iter().map(|l| l.diff_id.clone()).collect(),
            compressed_size: spec.layers.iter().map(|l| l.size).sum(),
            architecture: spec.config.architecture.clone(),
            os: spec.config.os.clone(),
            variant: spec.config.variant.clone(),
        }
    }

    /// Pushes layers, config and manifest; tags it `repo_tag` (`repo[:tag]`, default `latest`).
    pub async fn push_image(&self, repo_tag: &str, spec: &ImageSpec) -> PushedImage {
        let (repo, tag) = split_repo_tag(repo_tag);
        self.push_image_at(repo, tag, false, spec).await
    }

    /// Pushes each image by digest, then an index (OCI) / manifest list (Docker) with
    /// their platforms under `repo_tag`.
    pub async fn push_index(
        &self,
        repo_tag: &str,
        images: &[ImageSpec],
        flavour: ManifestFlavour,
    ) -> PushedIndex {
        let (repo, tag) = split_repo_tag(repo_tag);
        let mut manifests = Vec::new();
        let mut entries = Vec::new();
        for spec in images {
            let img = self.push_image_at(repo, tag, true, spec).await;
            let mut platform = json!({"architecture": img.architecture, "os": img.os});
            if let Some(v) = &img.variant {
                platform["variant"] = json!(v);
            }
            entries.push(json!({
                "mediaType": img.manifest_media_type,
                "digest": img.manifest_digest,
                "size": img.manifest_size,
                "platform": platform,
            }));
            manifests.push(img);
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": flavour.index_media_type(),
            "manifests": entries,
        }))
        .expect("index json");
        let digest = self
            .push_manifest_bytes(repo, tag, flavour.index_media_type(), &index)
            .await;
        PushedIndex {
            registry: self.addr.clone(),
            repository: repo.to_string(),
            tag: tag.to_string(),
            digest,
            media_type: flavour.index_media_type().to_string(),
            size: index.len() as u64,
            manifests,
        }
    }

    /// busybox base + `layers` gzip layers, each holding one file
    /// `/data/layer-<i>.bin` of `bytes_per_layer` pseudo-random bytes seeded by
    /// `repo_tag` and `i` (so different repo_tags never share data layers).
    pub async fn push_multilayer(
        &self,
        repo_tag: &str,
        layers: usize,
        bytes_per_layer: usize,
    ) -> PushedImage {
        let mut built = vec![busybox_layer().clone()];
        for i in 0..layers {
            let data = pseudo_random_bytes(&format!("{repo_tag}/{i}"), bytes_per_layer);
            built.push(BuiltLayer::from_entries(
                &[
                    Entry::dir("data", 0o755),
                    Entry::file(&format!("data/layer-{i}.bin"), data, 0o644),
                ],
                Compression::GzipFast,
            ));
        }
        let config = ImageConfig::default().label("org.berth.e2e.image", "multilayer");
        self.push_image(repo_tag, &ImageSpec::new(built, config))
            .await
    }
}

/// `store_auth_if_needed` is async only because of an internal RwLock that is
/// uncontended here; drive it to completion without needing a runtime.
fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

// ---------------------------------------------------------------------------
// The busybox base layer and the standard set
// ---------------------------------------------------------------------------

/// Applets linked to `/bin/busybox` in the base layer.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh",
    "ls",
    "cat",
    "echo",
    "id",
    "sleep",
    "true",
    "false",
    "env",
    "hostname",
    "mkdir",
    "touch",
    "rm",
    "stat",
    "readlink",
    "wc",
    "grep",
    "ps",
    "kill",
    "mount",
    "head",
    "tail",
    "test",
    "whoami",
    "date",
    "uname",
    "ln",
    "chmod",
    "cp",
    "mv",
    "find",
    "sed",
    "tee",
    "printf",
    "pwd",
    "mkfifo",
    "df",
    "du",
    "timeout",
    "nproc",
    "cut",
    "sort",
    "seq",
    "ip",
    "nc",
    "wget",
    "sha256sum",
    "setsid",
    "dd",
    "sync",
];

pub const ETC_PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
pub const ETC_GROUP: &str = "root:x:0:\napp:x:1000:\nextra:x:2000:app\n";

/// Entries of the busybox base layer.
pub fn busybox_layer_entries() -> Vec<Entry> {
    let busybox = std::fs::read(BUSYBOX_BIN)
        .unwrap_or_else(|e| panic!("read {BUSYBOX_BIN} (install busybox-static): {e}"));
    let mut entries = vec![
        Entry::dir("bin", 0o755),
        Entry::file("bin/busybox", busybox, 0o755),
        Entry::dir("dev", 0o755),
        Entry::dir("etc", 0o755),
        Entry::file("etc/passwd", ETC_PASSWD, 0o644),
        Entry::file("etc/group", ETC_GROUP, 0o644),
        Entry::dir("home", 0o755),
        Entry::dir("home/app", 0o755).owner(1000, 1000),
        Entry::dir("proc", 0o555),
        Entry::dir("root", 0o700),
        Entry::dir("sys", 0o555),
        Entry::dir("tmp", 0o1777),
    ];
    for a in BUSYBOX_APPLETS {
        entries.push(Entry::symlink(&format!("bin/{a}"), "busybox"));
    }
    entries
}

/// The busybox base layer (gzip), built once per process.
pub fn busybox_layer() -> &'static BuiltLayer {
    static LAYER: OnceLock<BuiltLayer> = OnceLock::new();
    LAYER.get_or_init(|| BuiltLayer::from_entries(&busybox_layer_entries(), Compression::Gzip))
}

fn small_layer(entries: &[Entry], c: Compression) -> BuiltLayer {
    BuiltLayer::from_entries(entries, c)
}

fn labelled(name: &str) -> ImageConfig {
    ImageConfig::default().label("org.berth.e2e.image", name)
}

/// Content of `/corrupt-data` in the pushed `corrupt` layer; the blob in storage is then
/// rewritten so that the file holds [`CORRUPT_TAMPERED`] instead.
pub const CORRUPT_ORIGINAL: &[u8] = b"ORIGINAL-CONTENT-berth-e2e-0123456789\n";
pub const CORRUPT_TAMPERED: &[u8] = b"TAMPERED-CONTENT-berth-e2e-0123456789\n";

/// Everything [`push_standard_set`] pushed (all tags are `latest`).
#[derive(Clone, Debug)]
pub struct StandardSet {
    pub busybox: PushedImage,
    pub library_busybox: PushedImage,
    pub user: PushedImage,
    pub multilayer: PushedImage,
    pub shared_a: PushedImage,
    pub shared_b: PushedImage,
    pub whiteout: PushedImage,
    pub zstd: PushedImage,
    pub plain: PushedImage,
    pub docker_v2: PushedImage,
    pub multiarch: PushedIndex,
    pub evil_dotdot: PushedImage,
    pub evil_abs: PushedImage,
    pub evil_symlink: PushedImage,
    pub evil_hardlink: PushedImage,
    pub evil_diffid: PushedImage,
    pub corrupt: PushedImage,
    /// Digest of the shared busybox base layer (gzip).
    pub base_layer_digest: String,
}

impl StandardSet {
    /// Every tagged image manifest (not the index or its per-platform manifests).
    pub fn images(&self) -> Vec<&PushedImage> {
        vec![
            &self.busybox,
            &self.library_busybox,
            &self.user,
            &self.multilayer,
            &self.shared_a,
            &self.shared_b,
            &self.whiteout,
            &self.zstd,
            &self.plain,
            &self.docker_v2,
            &self.evil_dotdot,
            &self.evil_abs,
            &self.evil_symlink,
            &self.evil_hardlink,
            &self.evil_diffid,
            &self.corrupt,
        ]
    }
}

/// Layers of `whiteout:latest` after the base: (lower, upper).
pub fn whiteout_layers() -> (BuiltLayer, BuiltLayer) {
    let lower = small_layer(
        &[
            Entry::dir("data", 0o755),
            Entry::file("data/a", "a\n", 0o644),
            Entry::file("data/b", "b\n", 0o644),
            Entry::dir("dir", 0o755),
            Entry::dir("dir/x", 0o755),
            Entry::file("dir/x/old", "old\n", 0o644),
        ],
        Compression::Gzip,
    );
    let upper = small_layer(
        &[
            Entry::dir("data", 0o755),
            Entry::whiteout("data/a"),
            Entry::file("data/b", "b-upper\n", 0o644),
            Entry::hardlink("data/hl", "data/b"),
            Entry::dir("dir", 0o755),
            Entry::dir("dir/x", 0o755),
            Entry::opaque("dir/x"),
            Entry::file("dir/x/new", "new\n", 0o644),
            Entry::fifo("fifo", 0o644),
            Entry::char_dev("dev-null-copy", 1, 3, 0o666),
            Entry::file("xattr-file", "xattr\n", 0o644).xattr("user.berth", "yes"),
            Entry::file("setuid-file", "#!/bin/sh\necho setuid\n", 0o4755),
        ],
        Compression::Gzip,
    );
    (lower, upper)
}

/// Pushes the standard set (see [`StandardSet`]) to `reg` (plain HTTP or TLS, with the
/// registry's credentials), then corrupts `corrupt:latest`'s last layer in storage.
/// busybox running as the image's user `app` (1000:1000, also in group 2000), in /home/app.
fn user_image(base: &BuiltLayer) -> ImageSpec {
    let mut user_cfg = labelled("user");
    user_cfg.user = Some("app".into());
    user_cfg.working_dir = Some("/home/app".into());
    user_cfg.cmd = Some(vec!["id".into()]);
    ImageSpec::new(vec![base.clone()], user_cfg)
}

/// The images the container suites need, pushed as in the standard set.
pub struct RuntimeSet {
    pub busybox: PushedImage,
    pub user: PushedImage,
}

/// What a suite that runs containers shares: a tokio runtime, and a registry on loopback
/// holding the runtime image set (kept running while the suite runs).
pub struct RuntimeEnv {
    pub rt: tokio::runtime::Runtime,
    pub reg: Registry,
    pub set: RuntimeSet,
}

impl RuntimeEnv {
    pub fn start() -> RuntimeEnv {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let reg = Registry::start(crate::registry::RegistryOpts::default());
        let set = rt.block_on(push_runtime_set(&reg));
        RuntimeEnv { rt, reg, set }
    }
}

/// Push only busybox:latest and user:latest (quick, for suites that run containers).
pub async fn push_runtime_set(reg: &Registry) -> RuntimeSet {
    let p = Pusher::for_registry(reg);
    let base = busybox_layer().clone();
    let busybox = p
        .push_image(
            "busybox:latest",
            &ImageSpec::new(vec![base.clone()], labelled("busybox")),
        )
        .await;
    let user = p.push_image("user:latest", &user_image(&base)).await;
    RuntimeSet { busybox, user }
}

pub async fn push_standard_set(reg: &Registry) -> StandardSet {
    let p = Pusher::for_registry(reg);
    let base = busybox_layer().clone();
    let gz = Compression::Gzip;

    let busybox_spec = ImageSpec::new(vec![base.clone()], labelled("busybox"));
    let busybox = p.push_image("busybox:latest", &busybox_spec).await;
    let library_busybox = p.push_image("library/busybox:latest", &busybox_spec).await;

    let user = p.push_image("user:latest", &user_image(&base)).await;

    let multilayer = p.push_multilayer("multilayer:latest", 4, 256 * 1024).await;

    let shared_a = p
        .push_image(
            "shared-a:latest",
            &ImageSpec::new(
                vec![
                    base.clone(),
                    small_layer(&[Entry::file("shared-a", "a\n", 0o644)], gz),
                ],
                labelled("shared-a"),
            ),
        )
        .await;
    let shared_b = p
        .push_image(
            "shared-b:latest",
            &ImageSpec::new(
                vec![
                    base.clone(),
                    small_layer(&[Entry::file("shared-b", "b\n", 0o644)], gz),
                ],
                labelled("shared-b"),
            ),
        )
        .await;

    let (lower, upper) = whiteout_layers();
    let whiteout = p
        .push_image(
            "whiteout:latest",
            &ImageSpec::new(vec![base.clone(), lower, upper], labelled("whiteout")),
        )
        .await;

    let entries = busybox_layer_entries();
    let zstd = p
        .push_image(
            "zstd:latest",
            &ImageSpec::new(
                vec![
                    BuiltLayer::from_entries(&entries, Compression::Zstd),
                    small_layer(
                        &[Entry::file("compression", "zstd\n", 0o644)],
                        Compression::Zstd,
                    ),
                ],
                labelled("zstd"),
            ),
        )
        .await;
    let plain = p
        .push_image(
            "plain:latest",
            &ImageSpec::new(
                vec![
                    BuiltLayer::from_entries(&entries, Compression::None),
                    small_layer(
                        &[Entry::file("compression", "none\n", 0o644)],
                        Compression::None,
                    ),
                ],
                labelled("plain"),
            ),
        )
        .await;
    let mut docker_spec = ImageSpec::new(
        vec![
            base.clone(),
            small_layer(&[Entry::file("manifest-flavour", "docker-v2\n", 0o644)], gz),
        ],
        labelled("docker-v2"),
    );
    docker_spec.flavour = ManifestFlavour::DockerV2;
    let docker_v2 = p.push_image("docker-v2:latest", &docker_spec).await;

    let platform_image = |arch: &str, variant: Option<&str>| {
        let mut cfg = labelled("multiarch");
        cfg.architecture = arch.to_string();
        cfg.variant = variant.map(str::to_string);
        ImageSpec::new(
            vec![
                base.clone(),
                small_layer(&[Entry::file("platform", format!("{arch}\n"), 0o644)], gz),
            ],
            cfg,
        )
    };
    let multiarch = p
        .push_index(
            "multiarch:latest",
            &[
                platform_image("amd64", None),
                platform_image("arm64", Some("v8")),
            ],
            ManifestFlavour::Oci,
        )
        .await;

    let evil = |entries: &[Entry], name: &str| {
        ImageSpec::new(
            vec![BuiltLayer::from_entries_in_order(entries, gz)],
            labelled(name),
        )
    };
    let evil_dotdot = p
        .push_image(
            "evil-dotdot:latest",
            &evil(
                &[Entry::file("../escape", "escaped\n", 0o644).raw()],
                "evil-dotdot",
            ),
        )
        .await;
    let evil_abs = p
        .push_image(
            "evil-abs:latest",
            &evil(
                &[Entry::file("/abs-escape", "escaped\n", 0o644).raw()],
                "evil-abs",
            ),
        )
        .await;
    let evil_symlink = p
        .push_image(
            "evil-symlink:latest",
            &evil(
                &[
                    Entry::symlink("link", "/tmp"),
                    Entry::file("link/evil-file", "escaped\n", 0o644),
                ],
                "evil-symlink",
            ),
        )
        .await;
    let evil_hardlink = p
        .push_image(
            "evil-hardlink:latest",
            &evil(
                &[Entry::hardlink("hl", "../../etc/passwd").raw()],
                "evil-hardlink",
            ),
        )
        .await;
    let mut diffid_spec = evil(
        &[Entry::file("evil-diffid", "content\n", 0o644)],
        "evil-diffid",
    );
    diffid_spec.diff_id_overrides = vec![(0, sha256_digest(b"not the layer"))];
    let evil_diffid = p.push_image("evil-diffid:latest", &diffid_spec).await;

    let corrupt_layer = BuiltLayer::from_entries(
        &[Entry::file("corrupt-data", CORRUPT_ORIGINAL, 0o644)],
        Compression::GzipStored,
    );
    let tampered = tamper_stored_gzip(&corrupt_layer.blob, CORRUPT_ORIGINAL, CORRUPT_TAMPERED);
    let corrupt = p
        .push_image(
            "corrupt:latest",
            &ImageSpec::new(
                vec![base.clone(), corrupt_layer.clone()],
                labelled("corrupt"),
            ),
        )
        .await;
    let path = reg.blob_data_path(&corrupt_layer.digest);
    let stored =
        std::fs::read(&path).unwrap_or_else(|e| panic!("read stored blob {}: {e}", path.display()));
    assert_eq!(
        stored, corrupt_layer.blob,
        "registry storage layout changed?"
    );
    std::fs::write(&path, &tampered).expect("overwrite stored blob");

    StandardSet {
        busybox,
        library_busybox,
        user,
        multilayer,
        shared_a,
        shared_b,
        whiteout,
        zstd,
        plain,
        docker_v2,
        multiarch,
        evil_dotdot,
        evil_abs,
        evil_symlink,
        evil_hardlink,
        evil_diffid,
        corrupt,
        base_layer_digest: base.digest,
    }
}

/// See [`Pusher::push_multilayer`].
pub async fn push_multilayer(
    reg: &Registry,
    repo_tag: &str,
    layers: usize,
    bytes_per_layer: usize,
) -> PushedImage {
    Pusher::for_registry(reg)
        .push_multilayer(repo_tag, layers, bytes_per_layer)
        .await
}

/// In a stored-deflate gzip `blob`, replaces `from` by `to` (same length) and fixes the
/// gzip CRC32, so the result is still a valid gzip of a valid tar (the tar header
/// checksum covers only headers), of the same length, with a different sha256.
pub fn tamper_stored_gzip(blob: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at: Vec<usize> = blob
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "marker must occur once in the stored gzip");
    let mut out = blob.to_vec();
    out[at[0]..at[0] + to.len()].copy_from_slice(to);
    let tar = Compression::Gzip.decompress_unchecked(&out);
    let mut crc = flate2::Crc::new();
    crc.update(&tar);
    let n = out.len();
    out[n - 8..n - 4].copy_from_slice(&crc.sum().to_le_bytes());
    // Now the CRC matches and the stream decodes.
    let check = Compression::Gzip
        .decompress(&out)
        .expect("tampered gzip decodes");
    assert_eq!(check, tar);
    out
}

impl Compression {
    /// Inflate the deflate payload of a gzip stream without checking the trailer.
    fn decompress_unchecked(self, blob: &[u8]) -> Vec<u8> {
        assert!(self.is_gzip());
        // Fixed 10-byte header (GzBuilder without name/comment/extra), 8-byte trailer.
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&blob[10..blob.len() - 8])
            .read_to_end(&mut out)
            .expect("inflate");
        out
    }
}
