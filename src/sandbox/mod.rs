//! Pod sandboxes: metadata, name reservation, pinned namespaces, lifecycle and recovery.

pub mod files;
pub mod namespaces;
pub mod stats;
pub mod userns;

use crate::error::{DomainError, IoContext, IoError, Kind};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1::{NamespaceMode, PodSandboxConfig, PodSandboxFilter};
use serde::{Deserialize, Serialize};

use crate::ids::new_id;
use crate::network::cni::{self, Attachment, PodNetworkArgs};
use crate::network::{NetworkError, load_default_network};
use crate::registry::{LookupError, NameTaken, Record, Registry, id_matches, labels_match};
use crate::store::{Change, SANDBOXES, Store, StoreError};
use namespaces::NsKind;

/// The kernel's limit on a hostname (`HOST_NAME_MAX`): sethostname(2) refuses longer ones.
pub const HOST_NAME_MAX: usize = 64;

/// Errors of sandbox operations.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No usable pod network (no CNI config, a missing plugin).
    #[error("pod network is not ready: {0}")]
    NetworkNotReady(#[from] NetworkError),
    #[error("setting up the pod network: {0}")]
    Cni(#[from] cni::CniError),
}

impl DomainError for SandboxError {
    fn kind(&self) -> Kind {
        match self {
            SandboxError::InvalidArgument(_) => Kind::InvalidArgument,
            SandboxError::AlreadyExists(_) => Kind::AlreadyExists,
            SandboxError::NotFound(_) => Kind::NotFound,
            SandboxError::Unimplemented(_) => Kind::Unimplemented,
            SandboxError::NetworkNotReady(_) => Kind::FailedPrecondition,
            SandboxError::Io(_) | SandboxError::Store(_) | SandboxError::Cni(_) => Kind::Internal,
        }
    }
}

/// Lifecycle state, as CRI has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    #[default]
    NotReady,
}

/// One pod sandbox. Stored (records.rs): berth's fields default when a record lacks them, the
/// CRI config is kept as protobuf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// 64 hex characters.
    pub id: String,
    /// The config kubelet sent, verbatim.
    #[serde(default, with = "crate::records::cri")]
    pub config: PodSandboxConfig,
    #[serde(default)]
    pub runtime_handler: String,
    /// Unix nanoseconds.
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub state: SandboxState,
    /// Pinned namespaces: kind name → pin path.
    #[serde(default)]
    pub pins: Vec<(String, PathBuf)>,
    /// The pod's IPs from CNI, IPv4 first (none for host-network pods).
    #[serde(default)]
    pub ips: Vec<String>,
    /// Where the pod's hostname, hosts and resolv.conf files are.
    #[serde(default)]
    pub etc_dir: Option<PathBuf>,
    /// Host pid of the pod's PID 1 (`berth-shim pod-init`) when it shares one PID namespace.
    #[serde(default)]
    pub pod_init_pid: u32,
    /// The pod's /dev/shm (a tmpfs every container of the pod binds, as containerd's sandbox
    /// shm), for pods with their own IPC namespace.
    #[serde(default)]
    pub shm: Option<PathBuf>,
}

impl SandboxRecord {
    /// `name_namespace_uid_attempt`: the key that must be unique (containerd's).
    pub fn name_key(config: &PodSandboxConfig) -> String {
        let m = config.metadata.clone().unwrap_or_default();
        format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
    }

    /// The pod's namespace options (defaults when kubelet sent none).
    pub fn namespace_options(&self) -> k8s_cri::v1::NamespaceOption {
        namespace_options(&self.config)
    }

    /// The pod's hostname (its file, `HOSTNAME`): the one it was given, else the node's, as
    /// containerd.
    pub fn hostname(&self) -> String {
        if !self.config.hostname.is_empty() {
            return self.config.hostname.clone();
        }
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The path of a pinned namespace of this pod, if it has its own.
    pub fn pin(&self, kind: NsKind) -> Option<&Path> {
        self.pins
            .iter()
            .find(|(k, _)| k == kind.name())
            .map(|(_, p)| p.as_path())
    }
}

/// The pod's namespace options (all defaults when the config has none).
pub fn namespace_options(config: &PodSandboxConfig) -> k8s_cri::v1::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

impl Record for SandboxRecord {
    const KIND: &'static str = "pod sandbox";
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
}

impl From<LookupError> for SandboxError {
    fn from(e: LookupError) -> SandboxError {
        match e {
            LookupError::NotFound { .. } => SandboxError::NotFound(e.to_string()),
            LookupError::Empty { .. } | LookupError::Ambiguous { .. } => {
                SandboxError::InvalidArgument(e.to_string())
            }
        }
    }
}

/// Where pod networks come from, and the shim that inits shared PID namespaces.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    pub shim_binary: PathBuf,
}

