//! Which job a `berth-shim` command line asks for, and why one cannot be used.

use std::ffi::{OsStr, OsString};

/// Which of its jobs a `berth-shim` process does, named by its first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The per-container shim (no mode word).
    Shim,
    /// `exec`: run one command in a running container.
    Exec,
    /// `pod-init`: PID 1 of a pod's shared PID namespace.
    PodInit,
    /// `pod-userns`: pin a pod's user namespace and the namespaces it owns.
    PodUserns,
}

impl Mode {
    /// The mode of a command line from its first argument (after the program name).
    pub fn of(first: Option<&OsStr>) -> Mode {
        [Mode::Exec, Mode::PodInit, Mode::PodUserns]
            .into_iter()
            .find(|m| m.word().is_some_and(|w| first == Some(OsStr::new(w))))
            .unwrap_or(Mode::Shim)
    }

    /// The word that selects this mode.
    pub fn word(self) -> Option<&'static str> {
        match self {
            Mode::Shim => None,
            Mode::Exec => Some("exec"),
            Mode::PodInit => Some("pod-init"),
            Mode::PodUserns => Some("pod-userns"),
        }
    }
}

/// A command line the shim cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("argument {0:?} is not UTF-8")]
    NotUtf8(OsString),
    #[error("expected {0:?} first")]
    Mode(&'static str),
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("{0} needs a value")]
    NoValue(&'static str),
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{flag} {value:?} is not {expected}")]
    Invalid {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("no command after --")]
    NoCommand,
}
