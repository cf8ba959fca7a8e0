//! Every command line berthd runs `berth-shim` with, as a type: berthd builds the argv with
//! `to_args`, the shim reads it back with `parse`, so the flags are spelled here only.
//!
//! ```text
//! berth-shim [--stdin open|once] --id ID --bundle DIR --socket PATH --log PATH --exit-file PATH
//!            [--log-format text|json] [--shim-log PATH]
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
mod mode;
mod pod_init;
mod pod_userns;
mod shim;

pub use exec::ExecArgs;
pub use mode::{ArgsError, Mode};
pub use pod_init::PodInitArgs;
pub use pod_userns::{IdMap, PodUsernsArgs};
pub use shim::{LogFormat, ShimArgs, StdinMode};

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn modes() {
        for m in [Mode::Exec, Mode::PodInit, Mode::PodUserns] {
            assert_eq!(Mode::of(m.word().map(OsStr::new)), m);
        }
        assert_eq!(Mode::of(None), Mode::Shim);
        assert_eq!(Mode::of(Some(OsStr::new("--id"))), Mode::Shim);
    }
}
