//! cgroup errors. The message is what berthd shows the user.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// rmdir refused: processes (or exiting ones) are still in it.
    #[error("removing {0}: the cgroup still has processes")]
    Busy(PathBuf),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// rmdir failed only because the cgroup is not empty yet (worth retrying).
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy(_))
    }

    /// Say what was being done (`"applying linux.resources"`) before an I/O error's context.
    pub fn context(self, what: &str) -> Error {
        match self {
            Error::Io { context, source } => Error::Io {
                context: format!("{what}: {context}"),
                source,
            },
            e => e,
        }
    }
}

/// An I/O error with what was being done.
pub(crate) fn io_err(context: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io {
        context: context(),
        source,
    }
}
