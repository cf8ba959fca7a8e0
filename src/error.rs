//! The crate error and its one mapping to gRPC status codes.

use tonic::{Code, Status};

use crate::container::ContainerError;
use crate::image::ImageError;
use crate::sandbox::SandboxError;
use crate::store::StoreError;

/// Everything a CRI call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Internal(String),
    #[error("berthd is still recovering its state; retry shortly")]
    Recovering,
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Container(#[from] ContainerError),
}

/// The result of a domain call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC code a client sees for this error.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Internal(_) => Code::Internal,
            Error::Recovering => Code::Unavailable,
            Error::Store(_) => Code::Internal,
            Error::Container(e) => match e {
                ContainerError::InvalidArgument(_) | ContainerError::Spec(_) => {
                    Code::InvalidArgument
                }
                ContainerError::AlreadyExists(_) => Code::AlreadyExists,
                ContainerError::NotFound(_) => Code::NotFound,
                ContainerError::FailedPrecondition(_) => Code::FailedPrecondition,
                // The command cannot run (no such executable, bad user...): the client's to fix.
                ContainerError::Shim(crate::shim_client::ShimError::Create(_)) => {
                    Code::InvalidArgument
                }
                ContainerError::DeadlineExceeded(_) => Code::DeadlineExceeded,
                ContainerError::Shim(_)
                | ContainerError::Io { .. }
                | ContainerError::Store(_)
                | ContainerError::ExecFailed(_) => Code::Internal,
            },
            Error::Sandbox(e) => match e {
                SandboxError::InvalidArgument(_) => Code::InvalidArgument,
                SandboxError::AlreadyExists(_) => Code::AlreadyExists,
                SandboxError::NotFound(_) => Code::NotFound,
                SandboxError::Unimplemented(_) => Code::Unimplemented,
                SandboxError::NetworkNotReady(_) => Code::FailedPrecondition,
                SandboxError::Io { .. } | SandboxError::Store(_) | SandboxError::Cni(_) => {
                    Code::Internal
                }
            },
            Error::Image(e) => match e {
                ImageError::InvalidReference { .. } => Code::InvalidArgument,
                ImageError::NotFound { .. } => Code::NotFound,
                ImageError::Unauthenticated { .. } => Code::Unauthenticated,
                ImageError::PermissionDenied { .. } => Code::PermissionDenied,
                ImageError::Unavailable { .. } => Code::Unavailable,
                ImageError::InvalidImage { .. } | ImageError::UnsafeLayer { .. } => {
                    Code::InvalidArgument
                }
                // containerd's code for content that does not match its digest.
                ImageError::DigestMismatch { .. } => Code::FailedPrecondition,
                ImageError::Registry { .. } => Code::Unknown,
                ImageError::Io { .. } | ImageError::Store(_) | ImageError::Internal(_) => {
                    Code::Internal
                }
            },
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}
