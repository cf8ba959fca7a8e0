//! Containers: the CRI container config turned into an OCI runtime spec, the rootfs (the mount
//! the snapshotter returns for the image's snapshots plus a fresh writable layer, mounted at
//! `<bundle>/rootfs`), one berth-shim per container, and the lifecycle kubelet drives: create,
//! start, stop, remove, status, list.

mod attach;
pub mod exec;
mod pty;
pub mod resources;
pub mod spec;
pub mod stdio;
pub mod user;

use crate::error::IoContext;
use crate::error::{DomainError, IoError, Kind};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::args::StdinMode;
use berth_proto::exit::ExitRecord;
use berth_proto::paths::ShimPaths;
use berth_proto::v1 as shim;
use k8s_cri::v1::{ContainerConfig, ContainerFilter};
use serde::{Deserialize, Serialize};

use crate::events::{EventKind, Events};
use crate::ids::new_id;
use crate::image::Images;
use crate::registry::{LookupError, NameTaken, Record, Registry, id_matches, labels_match};
use crate::sandbox::{SandboxRecord, SandboxState, Sandboxes};
use crate::shim_client::{self, ShimError};
use crate::shim_logs::ShimLogs;
use crate::snapshot::{self, ActiveSnapshot, MountError, PrepareError, Remap};
use crate::store::{CONTAINERS, Change, Store, StoreError};

/// Errors of container operations.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("invalid container config: {0}")]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Shim(#[from] ShimError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// An exec could not be started for a reason other than its command.
    #[error("{0}")]
    ExecFailed(String),
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::Error),
}

impl DomainError for ContainerError {
    fn kind(&self) -> Kind {
        match self {
            ContainerError::InvalidArgument(_) | ContainerError::Spec(_) => Kind::InvalidArgument,
            ContainerError::AlreadyExists(_) => Kind::AlreadyExists,
            ContainerError::NotFound(_) => Kind::NotFound,
            ContainerError::FailedPrecondition(_) => Kind::FailedPrecondition,
            ContainerError::DeadlineExceeded(_) => Kind::DeadlineExceeded,
            ContainerError::Shim(e) => e.kind(),
            ContainerError::Cgroup(berth_cgroups::Error::InvalidSpec(_)) => Kind::InvalidArgument,
            ContainerError::Io(_)
            | ContainerError::Store(_)
            | ContainerError::ExecFailed(_)
            | ContainerError::Cgroup(_) => Kind::Internal,
        }
    }
}

impl From<MountError> for ContainerError {
    fn from(e: MountError) -> ContainerError {
        match e {
            MountError::Unsupported(m) => ContainerError::FailedPrecondition(m),
            MountError::Io(e) => ContainerError::Io(e),
        }
    }
}

/// Lifecycle state, as CRI has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    #[default]
    Unknown,
}

/// One container. Stored (records.rs): berth's fields default when a record lacks them, the
/// CRI config is kept as protobuf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    #[serde(default)]
    pub sandbox_id: String,
    #[serde(default, with = "crate::records::cri")]
    pub config: ContainerConfig,
    /// The image id (config digest) and the reference the client asked for.
    #[serde(default)]
    pub image_id: String,
    #[serde(default)]
    pub image_ref: String,
    /// The image's chain ids, base first: the rootfs lowers.
    #[serde(default)]
    pub layers: Vec<String>,
    #[serde(default)]
    pub state: ContainerState,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: i64,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// The CRI log file (sandbox log_directory joined with the container's log_path), if any.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
}

impl ContainerRecord {
    /// `container_pod_namespace_uid_attempt`: the key that must be unique (containerd's).
    pub fn name_key(config: &ContainerConfig, sandbox: &SandboxRecord) -> String {
        let c = config.metadata.clone().unwrap_or_default();
        let p = sandbox.config.metadata.clone().unwrap_or_default();
        format!(
            "{}_{}_{}_{}_{}",
            c.name, p.name, p.namespace, p.uid, c.attempt
        )
    }
}

impl Record for ContainerRecord {
    const KIND: &'static str = "container";
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
}

impl From<LookupError> for ContainerError {
    fn from(e: LookupError) -> ContainerError {
        match e {
            LookupError::NotFound { .. } => ContainerError::NotFound(e.to_string()),
            LookupError::Empty { .. } | LookupError::Ambiguous { .. } => {
                ContainerError::InvalidArgument(e.to_string())
            }
        }
    }
}

