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
    /// systemd refused or failed a unit operation (the systemd driver).
    #[error("systemd: {0}")]
    Systemd(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// rmdir failed only because the cgroup is not empty yet (worth retrying).
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy(_))
    }

    /// The kernel refused a value written to a cgroup file (EINVAL, ERANGE: a quota below the
    /// minimum, CPUs or memory nodes the machine does not have): the request's to fix.
    pub fn is_refused_value(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::EINVAL | libc::ERANGE)))
    }

    /// The kernel cannot apply a value now (EBUSY: a memory limit below what the cgroup
    /// uses), though it may later.
    pub fn is_busy_write(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_the_kernel_refuses_are_the_requests_to_fix() {
        let io = |errno| Error::Io {
            context: "writing cpu.cfs_quota_us".into(),
            source: io::Error::from_raw_os_error(errno),
        };
        assert!(io(libc::EINVAL).is_refused_value());
        assert!(io(libc::ERANGE).is_refused_value());
        assert!(!io(libc::EBUSY).is_refused_value());
        assert!(!io(libc::ENOENT).is_refused_value());
        assert!(!Error::Busy(PathBuf::from("/x")).is_refused_value());
        assert!(io(libc::EBUSY).is_busy_write() && !io(libc::EINVAL).is_busy_write());
    }
}
