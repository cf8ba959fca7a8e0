//! Every command line berthd runs `berth-shim` with, as a type: berthd builds the argv with
//! `to_args`, the shim reads it back with `parse`, so the flags are spelled here only.
//!
//! ```text
//! berth-shim [--stdin open|once] --id ID --bundle DIR --socket PATH --log PATH --exit-file PATH
//! berth-shim exec --bundle DIR --pid PID --error-file PATH [--console-socket PATH
//!                 [--console-size WxH]] -- COMMAND [ARG...]
//! berth-shim pod-init --pin PATH
//! berth-shim pod-userns --uid-map C:H:L --gid-map C:H:L --dir DIR [--ns net,ipc,uts]
//!                       [--hostname NAME]
//! ```
//!
//! Flags take `--flag VALUE` or `--flag=VALUE`; relative paths are resolved against the
//! shim's working directory (the shim later runs from `/`).

mod exec;
mod flags;
mod pod_init;
mod pod_userns;
mod shim;

use std::ffi::{OsStr, OsString};

pub use exec::ExecArgs;
pub use pod_init::PodInitArgs;
pub use pod_userns::{IdMap, PodUsernsArgs};
pub use shim::{ShimArgs, StdinMode};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        for m in [Mode::Exec, Mode::PodInit, Mode::PodUserns] {
            assert_eq!(Mode::of(m.word().map(OsStr::new)), m);
        }
        assert_eq!(Mode::of(None), Mode::Shim);
        assert_eq!(Mode::of(Some(OsStr::new("--id"))), Mode::Shim);
    }
}