/// How long building a container's spec (reading the image's user database) may take.
const SPEC_TIMEOUT: Duration = Duration::from_secs(10);

/// How long StopContainer waits for the container to exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// How long the start-up sweep waits for an orphaned shim to shut down.
const SWEEP_SHIM_TIMEOUT: Duration = Duration::from_secs(2);

/// A lock per id, for the operations on one object that must not overlap.
#[derive(Default)]
struct IdLocks(std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl IdLocks {
    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(id.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Whether an operation holds the lock of `id` now.
    fn busy(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .is_some_and(|l| l.try_lock().is_err())
    }

    /// The object is gone: its lock too (a holder or waiter keeps its own handle).
    fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// Per-container CPU samples: (timestamp ns, cumulative usage ns), for usage_nano_cores.
type CpuSamples = std::sync::Mutex<std::collections::HashMap<String, (i64, u64)>>;

/// All containers.
pub struct Containers {
    store: Arc<Store>,
    dir: PathBuf,
    state_dir: PathBuf,
    shim_binary: PathBuf,
    cgroup_ns: bool,
    registry: Registry<ContainerRecord>,
    /// One lock per container: its create and remove exclude each other, while creates and
    /// removes of different containers (image, shim and mount I/O) proceed in parallel.
    locks: IdLocks,
    /// The previous CPU reading of each container (for usage_nano_cores).
    cpu_samples: CpuSamples,
    events: Events,
    /// Shims' own logs, kept after their containers for post-mortems.
    shim_logs: ShimLogs,
    log_format: berth_proto::args::LogFormat,
}

/// How containers' shims log: berthd's `log_format`, and the `[shim_logs]` bounds.
#[derive(Debug, Clone, Default)]
pub struct ShimLogSettings {
    pub format: crate::config::LogFormat,
    pub config: crate::config::ShimLogsConfig,
}

use berth_sys::fs::dir_names;
use berth_sys::time::now_nanos;

/// The berth-shim binary: $BERTH_SHIM, else next to the running berthd, else on $PATH.
pub fn default_shim_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_SHIM") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("berth-shim")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("berth-shim"))
}

/// `CGROUP2_SUPER_MAGIC`: a pure cgroup v2 host gives containers their own cgroup namespace.
fn cgroup2_host() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type().0 == 0x6367_7270)
}

impl Containers {
    /// Load records and reconcile them with the shims that are still alive.
    pub async fn open(
        store: Arc<Store>,
        root: &Path,
        state_dir: &Path,
        shim_binary: PathBuf,
        events: Events,
        logging: ShimLogSettings,
    ) -> Result<Containers, ContainerError> {
        let dir = root.join("containers");
        std::fs::create_dir_all(&dir).context(format!("creating {}", dir.display()))?;
        let shim_logs = ShimLogs::open(root, &logging.config)?;
        let records = store.load::<ContainerRecord>(CONTAINERS)?;
        let containers = Containers {
            store,
            dir,
            state_dir: state_dir.to_path_buf(),
            shim_binary,
            cgroup_ns: cgroup2_host(),
            registry: Registry::new(records.into_iter().map(|(_, r)| r)),
            locks: IdLocks::default(),
            cpu_samples: Default::default(),
            events,
            shim_logs,
            log_format: match logging.format {
                crate::config::LogFormat::Text => berth_proto::args::LogFormat::Text,
                crate::config::LogFormat::Json => berth_proto::args::LogFormat::Json,
            },
        };
        // Error files of exec helpers that ran before a restart.
        let _ = crate::snapshot::remove_tree(&containers.exec_dir());
        // All at once: a shim that does not answer costs start-up one call timeout, not one
        // per container.
        let ids = containers.registry.scan(|r| Some(r.id.clone()));
        let refreshed =
            futures_util::future::join_all(ids.iter().map(|id| containers.refresh(id))).await;
        for r in refreshed {
            r?;
        }
        containers.sweep().await;
        containers.prune_shim_logs();
        Ok(containers)
    }

