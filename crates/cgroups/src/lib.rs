//! A container's cgroup with the cgroupfs driver, v1 and v2: what berth-shim creates, limits,
//! reads and removes, and what berthd reads for pod stats.
//!
//! - [`Layout`] ([`layout`]): how the host mounts cgroups, detected once from
//!   `/sys/fs/cgroup`'s statfs magic: cgroup2 → unified; tmpfs with a cgroup2 `unified/` →
//!   hybrid (v1 controllers plus a controller-less v2 tree); anything else → legacy.
//! - [`Cgroup`] ([`cgroup`]): one container's cgroup, `linux.cgroupsPath` under every hierarchy
//!   root: create, join, apply `linux.resources`, stats, the OOM-kill counter, kill, destroy;
//!   [`CreatedCgroup`] removes it again if its container is not created after all.
//! - [`Controller`] ([`controller`]): one controller's part of `linux.resources` and its
//!   readings. Each lives in one file, [`v1`]`/<name>.rs` or [`v2`]`/<name>.rs`, and is listed
//!   once in that version's `CONTROLLERS`, in the order they are written.
//!
//! - [`HelperCgroup`] ([`helper`]): the cgroup of a shim or pod-init of its own, outside
//!   berthd's, so that restarting berthd's unit leaves them running.
//!
//! v2 device rules are an eBPF program berth emits and attaches ([`v2`]`/devices.rs`).
//!
//! - [`systemd`]: the systemd driver's `<slice>:<prefix>:<name>` paths (their cgroup directory
//!   is what [`relative_cgroup_path`] answers), unit names and properties; with feature `dbus`,
//!   the D-Bus client berthd starts, updates and stops container scopes with.
//!
//! Not here: blockIO, network and rdma resources (logged and skipped), relative cgroupsPaths
//! (refused).

pub mod cgroup;
mod common;
pub mod controller;
pub mod error;
pub mod helper;
pub mod layout;
pub mod stats;
pub mod systemd;
pub mod v1;
pub mod v2;

pub use cgroup::{Cgroup, CreatedCgroup, DESTROY_TIMEOUT, relative_cgroup_path};
pub use controller::Controller;
pub use error::{Error, Result};
pub use helper::HelperCgroup;
pub use layout::{CGROUP_ROOT, Layout, host_layout};
pub use stats::Stats;
pub use v1::{V1Cgroup, V1Dir, V1Mount};
pub use v2::V2Cgroup;
