//! The error of a CRI call and its one mapping to gRPC codes.
//!
//! Every domain error (containers, sandboxes, images, the store, ...) states its own [`Kind`]
//! through [`DomainError`]; this file turns kinds into codes and knows no domain type, so the
//! domain modules can use it without an import cycle. An I/O failure is one [`IoError`] (what
//! berth was doing, and the OS error) in every module.

use tonic::{Code, Status};

/// What kind of failure an error is, as a CRI client must see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Unimplemented,
    Unauthenticated,
    PermissionDenied,
    Unavailable,
    DeadlineExceeded,
    /// A failure of the node or of berth, not of the request.
    Internal,
    /// An answer berth cannot classify (a registry's own error).
    Unknown,
}

impl Kind {
    /// The gRPC code of this kind.
    pub fn code(self) -> Code {
        match self {
            Kind::InvalidArgument => Code::InvalidArgument,
            Kind::NotFound => Code::NotFound,
            Kind::AlreadyExists => Code::AlreadyExists,
            Kind::FailedPrecondition => Code::FailedPrecondition,
            Kind::Unimplemented => Code::Unimplemented,
            Kind::Unauthenticated => Code::Unauthenticated,
            Kind::PermissionDenied => Code::PermissionDenied,
            Kind::Unavailable => Code::Unavailable,
            Kind::DeadlineExceeded => Code::DeadlineExceeded,
            Kind::Internal => Code::Internal,
            Kind::Unknown => Code::Unknown,
        }
    }
}

/// An error of a domain module, which knows what kind of failure it is.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    fn kind(&self) -> Kind;
}

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
    /// A domain call failed; the error says its own kind.
    #[error("{0}")]
    Domain(Box<dyn DomainError>),
}

impl<E: DomainError> From<E> for Error {
    fn from(e: E) -> Error {
        Error::Domain(Box::new(e))
    }
}

/// The result of a domain call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> Kind {
        match self {
            Error::InvalidArgument(_) => Kind::InvalidArgument,
            Error::NotFound(_) => Kind::NotFound,
            Error::Unimplemented(_) => Kind::Unimplemented,
            Error::FailedPrecondition(_) => Kind::FailedPrecondition,
            Error::Internal(_) => Kind::Internal,
            Error::Recovering => Kind::Unavailable,
            Error::Domain(e) => e.kind(),
        }
    }

    /// The gRPC code a client sees for this error.
    pub fn code(&self) -> Code {
        self.kind().code()
    }
}

/// The longest message a status carries: it travels in an HTTP/2 header (grpc-message), and
/// clients drop the connection over a header list beyond 16 KiB (hyper's default), so an error
/// that quotes a huge request field must not lose the answer.
pub const MAX_STATUS_MESSAGE: usize = 4096;

/// `message` cut to at most MAX_STATUS_MESSAGE bytes (on a character boundary), saying so.
pub fn status_message(mut message: String) -> String {
    if message.len() > MAX_STATUS_MESSAGE {
        let mut end = MAX_STATUS_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let cut = message.len() - end;
        message.truncate(end);
        message.push_str(&format!("... ({cut} more bytes)"));
    }
    message
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), status_message(e.to_string()))
    }
}

/// An I/O failure and what berth was doing when it happened.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct IoError {
    pub context: String,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(context: impl Into<String>, source: std::io::Error) -> IoError {
        IoError {
            context: context.into(),
            source,
        }
    }
}

/// `.context("doing x")?` on an I/O result.
pub trait IoContext<T> {
    /// The error, saying what was being done.
    fn context(self, context: impl Into<String>) -> std::result::Result<T, IoError>;
    /// As `context`, the text built only on failure.
    fn with_context(self, context: impl FnOnce() -> String) -> std::result::Result<T, IoError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl Into<String>) -> std::result::Result<T, IoError> {
        self.map_err(|source| IoError::new(context, source))
    }

    fn with_context(self, context: impl FnOnce() -> String) -> std::result::Result<T, IoError> {
        self.map_err(|source| IoError::new(context(), source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("gone")]
    struct Gone;

    impl DomainError for Gone {
        fn kind(&self) -> Kind {
            Kind::NotFound
        }
    }

    #[test]
    fn domain_errors_keep_their_kind_and_text() {
        let e = Error::from(Gone);
        assert_eq!(e.code(), Code::NotFound);
        let s = Status::from(e);
        assert_eq!((s.code(), s.message()), (Code::NotFound, "gone"));
        assert_eq!(Error::Recovering.code(), Code::Unavailable);
        let io: std::io::Result<()> = Err(std::io::Error::other("boom"));
        assert_eq!(
            io.context("doing x").unwrap_err().to_string(),
            "doing x: boom"
        );
    }
}

#[cfg(test)]
mod status_message_tests {
    use super::*;

    #[test]
    fn a_huge_message_is_cut_on_a_char_boundary() {
        assert_eq!(status_message("short".into()), "short");
        let long = format!("x{}", "é".repeat(10_000));
        let cut = status_message(long.clone());
        assert!(cut.len() < MAX_STATUS_MESSAGE + 40, "{}", cut.len());
        assert!(long.starts_with(cut.split("...").next().unwrap()));
        assert!(cut.ends_with("more bytes)"));
        let status = Status::from(Error::InvalidArgument(long));
        assert!(status.message().len() < MAX_STATUS_MESSAGE + 40);
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}
