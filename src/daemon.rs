//! The daemon's shared state: configuration, the root lock, the metadata store and the
//! domain services the CRI handlers call.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{Flock, FlockArg};

use crate::config::Config;
use crate::image::Images;
use crate::sandbox::Sandboxes;
use crate::store::Store;

/// Errors starting the daemon.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("another berthd is already using root {0} (its lock file {0}/berthd.lock is held)")]
    AlreadyRunning(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
}

/// Everything a CRI handler can reach.
pub struct Daemon {
    pub config: Config,
    pub images: Arc<Images>,
    pub sandboxes: Sandboxes,
    ready: AtomicBool,
    _lock: Flock<File>,
}

impl Daemon {
    /// Take the root lock, open the store and recover state.
    pub async fn open(config: Config) -> Result<Arc<Daemon>, StartError> {
        let io = |context: String| move |source| StartError::Io { context, source };
        for dir in [&config.root, &config.state] {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        let lock = take_lock(&config.root)?;
        let store = Arc::new(Store::open(&config.root.join("meta.db"))?);
        let sandboxes = Sandboxes::open(store.clone(), &config.state)?;
        let images = Images::open(
            store,
            &config.root,
            &config.registry.config_path,
            config.image.clone(),
        )
        .await?;
        Ok(Arc::new(Daemon {
            config,
            images: Arc::new(images),
            sandboxes,
            ready: AtomicBool::new(false),
            _lock: lock,
        }))
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

fn take_lock(root: &Path) -> Result<Flock<File>, StartError> {
    let path = root.join("berthd.lock");
    let file = File::create(&path).map_err(|source| StartError::Io {
        context: format!("creating {}", path.display()),
        source,
    })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| StartError::AlreadyRunning(root.display().to_string()))
}
