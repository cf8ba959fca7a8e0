//! The connection to berthd: one gRPC channel over its unix socket, and the two CRI clients.

use std::path::PathBuf;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// The CRI clients every verb uses.
pub struct Clients {
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    /// The channel itself, for berth's own API (`berth.v1`) beside CRI.
    pub ch: Channel,
}

impl Clients {
    /// Connect to berthd's socket (`unix://` prefix accepted).
    pub async fn connect(address: &str) -> anyhow::Result<Clients> {
        let ch = channel(address).await?;
        Ok(Clients {
            rt: RuntimeServiceClient::new(ch.clone()).max_decoding_message_size(64 << 20),
            img: ImageServiceClient::new(ch.clone()).max_decoding_message_size(64 << 20),
            ch,
        })
    }
}

async fn channel(address: &str) -> anyhow::Result<Channel> {
    let path = PathBuf::from(address.strip_prefix("unix://").unwrap_or(address));
    let shown = path.display().to_string();
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .with_context(|| format!("connecting to {shown}"))
}
