//! Pod sandboxes: metadata, name reservation, pinned namespaces, lifecycle and recovery.

pub mod namespaces;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use k8s_cri::v1::{NamespaceMode, PodSandboxConfig, PodSandboxFilter};
use serde::{Deserialize, Serialize};

use crate::ids::{Lookup, new_id};
use crate::store::{Change, SANDBOXES, Store, StoreError};
use namespaces::NsKind;

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
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Lifecycle state, as CRI has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// One pod sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// 64 hex characters.
    pub id: String,
    /// The config kubelet sent, verbatim.
    pub config: PodSandboxConfig,
    pub runtime_handler: String,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub state: SandboxState,
    /// Pinned namespaces: kind name → pin path.
    pub pins: Vec<(String, PathBuf)>,
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

    /// The path of a pinned namespace of this pod, if it has its own.
    pub fn pin(&self, kind: NsKind) -> Option<&Path> {
        self.pins
            .iter()
            .find(|(k, _)| k == kind.name())
            .map(|(_, p)| p.as_path())
    }
}

fn namespace_options(config: &PodSandboxConfig) -> k8s_cri::v1::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

#[derive(Default)]
struct Index {
    by_id: HashMap<String, SandboxRecord>,
    names: HashMap<String, String>,
}

/// All sandboxes: durable records plus an in-memory index for the kubelet's relists.
pub struct Sandboxes {
    store: Arc<Store>,
    ns_dir: PathBuf,
    index: RwLock<Index>,
    /// Serialises lifecycle changes (each is short; kubelet calls per pod are sequential anyway).
    lifecycle: tokio::sync::Mutex<()>,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Sandboxes {
    /// Load records; a pod whose pins vanished (the state dir is gone after a reboot) is
    /// reported NOTREADY, not lost.
    pub fn open(store: Arc<Store>, state_dir: &Path) -> Result<Sandboxes, SandboxError> {
        let ns_dir = state_dir.join("ns");
        std::fs::create_dir_all(&ns_dir).map_err(|source| SandboxError::Io {
            context: format!("creating {}", ns_dir.display()),
            source,
        })?;
        let mut index = Index::default();
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
            index
                .names
                .insert(SandboxRecord::name_key(&rec.config), rec.id.clone());
            index.by_id.insert(rec.id.clone(), rec);
        }
        store.apply(changes)?;
        Ok(Sandboxes {
            store,
            ns_dir,
            index: RwLock::new(index),
            lifecycle: tokio::sync::Mutex::new(()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Find a sandbox by full id or unique id prefix.
    pub fn get(&self, id: &str) -> Result<SandboxRecord, SandboxError> {
        let index = self.read();
        if id.is_empty() {
            return Err(SandboxError::InvalidArgument(
                "pod sandbox id is required".into(),
            ));
        }
        match crate::ids::by_prefix(&index.by_id, id) {
            Lookup::Found(r) => Ok(r.clone()),
            Lookup::Ambiguous => Err(SandboxError::InvalidArgument(format!(
                "pod sandbox id prefix {id:?} is ambiguous"
            ))),
            Lookup::Missing => Err(SandboxError::NotFound(format!(
                "pod sandbox {id:?} not found"
            ))),
        }
    }

    /// Sandboxes matching the CRI filter.
    pub fn list(&self, filter: Option<&PodSandboxFilter>) -> Vec<SandboxRecord> {
        let index = self.read();
        let mut out: Vec<SandboxRecord> = index
            .by_id
            .values()
            .filter(|r| match filter {
                None => true,
                Some(f) => {
                    (f.id.is_empty() || r.id.starts_with(&f.id))
                        && f.state.as_ref().is_none_or(|s| {
                            let want =
                                if s.state == k8s_cri::v1::PodSandboxState::SandboxReady as i32 {
                                    SandboxState::Ready
                                } else {
                                    SandboxState::NotReady
                                };
                            r.state == want
                        })
                        && f.label_selector
                            .iter()
                            .all(|(k, v)| r.config.labels.get(k) == Some(v))
                }
            })
            .cloned()
            .collect();
        out.sort_by_key(|r| r.created_at);
        out
    }

    /// RunPodSandbox: validate, reserve the name, pin namespaces, record. Undone on failure.
    pub async fn run(
        &self,
        config: PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<SandboxRecord, SandboxError> {
        let meta = config.metadata.clone().ok_or_else(|| {
            SandboxError::InvalidArgument("pod sandbox config has no metadata".into())
        })?;
        for (field, v) in [
            ("name", &meta.name),
            ("namespace", &meta.namespace),
            ("uid", &meta.uid),
        ] {
            if v.is_empty() {
                return Err(SandboxError::InvalidArgument(format!(
                    "pod sandbox metadata.{field} is required"
                )));
            }
        }
        if !runtime_handler.is_empty() {
            return Err(SandboxError::InvalidArgument(format!(
                "runtime handler {runtime_handler:?} is not configured (berth serves the default handler \"\")"
            )));
        }
        let ns = namespace_options(&config);
        if ns.network == NamespaceMode::Pod as i32 {
            return Err(SandboxError::Unimplemented(
                "pods with their own network namespace (CNI) are not supported by berth yet; use hostNetwork".into(),
            ));
        }
        if ns.pid == NamespaceMode::Pod as i32 {
            return Err(SandboxError::Unimplemented(
                "a shared pod PID namespace is not supported by berth yet".into(),
            ));
        }
        if ns.pid == NamespaceMode::Target as i32 || ns.ipc == NamespaceMode::Target as i32 {
            return Err(SandboxError::InvalidArgument(
                "namespace mode TARGET is only valid for containers".into(),
            ));
        }
        if ns
            .userns_options
            .as_ref()
            .is_some_and(|u| u.mode == NamespaceMode::Pod as i32)
        {
            return Err(SandboxError::Unimplemented(
                "user namespaces are not supported by berth yet".into(),
            ));
        }

        let _l = self.lifecycle.lock().await;
        let key = SandboxRecord::name_key(&config);
        if let Some(existing) = self.read().names.get(&key) {
            return Err(SandboxError::AlreadyExists(format!(
                "pod sandbox {key} already exists as {existing}"
            )));
        }
        let id = new_id().map_err(|source| SandboxError::Io {
            context: "generating a sandbox id".into(),
            source,
        })?;
        let dir = self.ns_dir.join(&id);
        let result = self.pin_all(&dir, &ns).and_then(|pins| {
            let rec = SandboxRecord {
                id: id.clone(),
                config,
                runtime_handler: runtime_handler.to_string(),
                created_at: now_nanos(),
                state: SandboxState::Ready,
                pins,
            };
            self.store
                .apply(vec![Change::put(SANDBOXES, &rec.id, &rec)?])?;
            Ok(rec)
        });
        match result {
            Ok(rec) => {
                let mut index = self.write();
                index.names.insert(key, rec.id.clone());
                index.by_id.insert(rec.id.clone(), rec.clone());
                tracing::info!(sandbox = %rec.id, "pod sandbox ready");
                Ok(rec)
            }
            Err(e) => {
                if let Err(c) = release_dir(&dir) {
                    tracing::error!(error = %c, sandbox = %id, "cleanup after a failed RunPodSandbox");
                    return Err(SandboxError::Io {
                        context: format!("{e}; and cleaning up failed"),
                        source: c,
                    });
                }
                Err(e)
            }
        }
    }

    fn pin_all(
        &self,
        dir: &Path,
        ns: &k8s_cri::v1::NamespaceOption,
    ) -> Result<Vec<(String, PathBuf)>, SandboxError> {
        std::fs::create_dir_all(dir).map_err(|source| SandboxError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        let mut pins = Vec::new();
        // IPC is private unless hostIPC. UTS and network follow hostNetwork: a host-network pod
        // keeps the node's hostname, as kubelet expects.
        if ns.ipc != NamespaceMode::Node as i32 {
            let p = dir.join("ipc");
            namespaces::pin_new(NsKind::Ipc, &p, None).map_err(|source| SandboxError::Io {
                context: format!("pinning the IPC namespace at {}", p.display()),
                source,
            })?;
            pins.push(("ipc".to_string(), p));
        }
        Ok(pins)
    }

    /// StopPodSandbox: release the pod's namespaces; NOTREADY. Idempotent.
    pub async fn stop(&self, id: &str) -> Result<(), SandboxError> {
        let _l = self.lifecycle.lock().await;
        let mut rec = self.get(id)?;
        if rec.state == SandboxState::NotReady && rec.pins.is_empty() {
            return Ok(());
        }
        release_dir(&self.ns_dir.join(&rec.id)).map_err(|source| SandboxError::Io {
            context: format!("releasing the namespaces of pod sandbox {}", rec.id),
            source,
        })?;
        rec.state = SandboxState::NotReady;
        rec.pins.clear();
        self.store
            .apply(vec![Change::put(SANDBOXES, &rec.id, &rec)?])?;
        self.write().by_id.insert(rec.id.clone(), rec.clone());
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
        self.store.apply(vec![Change::delete(SANDBOXES, &rec.id)])?;
        let mut index = self.write();
        index.by_id.remove(&rec.id);
        let key = SandboxRecord::name_key(&rec.config);
        if index.names.get(&key) == Some(&rec.id) {
            index.names.remove(&key);
        }
        tracing::info!(sandbox = %rec.id, "pod sandbox removed");
        Ok(())
    }
}

/// Unpin every namespace under a pod's ns dir and remove the dir.
fn release_dir(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        namespaces::unpin(&e?.path())?;
    }
    std::fs::remove_dir(dir)
}
