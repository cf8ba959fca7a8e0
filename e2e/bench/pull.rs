//! Benchmark (not a test): PullImage of a multi-layer image from a local docker-registry,
//! berth against containerd's CRI plugin (when `containerd` is installed), same client, same
//! registry, same machine. Each round removes the image so the next pull downloads and
//! unpacks everything again.
//!
//!   cargo bench -p berth-e2e --bench pull            (make bench)
//!   env: BENCH_LAYERS (8), BENCH_LAYER_MIB (16), BENCH_ROUNDS (5)
//!
//! Runs as root inside its own network namespace; everything it starts listens there.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_e2e::images::push_multilayer;
use berth_e2e::netns;
use berth_e2e::node::{Node, cri_channel};
use berth_e2e::peer::Containerd;
use berth_e2e::registry::{Registry, RegistryOpts, install_crypto_provider};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{ImageSpec, PullImageRequest, RemoveImageRequest};
use tonic::transport::Channel;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn connect(socket: &Path) -> ImageServiceClient<Channel> {
    ImageServiceClient::new(cri_channel(socket).await.expect("connect"))
        .max_decoding_message_size(64 << 20)
}

/// Pull + remove `rounds` times; returns each pull's duration.
async fn measure(socket: &Path, image: &str, rounds: usize) -> Vec<Duration> {
    let mut c = connect(socket).await;
    let spec = || {
        Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        })
    };
    let mut out = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        c.pull_image(PullImageRequest {
            image: spec(),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap_or_else(|e| panic!("pull {image} via {}: {e:?}", socket.display()));
        out.push(t.elapsed());
        c.remove_image(RemoveImageRequest { image: spec() })
            .await
            .expect("remove");
    }
    out
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // cargo bench passes --bench; nothing to parse beyond the environment.
    netns::enter_private_netns();
    install_crypto_provider();
    let layers = env_num("BENCH_LAYERS", 8);
    let mib = env_num("BENCH_LAYER_MIB", 16);
    let rounds = env_num("BENCH_ROUNDS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let reg = Registry::start(RegistryOpts::default());
        let img = push_multilayer(&reg, "bench/multilayer:latest", layers, mib << 20).await;
        let total = img.compressed_size as f64 / (1 << 20) as f64;
        println!(
            "image {}: {} layers, {total:.1} MiB compressed; {rounds} rounds each",
            img.reference(),
            img.layer_digests.len()
        );
        let node = Node::start().await;
        // One warm-up pull each, so neither side pays first-connection costs in the figures.
        measure(&node.socket, &img.reference(), 1).await;
        let berth = measure(&node.socket, &img.reference(), rounds).await;
        let b = median(&berth);
        println!(
            "berth:      median {:>8.1} ms  ({:.0} MiB/s)  all: {:?}",
            b.as_secs_f64() * 1e3,
            total / b.as_secs_f64(),
            berth.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
        );
        drop(node);
        match Containerd::start(&reg.addr, None) {
            None => println!("containerd: not installed (apt-get install containerd) — no ratio"),
            Some(ctr) => {
                measure(&ctr.socket, &img.reference(), 1).await;
                let peer = measure(&ctr.socket, &img.reference(), rounds).await;
                let c = median(&peer);
                println!(
                    "containerd: median {:>8.1} ms  ({:.0} MiB/s)  all: {:?}",
                    c.as_secs_f64() * 1e3,
                    total / c.as_secs_f64(),
                    peer.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
                );
                println!(
                    "throughput ratio berth/containerd: {:.2}x",
                    c.as_secs_f64() / b.as_secs_f64()
                );
            }
        }
    });
}
