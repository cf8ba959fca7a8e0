//! The CRI gRPC servers. Handlers translate a request, call one domain function and translate
//! the answer; every call goes through [`instrument::call`]. [`berth_api`] is berth's own API
//! (`berth.v1`), served on the same socket.

pub mod authority;
pub mod berth_api;
pub mod image;
pub mod instrument;
pub mod runtime;

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

use crate::daemon::Daemon;

/// Largest gRPC message berthd sends or accepts (kubelet's limit too): kubelet sends image lists
/// and container lists well beyond the 4 MiB default.
pub const MAX_MESSAGE: usize = 16 << 20;

/// The gRPC services for one daemon.
pub fn services(
    daemon: Arc<Daemon>,
) -> (
    RuntimeServiceServer<runtime::RuntimeServer>,
    ImageServiceServer<image::ImageServer>,
) {
    (
        RuntimeServiceServer::new(runtime::RuntimeServer::new(daemon.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
        ImageServiceServer::new(image::ImageServer::new(daemon))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
}
