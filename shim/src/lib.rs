//! berth-shim: one per container. It creates the container with the built-in OCI executor,
//! owns its stdio and CRI log, reaps it, records its exit, and serves the Shim gRPC API
//! (`proto/shim.proto`) on a unix socket.
//!
//! - [`daemon`]: detaching and writing the startup handshake (the command lines, handshake and
//!   exit record are `berth_proto`'s, shared with berthd);
//! - [`executor`]: bundle → init process in the CREATED state → exec;
//! - [`io`]: stdio pipes / pty and the CRI log writer;
//! - [`log`]: the shim's own log, tagged with its container, to berthd's stream and a rotated file;
//! - [`server`]: the Shim service and the exit path;
//! - [`pod_init`]: `berth-shim pod-init`, PID 1 of a pod's shared PID namespace;
//! - [`pod_userns`]: `berth-shim pod-userns`, a pod's user namespace and the namespaces it owns.

pub mod daemon;
pub mod executor;
pub mod io;
pub mod log;
pub mod pod_init;
pub mod pod_userns;
pub mod server;