/// All sandboxes: durable records plus an in-memory index for the kubelet's relists.
pub struct Sandboxes {
    store: Arc<Store>,
    ns_dir: PathBuf,
    /// `<state>/shm/<id>`: each pod's /dev/shm tmpfs.
    shm_dir: PathBuf,
    /// Per-pod files (hostname, hosts, resolv.conf): `<root>/sandboxes/<id>`.
    files_dir: PathBuf,
    network: SandboxSettings,
    cni_cache: cni::Cache,
    registry: Registry<SandboxRecord>,
    /// Serialises lifecycle changes (each is short; kubelet calls per pod are sequential anyway).
    lifecycle: tokio::sync::Mutex<()>,
}

use berth_sys::fs::dir_names;
use berth_sys::time::now_nanos;

impl Sandboxes {
    /// Load records; a pod whose pins vanished (the state dir is gone after a reboot) is
    /// reported NOTREADY, not lost.
    pub fn open(
        store: Arc<Store>,
        state_dir: &Path,
        root: &Path,
        network: SandboxSettings,
    ) -> Result<Sandboxes, SandboxError> {
        let ns_dir = state_dir.join("ns");
        std::fs::create_dir_all(&ns_dir).context(format!("creating {}", ns_dir.display()))?;
        let mut records = Vec::new();
        let mut changes = Vec::new();
        for (_, mut rec) in store.load::<SandboxRecord>(SANDBOXES)? {
            let lost = rec.pins.iter().any(|(_, p)| !namespaces::is_pinned(p));
            if rec.state == SandboxState::Ready && lost {
                tracing::warn!(sandbox = %rec.id, "pinned namespaces are gone; marking NOTREADY");
                for (_, p) in &rec.pins {
                    let _ = namespaces::unpin(p);
                }
                rec.state = SandboxState::NotReady;
                rec.pins.clear();
                changes.push(Change::put(SANDBOXES, &rec.id, &rec)?);
            }
            records.push(rec);
        }
        store.apply(changes)?;
        let registry = Registry::new(records);
        registry.reserve_all(|r| Some(SandboxRecord::name_key(&r.config)));
        Ok(Sandboxes {
            store,
            ns_dir,
            shm_dir: state_dir.join("shm"),
            files_dir: root.join("sandboxes"),
            network,
            cni_cache: cni::Cache::new(root.join("cni")),
            registry,
            lifecycle: tokio::sync::Mutex::new(()),
        })
    }

