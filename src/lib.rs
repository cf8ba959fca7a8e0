//! berth: a Kubernetes node container runtime (CRI v1) — the daemon library.

pub mod cgroup_driver;
pub mod config;
pub mod container;
pub mod daemon;
pub mod error;
pub mod events;
pub mod http_limits;
pub mod ids;
pub mod image;
pub mod metrics;
pub mod network;
pub mod process_metrics;
pub mod records;
pub mod registry;
pub mod sandbox;
pub mod sd_notify;
pub mod server;
pub mod shim_client;
pub mod shim_logs;
pub mod shim_view;
pub mod snapshot;
pub mod store;
pub mod streaming;

pub use error::{Error, Result};
