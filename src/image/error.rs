//! What image operations fail with; each error names the image and the cause, and its kind.

use crate::error::{DomainError, IoError, Kind};
use crate::store::StoreError;

/// Errors of image operations; each names the image and the cause.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {image} not found: {cause}")]
    NotFound { image: String, cause: String },
    #[error("pulling {image}: authentication required: {cause}")]
    Unauthenticated { image: String, cause: String },
    #[error("pulling {image}: access denied: {cause}")]
    PermissionDenied { image: String, cause: String },
    #[error("pulling {image}: registry unavailable: {cause}")]
    Unavailable { image: String, cause: String },
    #[error("pulling {image}: invalid image: {cause}")]
    InvalidImage { image: String, cause: String },
    #[error("pulling {image}: refusing layer {layer}: {cause}")]
    UnsafeLayer {
        image: String,
        layer: String,
        cause: String,
    },
    #[error("pulling {image}: {cause}")]
    DigestMismatch { image: String, cause: String },
    #[error("pulling {image}: registry error: {cause}")]
    Registry { image: String, cause: String },
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl DomainError for ImageError {
    fn kind(&self) -> Kind {
        match self {
            ImageError::InvalidReference { .. } => Kind::InvalidArgument,
            ImageError::NotFound { .. } => Kind::NotFound,
            ImageError::Unauthenticated { .. } => Kind::Unauthenticated,
            ImageError::PermissionDenied { .. } => Kind::PermissionDenied,
            ImageError::Unavailable { .. } => Kind::Unavailable,
            ImageError::InvalidImage { .. } | ImageError::UnsafeLayer { .. } => {
                Kind::InvalidArgument
            }
            // containerd's code for content that does not match its digest.
            ImageError::DigestMismatch { .. } => Kind::FailedPrecondition,
            ImageError::Registry { .. } => Kind::Unknown,
            ImageError::Io(_) | ImageError::Store(_) | ImageError::Internal(_) => Kind::Internal,
        }
    }
}
