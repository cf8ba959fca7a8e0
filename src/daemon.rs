//! The daemon's shared state: configuration, the root lock, the metadata store and the
//! domain services the CRI handlers call.

pub mod auto_remove;
mod calls;
pub mod pod_metrics;
mod port_forward;
pub mod streaming_runtime;

use crate::error::{IoContext, IoError};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{Flock, FlockArg};

use crate::config::Config;
use crate::container::ContainerRecord;
use crate::container::{Containers, default_shim_binary};
use crate::events::{EventKind, Events};
use crate::image::Images;
use crate::sandbox::{SandboxRecord, Sandboxes};
use crate::store::Store;
use calls::Calls;

/// Errors starting the daemon.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("another berthd is already using root {0} (its lock file {0}/berthd.lock is held)")]
    AlreadyRunning(String),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
    #[error(transparent)]
    ShimView(#[from] crate::shim_view::ShimViewError),
    #[error("{0}")]
    CgroupDriver(String),
}

/// Everything a CRI handler can reach.
pub struct Daemon {
    pub config: Config,
    pub images: Arc<Images>,
    pub sandboxes: Sandboxes,
    pub containers: Arc<Containers>,
    pub events: Events,
    /// The streaming server's tokens and address (Exec/Attach/PortForward URLs).
    pub streaming: Arc<crate::streaming::server::Streaming>,
    ready: AtomicBool,
    /// The latest reading of every pod and container (ListPodSandboxMetrics), taken every
    /// `[metrics] collection_period_secs` by `pod_metrics::collect_forever`.
    pub pod_metrics: std::sync::RwLock<Arc<Vec<k8s_cri::v1::PodSandboxMetrics>>>,
    /// The node's pod CIDR(s) as kubelet last set them (UpdateRuntimeConfig). Pod addresses
    /// come from the CNI config's IPAM; this is reported in verbose Status.
    pub pod_cidrs: std::sync::Mutex<Vec<String>>,
    /// Whether user-namespaced pods work here (probed at startup; Status reports it).
    pub user_namespaces: bool,
    /// RunPodSandbox and CreateContainer by name; StartContainer, StopPodSandbox and
    /// RemovePodSandbox by id: each finishes whatever happens to its client (see `calls`).
    pod_calls: Calls<SandboxRecord>,
    container_calls: Calls<ContainerRecord>,
    unit_calls: Calls<()>,
    _lock: Flock<File>,
    /// The read-only view every shim process is started from (held for the daemon's life).
    _shim: crate::shim_view::ShimView,
}

impl Daemon {
    /// Take the root lock, open the store and recover state.
    pub async fn open(config: Config) -> Result<Arc<Daemon>, StartError> {
        let lock = Daemon::lock_root(&config)?;
        Daemon::open_locked(config, lock).await
    }

    /// Take the root lock (creating root and state): no other berthd uses this root while it is
    /// held. For a caller that starts something (the metrics endpoint) before the recovery.
    pub fn lock_root(config: &Config) -> Result<RootLock, StartError> {
        for dir in [&config.root, &config.state] {
            std::fs::create_dir_all(dir).context(format!("creating {}", dir.display()))?;
        }
        Ok(RootLock(take_lock(&config.root)?))
    }

