//! Benchmark (not a test): PullImage of a multi-layer image from a local docker-registry,
//! berth against containerd's CRI plugin (when `containerd` is installed), same client, same
//! registry, same machine. Each round removes the image so the next pull downloads and
//! unpacks everything again.
//!
//!   cargo bench -p berth-e2e --bench pull            (make bench)
//!   env: BENCH_LAYERS (8), BENCH_LAYER_MIB (16), BENCH_ROUNDS (5)
//!
//! Runs as root inside its own network namespace; everything it starts listens there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::images::push_multilayer;
use berth_e2e::netns;
use berth_e2e::node::{Node, cri_channel};
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

/// containerd with its CRI plugin on private dirs, pointed at the plain-HTTP registry.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    socket: PathBuf,
}

impl Containerd {
    fn start(registry: &str) -> Option<Containerd> {
        let bin = ["/usr/bin/containerd", "/usr/local/bin/containerd"]
            .into_iter()
            .find(|p| Path::new(p).is_file())?;
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-containerd-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let d = dir.path();
        let certs = d.join("certs.d").join(registry);
        std::fs::create_dir_all(&certs).expect("mkdir");
        std::fs::create_dir_all(d.join("cni")).expect("mkdir");
        std::fs::write(
            certs.join("hosts.toml"),
            format!(
                "server = \"http://{registry}\"\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )
        .expect("hosts.toml");
        let socket = d.join("containerd.sock");
        let config = d.join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
                root = d.join("root").display(),
                state = d.join("state").display(),
                socket = socket.display(),
                cni = d.join("cni").display(),
                certs = d.join("certs.d").display(),
            ),
        )
        .expect("config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("log");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(socket.exists(), "containerd did not start");
        Some(Containerd { dir, child, socket })
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        // containerd leaves its overlay snapshots mounted nowhere for pulls; remove its dirs.
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
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
        match Containerd::start(&reg.addr) {
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