    /// At start-up, before any call: release what pods that were never recorded (berthd died
    /// in the middle of a RunPodSandbox, or a rollback could not finish) left behind: CNI
    /// attachments (DEL from the cache, while the namespaces are still there), pinned
    /// namespaces, /dev/shm mounts and pod files.
    /// A NOTREADY pod keeps its CNI cache entry: its StopPodSandbox retry still needs it.
    pub async fn sweep(&self) {
        let ready = |id: &str| {
            self.registry
                .get(id)
                .is_ok_and(|r| r.id == id && r.state == SandboxState::Ready)
        };
        let known = |id: &str| self.registry.get(id).is_ok_and(|r| r.id == id);
        let mut swept = 0;
        swept += self.cni_cache.remove_stale_temps();
        for id in self.cni_cache.ids() {
            if known(&id) {
                continue;
            }
            swept += 1;
            match self.cni_cache.load(&id) {
                Ok(Some(attachment)) => {
                    if let Err(e) = attachment.del().await {
                        tracing::warn!(sandbox = %id, error = %e, "CNI DEL of an orphaned attachment");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(sandbox = %id, error = %e, "reading an orphaned CNI cache entry")
                }
            }
            if let Err(e) = self.cni_cache.remove(&id) {
                tracing::warn!(sandbox = %id, error = %e, "removing an orphaned CNI cache entry");
            }
        }
        for id in dir_names(&self.ns_dir) {
            if !ready(&id) {
                swept += 1;
                if let Err(e) = release_dir(&self.ns_dir.join(&id)) {
                    tracing::warn!(sandbox = %id, error = %e, "releasing orphaned namespace pins");
                }
            }
        }
        for id in dir_names(&self.shm_dir) {
            if !ready(&id) {
                swept += 1;
                if let Err(e) = unmount_pod_shm(&self.shm_dir.join(&id)) {
                    tracing::warn!(sandbox = %id, error = %e, "unmounting an orphaned /dev/shm");
                }
            }
        }
        for id in dir_names(&self.files_dir) {
            if !known(&id) {
                swept += 1;
                let dir = self.files_dir.join(&id);
                if let Err(e) = crate::snapshot::remove_tree(&dir) {
                    tracing::warn!(sandbox = %id, error = %e, "removing orphaned pod files");
                }
            }
        }
        if swept > 0 {
            tracing::info!(swept, "released what unrecorded pods left behind");
        }
    }

    /// Find a sandbox by full id or unique id prefix.
    pub fn get(&self, id: &str) -> Result<SandboxRecord, SandboxError> {
        Ok(self.registry.get(id)?)
    }

    /// Sandboxes matching the CRI filter, oldest first.
    pub fn list(&self, filter: Option<&PodSandboxFilter>) -> Vec<SandboxRecord> {
        self.registry.list(|r| match filter {
            None => true,
            Some(f) => {
                id_matches(&f.id, &r.id)
                    && f.state.as_ref().is_none_or(|s| {
                        let want = if s.state == k8s_cri::v1::PodSandboxState::SandboxReady as i32 {
                            SandboxState::Ready
                        } else {
                            SandboxState::NotReady
                        };
                        r.state == want
                    })
                    && labels_match(&f.label_selector, &r.config.labels)
            }
        })
    }

    /// RunPodSandbox: validate, reserve the name, pin namespaces, record. Undone on failure.
    pub async fn run(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<SandboxRecord, SandboxError> {
        // The request was validated by the RunPodSandbox handler.
        let ns = namespace_options(&config);
        // Reserve the name (briefly locked); the slow part runs unlocked, so pods start in
        // parallel.
        let key = SandboxRecord::name_key(&config);
        let id = new_id().context("generating a sandbox id")?;
        {
            let _l = self.lifecycle.lock().await;
            if let Err(NameTaken(existing)) = self.registry.reserve(&key, &id) {
                return Err(SandboxError::AlreadyExists(format!(
                    "pod sandbox {key} already exists as {existing}"
                )));
            }
        }
        let mut rec = SandboxRecord {
            id: id.clone(),
            config,
            runtime_handler: runtime_handler.to_string(),
            created_at: now_nanos(),
            state: SandboxState::Ready,
            pins: Vec::new(),
            ips: Vec::new(),
            etc_dir: None,
            pod_init_pid: 0,
            shm: None,
        };
        match self.set_up(&mut rec, &ns).await {
            Ok(()) => {
                self.registry.put(rec.clone());
                tracing::info!(sandbox = %rec.id, ips = ?rec.ips, "pod sandbox ready");
                Ok(rec)
            }
            Err(e) => {
                let cleanup = self.tear_down(&rec, Teardown::Rollback).await;
                self.registry.release(&key, &id);
                // The client hears why the pod could not be made; what the rollback could not
                // undo is logged (and swept at the next start).
                if let Err(c) = cleanup {
                    tracing::error!(error = %c, sandbox = %id, "cleanup after a failed RunPodSandbox");
                }
                Err(e)
            }
        }
    }

    /// Namespaces, network, files, record; each step leaves what tear_down undoes.
    async fn set_up(
        &self,
        rec: &mut SandboxRecord,
        ns: &k8s_cri::v1::NamespaceOption,
    ) -> Result<(), SandboxError> {
        let own_network = ns.network != NamespaceMode::Node as i32;
        // The network config is checked first: no pod is half made for want of one.
        let network = if own_network {
            Some(load_default_network(
                &self.network.conf_dir,
                &self.network.bin_dirs,
            )?)
        } else {
            None
        };
        // As containerd: an empty hostname leaves the pod's UTS namespace with the node's
        // hostname and puts the node's in the pod's hostname file; a given one is used as is.
        // Only what the kernel refuses is refused (HOST_NAME_MAX).
        let given = rec.config.hostname.clone();
        let hostname = rec.hostname();
        let t = std::time::Instant::now();
        let dir = self.ns_dir.join(&rec.id);
        std::fs::create_dir_all(&dir).context(format!("creating {}", dir.display()))?;
        let kinds = own_namespaces(ns);
        let set_hostname = (!given.is_empty()).then_some(given.as_str());
        rec.pins = match userns::from_options(ns).map_err(SandboxError::InvalidArgument)? {
            Some(maps) => {
                self.pin_in_userns(&dir, &maps, &kinds, set_hostname)
                    .await?
            }
            None => self.pin_all(&dir, &kinds, set_hostname)?,
        };
        crate::metrics::phase("pod_pin_namespaces", t);
        if ns.pid == NamespaceMode::Pod as i32 {
            let pin = self.ns_dir.join(&rec.id).join(NsKind::Pid.name());
            rec.pod_init_pid =
                crate::shim_client::spawn_pod_init(&self.network.shim_binary, &pin, &rec.id)
                    .await
                    .map_err(|e| {
                        SandboxError::Io(IoError::new(
                            "starting the pod's PID 1 (berth-shim pod-init)",
                            std::io::Error::other(e.to_string()),
                        ))
                    })?;
            rec.pins.push((NsKind::Pid.name().to_string(), pin));
        }

        if let (Some(network), Some(netns)) = (network, rec.pin(NsKind::Net).map(Path::to_path_buf))
        {
            let meta = rec.config.metadata.clone().unwrap_or_default();
            let args = PodNetworkArgs {
                pod_namespace: meta.namespace,
                pod_name: meta.name,
                pod_uid: meta.uid,
                port_mappings: port_mappings(&rec.config),
                dns: rec.config.dns_config.as_ref().map(|d| {
                    serde_json::json!({
                        "servers": d.servers,
                        "searches": d.searches,
                        "options": d.options,
                    })
                }),
                bandwidth: cni::bandwidth_from_annotations(&rec.config.annotations),
            };
            let mut attachment =
                Attachment::new(&network, &self.network.bin_dirs, &rec.id, &netns, args);
            // Cached before ADD: a crash in the middle still leaves what DEL needs.
            self.cni_cache.save(&attachment)?;
            let t = std::time::Instant::now();
            attachment.add().await?;
            crate::metrics::phase("cni_add", t);
            self.cni_cache.save(&attachment)?;
            rec.ips = attachment.ips();
        }

        if ns.ipc != NamespaceMode::Node as i32 {
            let shm = self.shm_dir.join(&rec.id);
            mount_pod_shm(&shm)
                .context(format!("mounting the pod's /dev/shm at {}", shm.display()))?;
            rec.shm = Some(shm);
        }

        let etc = self.files_dir.join(&rec.id);
        let hosts = if own_network {
            files::hosts(&hostname, &rec.ips)
        } else {
            std::fs::read_to_string(files::HOST_HOSTS).context("reading /etc/hosts")?
        };
        let resolv = match files::resolv_conf(rec.config.dns_config.as_ref()) {
            Some(r) => r,
            None => std::fs::read_to_string(files::HOST_RESOLV_CONF).unwrap_or_default(),
        };
        files::write_all(&etc, &hostname, &hosts, &resolv)
            .context(format!("writing the pod files in {}", etc.display()))?;
        rec.etc_dir = Some(etc);
        self.store
            .apply(vec![Change::put(SANDBOXES, &rec.id, &*rec)?])?;
        Ok(())
    }

    /// Undo set_up (and stop): CNI DEL from the cache, unpin, remove the pod's files. Each
    /// step is a no-op when already done.
    ///
    /// A stop ends at a failed CNI DEL, keeping the namespaces and the cache entry for kubelet's
    /// retry of StopPodSandbox to DEL again. A rollback (`Teardown::Rollback`: the pod never
    /// existed for its client, nobody will retry) runs every step whatever fails and answers
    /// the first failure.
    async fn tear_down(&self, rec: &SandboxRecord, how: Teardown) -> Result<(), SandboxError> {
        let mut first: Option<SandboxError> = None;
        let mut failed = |e: SandboxError| {
            tracing::warn!(sandbox = %rec.id, error = %e, "tearing the pod down");
            first.get_or_insert(e);
        };
        match self.cni_cache.load(&rec.id) {
            Ok(Some(attachment)) => {
                let t = std::time::Instant::now();
                match attachment.del().await {
                    Ok(()) => {
                        crate::metrics::phase("cni_del", t);
                        if let Err(e) = self.cni_cache.remove(&rec.id) {
                            failed(e.into());
                        }
                    }
                    Err(e) if how == Teardown::Stop => return Err(e.into()),
                    Err(e) => {
                        failed(e.into());
                        // Every plugin was asked; nobody will ask again.
                        if let Err(e) = self.cni_cache.remove(&rec.id) {
                            failed(e.into());
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) if how == Teardown::Stop => return Err(e.into()),
            Err(e) => failed(e.into()),
        }
        let pid_pin = self.ns_dir.join(&rec.id).join(NsKind::Pid.name());
        kill_pod_init(rec.pod_init_pid, &pid_pin);
        if rec.pod_init_pid != 0 {
            crate::shim_client::remove_helper_cgroup(&crate::shim_client::pod_init_cgroup(&rec.id))
                .await;
        }
        let shm = self.shm_dir.join(&rec.id);
        if let Err(e) = unmount_pod_shm(&shm).context(format!(
            "unmounting the pod's /dev/shm at {}",
            shm.display()
        )) {
            failed(e.into());
        }
        if let Err(e) = release_dir(&self.ns_dir.join(&rec.id)).context(format!(
            "releasing the namespaces of pod sandbox {}",
            rec.id
        )) {
            failed(e.into());
        }
        if how == Teardown::Rollback {
            let etc = self.files_dir.join(&rec.id);
            if let Err(e) =
                crate::snapshot::remove_tree(&etc).context(format!("removing {}", etc.display()))
            {
                failed(e.into());
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Pin the pod's own namespaces (see [`own_namespaces`]) under `dir`; a UTS namespace gets
    /// `hostname`, else keeps the node's.
    fn pin_all(
        &self,
        dir: &Path,
        kinds: &[NsKind],
        hostname: Option<&str>,
    ) -> Result<Vec<(String, PathBuf)>, SandboxError> {
        let mut pins = Vec::new();
        for &kind in kinds {
            let p = dir.join(kind.name());
            let hostname = hostname.filter(|_| kind == NsKind::Uts);
            namespaces::pin_new(kind, &p, hostname).context(format!(
                "pinning the {} namespace at {}",
                kind.name(),
                p.display()
            ))?;
            pins.push((kind.name().to_string(), p));
        }
        Ok(pins)
    }

    /// The pod's CNI result (the chain's last plugin's, as cached), if it has one.
    pub fn cni_result(&self, id: &str) -> Option<serde_json::Value> {
        self.cni_cache.load(id).ok().flatten()?.result
    }

    /// A user-namespaced pod's pins: the user namespace and, created inside it (so that the
    /// pod's root has its capabilities there), the pod's own namespaces (`kinds`).
    async fn pin_in_userns(
        &self,
        dir: &Path,
        maps: &userns::PodUserns,
        kinds: &[NsKind],
        hostname: Option<&str>,
    ) -> Result<Vec<(String, PathBuf)>, SandboxError> {
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        userns::pin(&self.network.shim_binary, dir, maps, &names, hostname)
            .await
            .context(format!(
                "creating the pod's user namespace in {}",
                dir.display()
            ))?;
        Ok(std::iter::once(&NsKind::User)
            .chain(kinds)
            .map(|k| (k.name().to_string(), dir.join(k.name())))
            .collect())
    }

    /// StopPodSandbox: tear the pod network down (CNI DEL, also after a restart, from the
    /// cache), release the pod's namespaces; NOTREADY. Idempotent.
    pub async fn stop(&self, id: &str) -> Result<(), SandboxError> {
        let rec = self.get(id)?;
        self.tear_down(&rec, Teardown::Stop).await?;
        let _l = self.lifecycle.lock().await;
        let mut rec = self.get(&rec.id)?;
        if rec.state == SandboxState::NotReady && rec.pins.is_empty() {
            return Ok(());
        }
        rec.state = SandboxState::NotReady;
        rec.pins.clear();
        self.store
            .apply(vec![Change::put(SANDBOXES, &rec.id, &rec)?])?;
        self.registry.put(rec.clone());
        tracing::info!(sandbox = %rec.id, "pod sandbox stopped");
        Ok(())
    }

    /// RemovePodSandbox: stop if needed, forget. An unknown id is not an error.
    pub async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        let rec = match self.get(id) {
            Ok(r) => r,
            Err(SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop(&rec.id).await?;
        let _l = self.lifecycle.lock().await;
        let etc = self.files_dir.join(&rec.id);
        crate::snapshot::remove_tree(&etc).context(format!("removing {}", etc.display()))?;
        self.store.apply(vec![Change::delete(SANDBOXES, &rec.id)])?;
        self.registry.remove(&rec.id);
        tracing::info!(sandbox = %rec.id, "pod sandbox removed");
        Ok(())
    }
}

/// How far a teardown goes when a step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Teardown {
    Stop,
    Rollback,
}

/// SIGKILL the pod's PID 1 (the kernel then kills whatever is left in its namespace), if the
/// pid still holds the pinned namespace (pids are reused).
// SIGKILL through libc::kill.
#[allow(unsafe_code)]
fn kill_pod_init(pid: u32, pin: &Path) {
    use std::os::unix::fs::MetadataExt;
    if pid == 0 {
        return;
    }
    let (Ok(theirs), Ok(pinned)) = (
        std::fs::metadata(format!("/proc/{pid}/ns/pid")),
        std::fs::metadata(pin),
    ) else {
        return;
    };
    if (theirs.dev(), theirs.ino()) == (pinned.dev(), pinned.ino()) {
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// A pod sysctl must live in one of the pod's own namespaces (runc's rule): IPC ones unless
/// hostIPC, `net.*` and the UTS names unless hostNetwork. Anything else would change the node.
pub fn check_sysctl(key: &str, ns: &k8s_cri::v1::NamespaceOption) -> Result<(), String> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let host_ipc = ns.ipc == NamespaceMode::Node as i32;
    let host_net = ns.network == NamespaceMode::Node as i32;
    let key = key.replace('/', ".");
    if key.is_empty() || key.split('.').any(|p| p.is_empty() || p == "..") {
        return Err(format!("invalid sysctl name {key:?}"));
    }
    let (namespace, host) = if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
        ("IPC", host_ipc)
    } else if key.starts_with("net.") {
        ("network", host_net)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        ("UTS", host_net)
    } else {
        return Err(format!(
            "sysctl {key:?} is not namespaced: it would change the node, not the pod"
        ));
    };
    if host {
        return Err(format!(
            "sysctl {key:?} needs the pod's own {namespace} namespace, but the pod uses the node's"
        ));
    }
    Ok(())
}

/// The `portMappings` capability from the pod's port mappings (those with a host port).
fn port_mappings(config: &PodSandboxConfig) -> Vec<serde_json::Value> {
    config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = match k8s_cri::v1::Protocol::try_from(p.protocol) {
                Ok(k8s_cri::v1::Protocol::Udp) => "udp",
                Ok(k8s_cri::v1::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            let mut m = serde_json::json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": protocol,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = serde_json::json!(p.host_ip);
            }
            m
        })
        .collect()
}

/// Unpin every namespace under a pod's ns dir and remove the dir.
/// The namespaces a pod has of its own (besides PID and user): IPC unless hostIPC; UTS and
/// network unless hostNetwork, which keeps the node's hostname as kubelet expects.
fn own_namespaces(ns: &k8s_cri::v1::NamespaceOption) -> Vec<NsKind> {
    let mut kinds = Vec::new();
    if ns.ipc != NamespaceMode::Node as i32 {
        kinds.push(NsKind::Ipc);
    }
    if ns.network != NamespaceMode::Node as i32 {
        kinds.extend([NsKind::Uts, NsKind::Net]);
    }
    kinds
}

/// A pod's /dev/shm: a 64 MiB tmpfs (containerd's size and options).
fn mount_pod_shm(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    nix::mount::mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(std::io::Error::from)
}

/// Undo [`mount_pod_shm`]; nothing there is fine.
fn unmount_pod_shm(dir: &Path) -> std::io::Result<()> {
    match nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn release_dir(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // Every pin is released, whatever fails; the first failure is the answer.
    let mut first = None;
    for e in entries {
        if let Err(e) = e.and_then(|e| namespaces::unpin(&e.path())) {
            first.get_or_insert(e);
        }
    }
    match first {
        Some(e) => Err(e),
        None => std::fs::remove_dir(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_only_in_the_pods_namespaces() {
        let own = k8s_cri::v1::NamespaceOption::default();
        let host = k8s_cri::v1::NamespaceOption {
            network: NamespaceMode::Node as i32,
            ipc: NamespaceMode::Node as i32,
            ..Default::default()
        };
        for k in [
            "net.ipv4.ip_unprivileged_port_start",
            "kernel.shm_rmid_forced",
            "fs.mqueue.msg_max",
            "net/core/somaxconn",
        ] {
            assert!(check_sysctl(k, &own).is_ok(), "{k}");
            assert!(check_sysctl(k, &host).is_err(), "{k} with host namespaces");
        }
        for k in [
            "kernel.panic",
            "vm.overcommit_memory",
            "fs.file-max",
            "net..x",
        ] {
            assert!(check_sysctl(k, &own).is_err(), "{k}");
        }
    }
}