    /// As `open`, with the root lock already taken.
    pub async fn open_locked(config: Config, lock: RootLock) -> Result<Arc<Daemon>, StartError> {
        let lock = lock.0;
        crate::cgroup_driver::init(config.cgroup.driver).map_err(StartError::CgroupDriver)?;
        // Every shim process runs from one read-only view of the binary (CVE-2019-5736).
        let shim = crate::shim_view::ShimView::open(&default_shim_binary())?;
        tracing::info!(
            "berth-shim {} runs from its read-only view {}",
            shim.installed().display(),
            shim.path().display()
        );
        let store = Arc::new(Store::open(&config.root.join("meta.db"))?);
        let events = Events::default();
        let streaming = crate::streaming::server::Streaming::bind(
            &config.streaming.address,
            std::time::Duration::from_secs(config.streaming.token_ttl_secs),
        )
        .await
        .map_err(|source| {
            StartError::Io(IoError::new(
                format!("binding the streaming server {}", config.streaming.address),
                source,
            ))
        })?;
        let sandboxes = Sandboxes::open(
            store.clone(),
            &config.state,
            &config.root,
            crate::sandbox::SandboxSettings {
                conf_dir: config.cni.conf_dir.clone(),
                bin_dirs: config.cni.bin_dirs.clone(),
                shim_binary: shim.path().to_path_buf(),
            },
        )?;
        let containers = Arc::new(
            Containers::open(
                store.clone(),
                &config.root,
                &config.state,
                shim.path().to_path_buf(),
                events.clone(),
                crate::container::ShimLogSettings {
                    format: config.log_format,
                    config: config.shim_logs.clone(),
                },
            )
            .await?,
        );
        sandboxes.sweep().await;
        // The cgroups of shims and pod-inits that exited while berthd was away.
        if let Ok(h) = berth_cgroups::helper::host_hierarchies() {
            let removed = berth_cgroups::helper::sweep(&h);
            if removed > 0 {
                tracing::info!(removed, "removed the cgroups of exited shims");
            }
        }
        containers.index_names(&sandboxes);
        containers.watch_running();
        // Layers under a container's rootfs stay, whatever happens to its image.
        let roots = containers.clone();
        let images = Images::open(
            store,
            &config.root,
            &config.registry.config_path,
            config.image.clone(),
            Box::new(move || roots.held_layers()),
        )
        .await?;
        let user_namespaces =
            match crate::sandbox::userns::probe(shim.path(), &config.root, &config.state).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::info!("user namespaces (hostUsers: false) not available: {e}");
                    false
                }
            };
        Ok(Arc::new(Daemon {
            user_namespaces,
            config,
            images: Arc::new(images),
            sandboxes,
            containers,
            events,
            streaming,
            ready: AtomicBool::new(false),
            pod_metrics: Default::default(),
            pod_cidrs: std::sync::Mutex::new(Vec::new()),
            pod_calls: Calls::keeping(),
            container_calls: Calls::keeping(),
            unit_calls: Calls::joining(),
            _lock: lock,
            _shim: shim,
        }))
    }

    /// RunPodSandbox. Runs to completion (or rollback) even when the client goes away; a retry
    /// with the same name gets the pod (see `calls`).
    pub async fn run_pod(
        self: &Arc<Self>,
        config: k8s_cri::v1::PodSandboxConfig,
        runtime_handler: &str,
    ) -> crate::Result<SandboxRecord> {
        let key = SandboxRecord::name_key(&config);
        let this = self.clone();
        let handler = runtime_handler.to_string();
        self.pod_calls
            .run(&key, async move {
                let rec = this.sandboxes.run(config, &handler).await?;
                this.events.pod(&rec.id, EventKind::Created);
                this.events.pod(&rec.id, EventKind::Started);
                Ok(rec)
            })
            .await
    }

    /// CreateContainer in a pod. Runs to completion (or rollback) even when the client goes
    /// away; a retry with the same name in the same pod gets the container.
    pub async fn create_container(
        self: &Arc<Self>,
        sandbox_id: &str,
        config: k8s_cri::v1::ContainerConfig,
    ) -> crate::Result<ContainerRecord> {
        let sandbox = self
            .sandboxes
            .get(sandbox_id)
            .map_err(|e| crate::container::ContainerError::NotFound(e.to_string()))?;
        let key = format!(
            "{}/{}",
            sandbox.id,
            ContainerRecord::name_key(&config, &sandbox)
        );
        let this = self.clone();
        self.container_calls
            .run(&key, async move {
                Ok(this
                    .containers
                    .create(&this.sandboxes, &this.images, &sandbox.id, config)
                    .await?)
            })
            .await
    }

    /// StartContainer, finished even when the client goes away.
    pub async fn start_container(self: &Arc<Self>, id: &str) -> crate::Result<()> {
        let id = self.containers.get(id)?.id;
        let this = self.clone();
        self.unit_calls
            .run(&format!("start/{id}"), async move {
                Ok(this.containers.start(&id).await?)
            })
            .await
    }

    /// StopPodSandbox: stop the pod's containers, then the pod. Idempotent: an unknown id (never
    /// created, or already removed) is not an error (CRI: "must not return an error if all
    /// relevant resources have already been reclaimed"; critest and containerd 2 agree).
    /// Finished even when the client goes away.
    pub async fn stop_pod(self: &Arc<Self>, id: &str) -> crate::Result<()> {
        let sandbox = match self.sandboxes.get(id) {
            Ok(s) => s,
            Err(crate::sandbox::SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let this = self.clone();
        self.unit_calls
            .run(&format!("stop-pod/{}", sandbox.id), async move {
                this.stop_pod_now(sandbox).await
            })
            .await
    }

    async fn stop_pod_now(&self, sandbox: SandboxRecord) -> crate::Result<()> {
        for c in self.pod_containers(&sandbox.id) {
            match self.containers.stop(&c, 0).await {
                Ok(()) | Err(crate::container::ContainerError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let was_ready = sandbox.state == crate::sandbox::SandboxState::Ready;
        self.sandboxes.stop(&sandbox.id).await?;
        if was_ready {
            self.events.pod(&sandbox.id, EventKind::Stopped);
        }
        Ok(())
    }

    /// RemovePodSandbox: remove the pod's containers, then the pod. Unknown ids are fine.
    /// Finished even when the client goes away.
    pub async fn remove_pod(self: &Arc<Self>, id: &str) -> crate::Result<()> {
        let sandbox = match self.sandboxes.get(id) {
            Ok(s) => s,
            Err(crate::sandbox::SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let this = self.clone();
        self.unit_calls
            .run(&format!("remove-pod/{}", sandbox.id), async move {
                for c in this.pod_containers(&sandbox.id) {
                    this.remove_container(&c).await?;
                }
                this.sandboxes.remove(&sandbox.id).await?;
                this.pod_calls.forget(|r| r.id == sandbox.id);
                this.events.pod(&sandbox.id, EventKind::Deleted);
                Ok(())
            })
            .await
    }

    /// RemoveContainer; when its image was removed meanwhile, the layers it held go now.
    pub async fn remove_container(&self, id: &str) -> crate::Result<()> {
        let (id, image) = match self.containers.get(id) {
            Ok(rec) => (rec.id, rec.image_id),
            Err(crate::container::ContainerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.containers.remove(&id).await?;
        self.container_calls.forget(|r| r.id == id);
        if self.images.resolve(&image).is_none() {
            self.images.gc().await?;
        }
        Ok(())
    }

    fn pod_containers(&self, sandbox_id: &str) -> Vec<String> {
        let filter = k8s_cri::v1::ContainerFilter {
            pod_sandbox_id: sandbox_id.to_string(),
            ..Default::default()
        };
        self.containers
            .list(Some(&filter))
            .into_iter()
            .filter(|c| c.sandbox_id == sandbox_id)
            .map(|c| c.id)
            .collect()
    }

    /// Recovery is over: CRI calls are served from now on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether recovery has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// The root directory's lock (`Daemon::lock_root`), held by the daemon for its life.
pub struct RootLock(Flock<File>);

fn take_lock(root: &Path) -> Result<Flock<File>, StartError> {
    let path = root.join("berthd.lock");
    let file = File::create(&path).map_err(|source| {
        StartError::Io(IoError::new(format!("creating {}", path.display()), source))
    })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| StartError::AlreadyRunning(root.display().to_string()))
}
