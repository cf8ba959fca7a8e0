//! Small OS helpers that berthd and berth-shim both need, written once: the new mount API, paths
//! resolved inside a root (`openat2(RESOLVE_IN_ROOT)`), the mountinfo format, atomic state
//! files, the clock the CRI reports in, bringing `lo` up, and passing a terminal between
//! processes (SCM_RIGHTS, window size).
//!
//! This crate sits at the bottom of the workspace: it depends on `libc` only, so linking it into
//! every shim costs nothing.

pub mod console;
pub mod fs;
pub mod in_root;
pub mod mount_api;
pub mod mountinfo;
pub mod netdev;
pub mod time;
