//! The berthd <-> berth-shim API, generated from `proto/shim.proto`.

#![allow(clippy::all)]

/// `berth.shim.v1`: messages, client and server.
pub mod v1 {
    tonic::include_proto!("berth.shim.v1");
}
