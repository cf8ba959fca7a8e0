//! What the executor fails with: one error type whose message is what berthd shows the user,
//! and `Context` to say what was being done when a system call failed.

use std::fmt::Display;
use std::path::PathBuf;

/// Executor errors. The message is what berthd shows the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("loading {path}: {source}")]
    LoadSpec {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("{context}: {source}")]
    Sys { context: String, source: nix::Error },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The container's command could not be executed (`code` is its exit code, 126 or 127).
    #[error("{message}")]
    Exec { code: i32, message: String },
    /// The init process reported an error or died during setup.
    #[error("{0}")]
    Init(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<berth_cgroups::Error> for Error {
    fn from(e: berth_cgroups::Error) -> Error {
        use berth_cgroups::Error as E;
        match e {
            E::InvalidSpec(m) => Error::InvalidSpec(m),
            E::Unsupported(m) => Error::Unsupported(m),
            E::Io { context, source } => Error::Io {
                context: format!("cgroup: {context}"),
                source,
            },
            e @ (E::Busy(_) | E::Systemd(_)) => Error::Init(format!("cgroup: {e}")),
        }
    }
}

/// Attach a description of what was being done to a system error.
pub(crate) trait Context<T> {
    fn ctx<C: Display>(self, what: impl FnOnce() -> C) -> Result<T>;
}

impl<T> Context<T> for Result<T, nix::Error> {
    fn ctx<C: Display>(self, what: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|source| Error::Sys {
            context: what().to_string(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn ctx<C: Display>(self, what: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what().to_string(),
            source,
        })
    }
}