    /// At start-up: remove what containers that were never recorded, or whose removal was cut
    /// short, left behind: bundles (rootfs mount, snapshot) and shims with their directories.
    async fn sweep(&self) {
        let ids = self.registry.scan(|r| Some(r.id.clone()));
        let mut swept = 0;
        for name in dir_names(&self.dir) {
            if ids.contains(&name) {
                continue;
            }
            swept += 1;
            let bundle = self.dir.join(&name);
            let undone = snapshot::mount::unmount(&bundle.join("rootfs"))
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    ActiveSnapshot::in_bundle(&bundle)
                        .remove()
                        .map_err(|e| e.to_string())
                })
                .and_then(|()| crate::snapshot::remove_tree(&bundle).map_err(|e| e.to_string()));
            if let Err(e) = undone {
                tracing::warn!(bundle = %bundle.display(), error = %e, "removing an orphaned container bundle");
            }
        }
        let shims = self.state_dir.join("shims");
        for prefix in dir_names(&shims) {
            if ids
                .iter()
                .any(|id| ShimPaths::new(&self.state_dir, id).dir.ends_with(&prefix))
            {
                continue;
            }
            swept += 1;
            let paths = ShimPaths::new(&self.state_dir, &prefix);
            let stop = async {
                if let Ok(mut c) = shim_client::connect(&paths.socket).await {
                    let _ = c.shutdown(shim::ShutdownRequest { force: true }).await;
                }
            };
            if tokio::time::timeout(SWEEP_SHIM_TIMEOUT, stop)
                .await
                .is_err()
            {
                tracing::warn!(shim = %paths.dir.display(), "an orphaned shim did not answer shutdown");
            }
            if let Err(e) = crate::snapshot::remove_tree(&paths.dir) {
                tracing::warn!(shim = %paths.dir.display(), error = %e, "removing an orphaned shim directory");
            }
        }
        if swept > 0 {
            tracing::info!(swept, "removed what unrecorded containers left behind");
        }
    }

    /// Delete the shim logs of removed containers beyond `[shim_logs]`'s bounds. A container
    /// is live while it is recorded or its shim directory exists (a create under way).
    fn prune_shim_logs(&self) {
        let recorded: std::collections::HashSet<String> = self
            .registry
            .scan(|r| Some(r.id.clone()))
            .into_iter()
            .collect();
        let pruned = self
            .shim_logs
            .prune(|id| recorded.contains(id) || ShimPaths::new(&self.state_dir, id).dir.exists());
        if !pruned.is_empty() {
            tracing::debug!(
                count = pruned.len(),
                "pruned the shim logs of removed containers"
            );
        }
    }

    /// Name reservations need the sandboxes; done once both are loaded.
    pub fn index_names(&self, sandboxes: &Sandboxes) {
        self.registry.reserve_all(|r| {
            let sb = sandboxes.get(&r.sandbox_id).ok()?;
            Some(ContainerRecord::name_key(&r.config, &sb))
        });
    }

    /// Chain ids every container holds (garbage-collection roots).
    pub fn held_layers(&self) -> Vec<String> {
        self.registry
            .scan(|r| Some(r.layers.clone()))
            .into_iter()
            .flatten()
            .collect()
    }

    /// Find by full id or unique prefix.
    pub fn get(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        Ok(self.registry.get(id)?)
    }

    /// Containers matching the CRI filter, oldest first.
    pub fn list(&self, filter: Option<&ContainerFilter>) -> Vec<ContainerRecord> {
        self.registry.list(|r| match filter {
            None => true,
            Some(f) => {
                id_matches(&f.id, &r.id)
                    && id_matches(&f.pod_sandbox_id, &r.sandbox_id)
                    && f.state
                        .as_ref()
                        .is_none_or(|s| cri_state(r.state) == s.state)
                    && labels_match(&f.label_selector, &r.config.labels)
            }
        })
    }

    /// The container's bundle directory (its OCI spec, config.json).
    pub(crate) fn bundle(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// For PID namespace mode TARGET: the PID namespace of the target container, which must be
    /// a running container of the same pod (kubelet's ephemeral containers, `kubectl debug
    /// --target`).
    fn target_pid_ns(&self, config: &ContainerConfig, sandbox_id: &str) -> Option<PathBuf> {
        let opts = config
            .linux
            .as_ref()?
            .security_context
            .as_ref()?
            .namespace_options
            .as_ref()?;
        if opts.pid != k8s_cri::v1::NamespaceMode::Target as i32 {
            return None;
        }
        let target = self.get(&opts.target_id).ok()?;
        (target.sandbox_id == sandbox_id
            && target.state == ContainerState::Running
            && target.pid > 0)
            .then(|| PathBuf::from(format!("/proc/{}/ns/pid", target.pid)))
    }

    /// The OCI runtime spec of container `id` (its bundle's config.json) as JSON, if readable.
    pub fn spec_json_of(&self, id: &str) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.bundle(id).join("config.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn persist(&self, rec: &ContainerRecord) -> Result<(), ContainerError> {
        self.store
            .apply(vec![Change::put(CONTAINERS, &rec.id, rec)?])?;
        self.registry.put(rec.clone());
        Ok(())
    }

    /// Write back an updated record of an existing container, unless it was removed while the
    /// update was being made (an exit watcher's refresh must never bring a removed container
    /// back). Under the container's lock, so that a removal is either before or after.
    async fn persist_existing(&self, rec: &ContainerRecord) -> Result<(), ContainerError> {
        let _l = self.locks.lock(&rec.id).await;
        if self.registry.get(&rec.id).is_ok_and(|r| r.id == rec.id) {
            self.persist(rec)?;
        }
        Ok(())
    }

    /// CreateContainer: rootfs, spec, shim with the init process waiting. Undone on failure.
    pub async fn create(
        &self,
        sandboxes: &Sandboxes,
        images: &Images,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> Result<ContainerRecord, ContainerError> {
        // The request was validated by the CreateContainer handler.
        let sandbox = sandboxes
            .get(sandbox_id)
            .map_err(|e| ContainerError::NotFound(e.to_string()))?;
        if sandbox.state != SandboxState::Ready {
            return Err(ContainerError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        let image_ref = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = images.resolve(&image_ref).ok_or_else(|| {
            ContainerError::NotFound(format!("image {image_ref:?} not found; pull it first"))
        })?;
        let key = ContainerRecord::name_key(&config, &sandbox);
        // Shim directories are named by an id prefix: never reuse one.
        let id = loop {
            let id = new_id().context("generating a container id")?;
            if !ShimPaths::new(&self.state_dir, &id).dir.exists() {
                break id;
            }
        };
        // Held until the container is made or undone: a RemoveContainer (or RemovePodSandbox)
        // of it meanwhile waits.
        let _l = self.locks.lock(&id).await;
        if let Err(NameTaken(existing)) = self.registry.reserve(&key, &id) {
            self.locks.forget(&id);
            return Err(ContainerError::AlreadyExists(format!(
                "container {key} already exists as {existing}"
            )));
        }
        let log_path = (!config.log_path.is_empty() && !sandbox.config.log_directory.is_empty())
            .then(|| Path::new(&sandbox.config.log_directory).join(&config.log_path));
        let mut rec = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox.id.clone(),
            config,
            image_id: image.id.clone(),
            image_ref,
            layers: image.layers.clone(),
            state: ContainerState::Created,
            pid: 0,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            log_path,
        };
        // The record first: its layers are garbage-collection roots from now on.
        let t = std::time::Instant::now();
        if let Err(e) = self.persist(&rec) {
            self.registry.release(&key, &id);
            self.locks.forget(&id);
            return Err(e);
        }
        crate::metrics::phase("store_commit", t);
        match self.create_inner(&sandbox, images, &image, &mut rec).await {
            Ok(()) => {
                self.persist(&rec)?;
                tracing::info!(container = %id, sandbox = %sandbox.id, "container created");
                self.events.container(&id, &sandbox.id, EventKind::Created);
                Ok(rec)
            }
            Err(e) => {
                let cleanup = self.destroy(&id).await;
                self.store.apply(vec![Change::delete(CONTAINERS, &id)])?;
                self.registry.remove(&id);
                self.locks.forget(&id);
                if let Err(c) = cleanup {
                    tracing::error!(container = %id, error = %c, "cleanup after a failed CreateContainer");
                    return Err(ContainerError::Io(IoError::new(
                        format!("{e}; and cleaning up failed"),
                        std::io::Error::other(c.to_string()),
                    )));
                }
                Err(e)
            }
        }
    }

    async fn create_inner(
        &self,
        sandbox: &SandboxRecord,
        images: &Images,
        image: &crate::image::ImageRecord,
        rec: &mut ContainerRecord,
    ) -> Result<(), ContainerError> {
        let t = std::time::Instant::now();
        let bundle = self.bundle(&rec.id);
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).context(format!("creating {}", rootfs.display()))?;
        // A user-namespaced pod's container sees the image as the pod's root (containerd's way,
        // no chown copy).
        let remap = crate::sandbox::userns::from_options(&sandbox.namespace_options())
            .ok()
            .flatten()
            .zip(sandbox.pin(crate::sandbox::namespaces::NsKind::User))
            .map(|(maps, pin)| Remap {
                userns: pin.to_path_buf(),
                root_uid: maps.uid.host_of(0),
                root_gid: maps.gid.host_of(0),
            });
        let mount = images
            .snapshots
            .prepare(
                &ActiveSnapshot::in_bundle(&bundle),
                &image.layers,
                remap.as_ref(),
            )
            .map_err(|e| match e {
                PrepareError::MissingLayer(chain) => ContainerError::FailedPrecondition(format!(
                    "layer {chain} of image {} is missing; pull the image again",
                    image.id
                )),
                PrepareError::Io(e) => ContainerError::Io(e),
            })?;
        mount.mount(&rootfs)?;
        crate::metrics::phase("container_rootfs", t);
        let t = std::time::Instant::now();
        let image_config: serde_json::Value =
            serde_json::from_slice(&images.config_json(&image.id).map_err(|e| {
                ContainerError::FailedPrecondition(format!("image config unreadable: {e}"))
            })?)
            .map_err(|e| {
                ContainerError::FailedPrecondition(format!("image config is not JSON: {e}"))
            })?;
        let image_name = image
            .repo_tags
            .first()
            .cloned()
            .unwrap_or_else(|| rec.image_ref.clone());
        // Off the async runtime and bounded in time: building the spec reads the image's
        // /etc/passwd and /etc/group (non-blocking, regular files only, at most 4 MiB each).
        let (id, config, sb, root) = (
            rec.id.clone(),
            rec.config.clone(),
            sandbox.clone(),
            rootfs.clone(),
        );
        let (cgroup_ns, target_pid_ns) =
            (self.cgroup_ns, self.target_pid_ns(&rec.config, &sandbox.id));
        let built = tokio::task::spawn_blocking(move || {
            spec::build(&spec::SpecInput {
                id: &id,
                config: &config,
                image_config: &image_config,
                image_name: &image_name,
                sandbox: &sb,
                rootfs: &root,
                cgroup_ns,
                systemd_cgroup: crate::cgroup_driver::kind()
                    == crate::config::CgroupDriver::Systemd,
                target_pid_ns,
            })
        });
        let oci = match tokio::time::timeout(SPEC_TIMEOUT, built).await {
            Ok(Ok(r)) => r?,
            Ok(Err(e)) => {
                return Err(ContainerError::Io(IoError::new(
                    "building the container's spec",
                    std::io::Error::other(e),
                )));
            }
            Err(_) => {
                return Err(ContainerError::DeadlineExceeded(format!(
                    "building the spec of container {} (the image's /etc/passwd and /etc/group) took over {}s",
                    rec.id,
                    SPEC_TIMEOUT.as_secs()
                )));
            }
        };
        let json = serde_json::to_vec_pretty(&oci).map_err(|e| {
            ContainerError::Io(IoError::new(
                "encoding config.json",
                std::io::Error::other(e),
            ))
        })?;
        write_atomic(&bundle.join("config.json"), &json)?;
        crate::metrics::phase("container_spec", t);
        if let Some(log) = &rec.log_path
            && let Some(parent) = log.parent()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                // The pod's log directory (or the log path under it) names a file: the
                // request's to fix.
                if e.raw_os_error() == Some(libc::ENOTDIR)
                    || (e.kind() == std::io::ErrorKind::AlreadyExists && !parent.is_dir())
                {
                    ContainerError::InvalidArgument(format!(
                        "log directory {}: {e}",
                        parent.display()
                    ))
                } else {
                    ContainerError::Io(IoError::new(
                        format!("creating log directory {}", parent.display()),
                        e,
                    ))
                }
            })?;
        }
        let paths = ShimPaths::new(&self.state_dir, &rec.id);
        let log = rec
            .log_path
            .clone()
            .unwrap_or_else(|| PathBuf::from("/dev/null"));
        let stdin = match (rec.config.stdin, rec.config.stdin_once) {
            (false, _) => None,
            (true, false) => Some(StdinMode::Open),
            (true, true) => Some(StdinMode::Once),
        };
        let t = std::time::Instant::now();
        let logging = shim_client::ShimLogging {
            format: self.log_format,
            file: self.shim_logs.path(&rec.id),
        };
        rec.pid = shim_client::spawn(
            &self.shim_binary,
            &rec.id,
            &bundle,
            &paths,
            &log,
            stdin,
            &logging,
        )
        .await?;
        crate::metrics::phase("shim_spawn", t);
        if let Some(cg) = oci.linux().as_ref().and_then(|l| l.cgroups_path().as_ref()) {
            let t = std::time::Instant::now();
            let resources = oci.linux().as_ref().and_then(|l| l.resources().as_ref());
            crate::cgroup_driver::container_created(&cg.to_string_lossy(), rec.pid, resources)
                .await?;
            crate::metrics::phase("cgroup_driver", t);
        }
        Ok(())
    }

    /// Tear down everything of a container except its record: shim, rootfs mount, dirs.
    async fn destroy(&self, id: &str) -> Result<(), ContainerError> {
        let paths = ShimPaths::new(&self.state_dir, id);
        let shut = match shim_client::connect(&paths.socket).await {
            Ok(mut c) => c
                .shutdown(shim::ShutdownRequest { force: true })
                .await
                .map(|_| ())
                .map_err(ShimError::from),
            Err(e) => Err(e),
        };
        // A shim that shut down removed its cgroup. One that does not answer (stopped,
        // wedged) is killed by its pid; one that died (or never finished) left its cgroup and
        // processes.
        if let Err(e) = shut {
            if !e.is_gone() {
                tracing::warn!(container = %id, error = %e, "the shim did not shut down; killing it");
                shim_client::kill_shim(&paths);
            }
            self.kill_cgroup(id).await;
        }
        // The shim exits once it has shut down (or was killed): its own cgroup goes with it.
        shim_client::remove_helper_cgroup(id).await;
        let bundle = self.bundle(id);
        if let Some(cg) = crate::cgroup_driver::bundle_cgroups_path(&bundle) {
            crate::cgroup_driver::container_removed(&cg).await?;
        }
        snapshot::mount::unmount(&bundle.join("rootfs"))?;
        ActiveSnapshot::in_bundle(&bundle).remove()?;
        crate::snapshot::remove_tree(&bundle).context(format!("removing {}", bundle.display()))?;
        crate::snapshot::remove_tree(&paths.dir)
            .context(format!("removing {}", paths.dir.display()))?;
        Ok(())
    }

    /// SIGKILL every process of the container's cgroup (atomically: `cgroup.kill` on v2, frozen
    /// first on v1) and remove it. For a container whose shim is dead or never finished.
    async fn kill_cgroup(&self, id: &str) {
        let config = self.bundle(id).join("config.json");
        let Some(path) = std::fs::read(&config)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.pointer("/linux/cgroupsPath")?.as_str().map(PathBuf::from))
        else {
            return;
        };
        let id = id.to_string();
        let done = tokio::task::spawn_blocking(move || {
            let cgroup = berth_cgroups::Cgroup::for_host(&path)?;
            cgroup.destroy(berth_cgroups::DESTROY_TIMEOUT)
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(container = %id, error = %e, "removing the cgroup of a container without a shim")
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "removing the cgroup of a container without a shim")
            }
        }
    }

    /// StartContainer.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let mut rec = self.get(id)?;
        if rec.state != ContainerState::Created {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is {:?}, not created",
                rec.id, rec.state
            )));
        }
        let paths = ShimPaths::new(&self.state_dir, &rec.id);
        let t = std::time::Instant::now();
        let mut c = shim_client::connect(&paths.socket).await?;
        crate::metrics::phase("shim_connect", t);
        let t = std::time::Instant::now();
        c.start(shim::StartRequest {})
            .await
            .map_err(|s| match s.code() {
                // The command could not run: the request's to fix.
                tonic::Code::InvalidArgument => ContainerError::InvalidArgument(format!(
                    "container {}: {}",
                    rec.id,
                    s.message()
                )),
                tonic::Code::FailedPrecondition => ContainerError::FailedPrecondition(format!(
                    "container {}: {}",
                    rec.id,
                    s.message()
                )),
                _ => ContainerError::Shim(ShimError::from(s)),
            })?;
        let st = c
            .state(shim::StateRequest {})
            .await
            .map_err(ShimError::from)?
            .into_inner();
        crate::metrics::phase("shim_start", t);
        apply_state(&mut rec, &st);
        self.persist_existing(&rec).await?;
        tracing::info!(container = %rec.id, pid = rec.pid, "container started");
        self.events
            .container(&rec.id, &rec.sandbox_id, EventKind::Started);
        self.watch_exit(&rec.id);
        Ok(())
    }

    /// StopContainer: SIGTERM (or the image's stop signal), SIGKILL after `timeout` seconds.
    pub async fn stop(&self, id: &str, timeout: i64) -> Result<(), ContainerError> {
        let rec = self.get(id)?;
        if rec.state != ContainerState::Running && rec.state != ContainerState::Created {
            return Ok(());
        }
        let paths = ShimPaths::new(&self.state_dir, &rec.id);
        let mut c = match shim_client::connect(&paths.socket).await {
            Ok(c) => c,
            Err(_) => {
                self.refresh(&rec.id).await?;
                return Ok(());
            }
        };
        // The init may exit on its own at any moment: "already finished" is a stopped
        // container, not a failure.
        let gone = |s: &tonic::Status| s.code() == tonic::Code::NotFound;
        if timeout > 0 {
            match c
                .kill(shim::KillRequest {
                    signal: libc::SIGTERM as u32,
                    all: false,
                })
                .await
            {
                Err(s) if gone(&s) => {
                    self.refresh(&rec.id).await?;
                    return Ok(());
                }
                r => {
                    r.map_err(ShimError::from)?;
                }
            }
            let waited = tokio::time::timeout(Duration::from_secs(timeout as u64), async {
                shim_client::connect_streaming(&paths.socket)
                    .await?
                    .wait(shim::WaitRequest {})
                    .await
                    .map_err(ShimError::from)
            })
            .await;
            if matches!(waited, Ok(Ok(_))) {
                self.refresh(&rec.id).await?;
                return Ok(());
            }
        }
        match c
            .kill(shim::KillRequest {
                signal: libc::SIGKILL as u32,
                all: true,
            })
            .await
        {
            Err(s) if gone(&s) => {}
            r => {
                r.map_err(ShimError::from)?;
            }
        }
        let waited = tokio::time::timeout(KILL_WAIT, async {
            shim_client::connect_streaming(&paths.socket)
                .await?
                .wait(shim::WaitRequest {})
                .await
                .map_err(ShimError::from)
        })
        .await;
        match waited {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                return Err(ContainerError::DeadlineExceeded(format!(
                    "container {} did not exit within {}s of SIGKILL",
                    rec.id,
                    KILL_WAIT.as_secs()
                )));
            }
        }
        self.refresh(&rec.id).await?;
        Ok(())
    }

    /// ReopenContainerLog: the shim reopens the log file at its path (kubelet rotated it).
    pub async fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let rec = self.refresh(&self.get(id)?.id).await?;
        if rec.state != ContainerState::Running {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let paths = ShimPaths::new(&self.state_dir, &rec.id);
        let mut c = shim_client::connect(&paths.socket).await?;
        c.reopen_log(shim::ReopenLogRequest {})
            .await
            .map_err(ShimError::from)?;
        Ok(())
    }

    /// RemoveContainer: kill if running, tear down, forget. Unknown ids are fine.
    pub async fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let rec = match self.get(id) {
            Ok(r) => r,
            Err(ContainerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _l = self.locks.lock(&rec.id).await;
        // Removed meanwhile (a concurrent RemoveContainer, or its create failed).
        if self.registry.get(&rec.id).is_err() {
            return Ok(());
        }
        self.destroy(&rec.id).await?;
        self.store
            .apply(vec![Change::delete(CONTAINERS, &rec.id)])?;
        self.registry.remove(&rec.id);
        self.locks.forget(&rec.id);
        tracing::info!(container = %rec.id, "container removed");
        self.shim_logs.touch(&rec.id);
        self.prune_shim_logs();
        self.events
            .container(&rec.id, &rec.sandbox_id, EventKind::Deleted);
        Ok(())
    }

    /// Every running container gets an exit watcher (after a restart).
    pub fn watch_running(self: &Arc<Self>) {
        let running = self
            .registry
            .scan(|r| (r.state == ContainerState::Running).then(|| r.id.clone()));
        for id in running {
            self.watch_exit(&id);
        }
    }

    /// Wait on the shim for the container's exit; then refresh the record and publish the
    /// Stopped event. Ends quietly when the container is removed first.
    fn watch_exit(self: &Arc<Self>, id: &str) {
        let this = Arc::clone(self);
        let id = id.to_string();
        tokio::spawn(async move {
            loop {
                let paths = ShimPaths::new(&this.state_dir, &id);
                let waited = match shim_client::connect_streaming(&paths.socket).await {
                    Ok(mut c) => c.wait(shim::WaitRequest {}).await.is_ok(),
                    Err(_) => false,
                };
                match this.refresh(&id).await {
                    Ok(rec) if rec.state == ContainerState::Exited => {
                        this.events
                            .container(&rec.id, &rec.sandbox_id, EventKind::Stopped);
                        return;
                    }
                    Err(ContainerError::NotFound(_)) => return,
                    _ => {}
                }
                // The shim answered oddly or not at all, yet the container is not exited:
                // look again shortly.
                let pause = if waited { 100 } else { 1000 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        });
    }

    /// Bring the record up to date with its shim (or its exit file when the shim is gone).
    pub async fn refresh(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let mut rec = self.get(id)?;
        if rec.state == ContainerState::Exited {
            return Ok(rec);
        }
        let before = rec.clone();
        let paths = ShimPaths::new(&self.state_dir, &rec.id);
        let live = match shim_client::connect(&paths.socket).await {
            Ok(mut c) => match c.state(shim::StateRequest {}).await {
                Ok(r) => Some(r.into_inner()),
                Err(e) => {
                    // Slow, stopped or dying: the record stands until the shim answers or is
                    // found gone.
                    tracing::warn!(container = %rec.id, error = %e, "the shim did not answer State");
                    return Ok(rec);
                }
            },
            // A create (or remove) of this container is under way: its shim may not be up yet.
            Err(_) if self.locks.busy(&rec.id) => return Ok(rec),
            Err(e) if e.is_gone() => None,
            Err(e) => {
                tracing::warn!(container = %rec.id, error = %e, "the shim did not answer");
                return Ok(rec);
            }
        };
        match live {
            Some(st) => apply_state(&mut rec, &st),
            None => {
                // What the dead shim supervised dies with it (containerd's `shim delete`).
                self.kill_cgroup(&rec.id).await;
                // The shim is gone: its exit file, if any, has the truth; else it died with
                // the node (reboot) or was killed, and the container is reported exited.
                rec.state = ContainerState::Exited;
                match ExitRecord::read(&paths.exit_file) {
                    Some(x) => {
                        rec.exit_code = x.exit_code;
                        rec.finished_at = x.finished_at;
                        rec.reason = reason(x.exit_code, x.oom_killed);
                    }
                    None => {
                        rec.exit_code = 255;
                        if rec.finished_at == 0 {
                            rec.finished_at = now_nanos();
                        }
                        rec.reason = "Unknown".into();
                        rec.message = "the container's shim is gone (berthd restart after a reboot or a crash)".into();
                    }
                }
            }
        }
        // Status is polled (kubelet, crictl): the store is written only when something changed.
        if rec != before {
            self.persist_existing(&rec).await?;
        }
        Ok(rec)
    }
}

fn reason(exit_code: i32, oom: bool) -> String {
    if oom {
        "OOMKilled".into()
    } else if exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    }
}

fn apply_state(rec: &mut ContainerRecord, st: &shim::StateResponse) {
    rec.pid = st.pid;
    if st.started_at != 0 {
        rec.started_at = st.started_at;
    }
    rec.state = match shim::Status::try_from(st.status) {
        Ok(shim::Status::Created) => ContainerState::Created,
        Ok(shim::Status::Running) => ContainerState::Running,
        Ok(shim::Status::Stopped) => ContainerState::Exited,
        _ => ContainerState::Unknown,
    };
    if rec.state == ContainerState::Exited {
        rec.exit_code = st.exit_code;
        rec.finished_at = st.finished_at;
        rec.reason = reason(st.exit_code, st.oom_killed);
        rec.message = st.message.clone();
    }
}

/// The CRI state number of a record state.
pub fn cri_state(s: ContainerState) -> i32 {
    use k8s_cri::v1::ContainerState as C;
    match s {
        ContainerState::Created => C::ContainerCreated as i32,
        ContainerState::Running => C::ContainerRunning as i32,
        ContainerState::Exited => C::ContainerExited as i32,
        ContainerState::Unknown => C::ContainerUnknown as i32,
    }
}

/// Temp file, fsync, rename, fsync the directory.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ContainerError> {
    Ok(berth_sys::fs::write_atomic(path, data).context(format!("writing {}", path.display()))?)
}
