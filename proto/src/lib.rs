//! The one contract between berthd and berth-shim, written once for both sides (as conmon-rs's
//! `common` crate is for its daemon and monitor):
//!
//! - [`v1`]: the Shim gRPC API, generated from `proto/shim.proto`;
//! - [`api`]: berth's own API (`berth.v1`, `proto/berth.proto`), which berthd serves beside CRI
//!   for berth's tools (pull progress);
//! - [`args`]: every `berth-shim` command line as a type berthd builds and the shim parses;
//! - [`handshake`]: the one line a starting shim (or pod init) answers on its stdout pipe;
//! - [`exit`]: the exit record the shim leaves for berthd when the container's init exits;
//! - [`exec_error`]: how an exec helper says its command could not start;
//! - [`paths`]: where a container's shim keeps its socket and exit record;
//! - [`labels`]: the CRI labels the `berth` CLI sets that berthd acts on.
//!
//! A shim outlives the berthd that started it, so every wire format here stays readable by the
//! other side's older and newer versions: flags, handshake text and JSON field names only grow.

pub mod args;
pub mod exec_error;
pub mod exit;
pub mod handshake;
pub mod paths;

/// CRI labels the `berth` CLI puts on what it makes and berthd acts on (kubelet sets none).
pub mod labels {
    /// On every pod `berth run` makes (one per container): removing its last container
    /// removes the pod too.
    pub const RUN_POD: &str = "io.berth.cli/run";
    /// On a container of `berth run -d --rm`: berthd removes it once it has exited (docker's
    /// AutoRemove), with its `berth run` pod.
    pub const AUTO_REMOVE: &str = "io.berth.cli/auto-remove";
}

/// `berth.shim.v1`: messages, client and server.
#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("berth.shim.v1");
}

/// `berth.v1`: berth's own API, served by berthd on the CRI socket (see `proto/berth.proto`).
#[allow(clippy::all)]
pub mod api {
    pub mod v1 {
        tonic::include_proto!("berth.v1");
    }
}
