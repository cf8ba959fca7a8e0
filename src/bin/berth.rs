//! berth: a small human CLI over CRI, for operators on the node (crictl works too).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, Parser)]
#[command(version, about = "Talk CRI to berthd")]
struct Cli {
    /// berthd's CRI socket (a unix:// prefix is accepted).
    #[arg(long, default_value = "/run/berth/berth.sock", env = "BERTH_ADDRESS")]
    address: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runtime name and versions.
    Version,
    /// Runtime and network conditions, with berthd's configuration.
    Info,
    /// Pull an image.
    Pull {
        image: String,
        /// Registry credentials as USER:PASSWORD.
        #[arg(long)]
        creds: Option<String>,
    },
    /// List images.
    Images {
        /// Only image ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// One image's status and config, as JSON.
    Inspecti { image: String },
    /// Remove images (by tag, digest or id).
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Image filesystem usage.
    Imagefsinfo,
    /// List pod sandboxes.
    Pods,
    /// List containers.
    Ps {
        /// Include exited containers.
        #[arg(short, long)]
        all: bool,
    },
    /// Stop pod sandboxes (their containers are killed).
    Stopp {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove pod sandboxes and their containers.
    Rmp {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Run a command in a running container (ExecSync); exits with the command's status.
    Exec {
        /// Seconds before the command is killed (0: no limit).
        #[arg(long, default_value_t = 0)]
        timeout: i64,
        /// Container id (or a unique prefix).
        id: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// CPU, memory and writable-layer usage of containers.
    Stats,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("berth: {:?}: {}", s.code(), s.message()),
                None => eprintln!("berth: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn channel(address: &str) -> anyhow::Result<Channel> {
    let path = PathBuf::from(address.strip_prefix("unix://").unwrap_or(address));
    let shown = path.display().to_string();
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower_service(path))
        .await
        .with_context(|| format!("connecting to {shown}"))
}

fn tower_service(
    path: PathBuf,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
    })
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}{}", UNITS[u])
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(13)]
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ch = channel(&cli.address).await?;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let mut img = ImageServiceClient::new(ch).max_decoding_message_size(64 << 20);
    match cli.command {
        Cmd::Version => {
            let v = rt.version(VersionRequest::default()).await?.into_inner();
            println!("Version:  {}", v.version);
            println!("RuntimeName:  {}", v.runtime_name);
            println!("RuntimeVersion:  {}", v.runtime_version);
            println!("RuntimeApiVersion:  {}", v.runtime_api_version);
        }
        Cmd::Info => {
            let s = rt
                .status(StatusRequest { verbose: true })
                .await?
                .into_inner();
            let mut info = serde_json::Map::new();
            for (k, v) in &s.info {
                let parsed =
                    serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.clone()));
                info.insert(k.clone(), parsed);
            }
            let out = serde_json::json!({ "status": s.status, "info": info });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Cmd::Pull { image, creds } => {
            let auth = match creds {
                Some(c) => {
                    let (u, p) = c.split_once(':').context("--creds must be USER:PASSWORD")?;
                    Some(AuthConfig {
                        username: u.to_string(),
                        password: p.to_string(),
                        ..Default::default()
                    })
                }
                None => None,
            };
            let r = img
                .pull_image(PullImageRequest {
                    image: spec(&image),
                    auth,
                    sandbox_config: None,
                })
                .await?
                .into_inner();
            println!("Image is up to date for {}", r.image_ref);
        }
        Cmd::Images { quiet } => {
            let list = img
                .list_images(ListImagesRequest { filter: None })
                .await?
                .into_inner()
                .images;
            if quiet {
                for i in &list {
                    println!("{}", i.id);
                }
                return Ok(());
            }
            println!(
                "{:<50} {:<20} {:<15} {:>10}",
                "IMAGE", "TAG", "IMAGE ID", "SIZE"
            );
            for i in &list {
                let names: Vec<(String, String)> = if i.repo_tags.is_empty() {
                    i.repo_digests
                        .iter()
                        .map(|d| {
                            (
                                d.split('@').next().unwrap_or(d).to_string(),
                                "<none>".into(),
                            )
                        })
                        .collect()
                } else {
                    i.repo_tags
                        .iter()
                        .map(|t| match t.rsplit_once(':') {
                            Some((n, tag)) if !tag.contains('/') => {
                                (n.to_string(), tag.to_string())
                            }
                            _ => (t.clone(), "<none>".into()),
                        })
                        .collect()
                };
                for (name, tag) in names {
                    println!(
                        "{:<50} {:<20} {:<15} {:>10}",
                        name,
                        tag,
                        short_id(&i.id),
                        human(i.size)
                    );
                }
            }
        }
        Cmd::Inspecti { image } => {
            let r = img
                .image_status(ImageStatusRequest {
                    image: spec(&image),
                    verbose: true,
                })
                .await?
                .into_inner();
            let Some(status) = r.image else {
                anyhow::bail!("no such image: {image}");
            };
            let mut out = serde_json::json!({ "status": status });
            if let Some(info) = r.info.get("info") {
                out["info"] = serde_json::from_str(info).unwrap_or_default();
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Cmd::Rmi { images } => {
            for image in images {
                let r = img
                    .image_status(ImageStatusRequest {
                        image: spec(&image),
                        verbose: false,
                    })
                    .await?
                    .into_inner();
                let Some(found) = r.image else {
                    anyhow::bail!("no such image: {image}");
                };
                img.remove_image(RemoveImageRequest {
                    image: spec(&image),
                })
                .await?;
                println!("Deleted: {image} ({})", found.id);
            }
        }
        Cmd::Pods => {
            let items = rt
                .list_pod_sandbox(ListPodSandboxRequest { filter: None })
                .await?
                .into_inner()
                .items;
            println!(
                "{:<15} {:<10} {:<30} {:<20}",
                "POD ID", "STATE", "NAME", "NAMESPACE"
            );
            for p in items {
                let m = p.metadata.unwrap_or_default();
                let state = if p.state == PodSandboxState::SandboxReady as i32 {
                    "Ready"
                } else {
                    "NotReady"
                };
                println!(
                    "{:<15} {:<10} {:<30} {:<20}",
                    short_id(&p.id),
                    state,
                    m.name,
                    m.namespace
                );
            }
        }
        Cmd::Ps { all } => {
            let containers = rt
                .list_containers(ListContainersRequest { filter: None })
                .await?
                .into_inner()
                .containers;
            println!(
                "{:<15} {:<30} {:<10} {:<25} {:<15}",
                "CONTAINER", "IMAGE", "STATE", "NAME", "POD ID"
            );
            for c in containers {
                let state = match ContainerState::try_from(c.state) {
                    Ok(ContainerState::ContainerCreated) => "Created",
                    Ok(ContainerState::ContainerRunning) => "Running",
                    Ok(ContainerState::ContainerExited) => "Exited",
                    _ => "Unknown",
                };
                if !all && state == "Exited" {
                    continue;
                }
                println!(
                    "{:<15} {:<30} {:<10} {:<25} {:<15}",
                    short_id(&c.id),
                    c.image.map(|i| i.image).unwrap_or_default(),
                    state,
                    c.metadata.map(|m| m.name).unwrap_or_default(),
                    short_id(&c.pod_sandbox_id)
                );
            }
        }
        Cmd::Exec { timeout, id, cmd } => {
            let r = rt
                .exec_sync(ExecSyncRequest {
                    container_id: id,
                    cmd,
                    timeout,
                })
                .await?
                .into_inner();
            use std::io::Write;
            std::io::stdout().write_all(&r.stdout)?;
            std::io::stderr().write_all(&r.stderr)?;
            std::io::stdout().flush()?;
            if r.exit_code != 0 {
                std::process::exit(r.exit_code.clamp(1, 255));
            }
        }
        Cmd::Stats => {
            let stats = rt
                .list_container_stats(ListContainerStatsRequest { filter: None })
                .await?
                .into_inner()
                .stats;
            println!(
                "{:<15} {:<25} {:>12} {:>12} {:>12}",
                "CONTAINER", "NAME", "CPU (ms)", "MEM (KiB)", "DISK (KiB)"
            );
            for s in stats {
                let a = s.attributes.unwrap_or_default();
                let v = |x: Option<UInt64Value>| x.map_or(0, |v| v.value);
                println!(
                    "{:<15} {:<25} {:>12} {:>12} {:>12}",
                    short_id(&a.id),
                    a.metadata.map(|m| m.name).unwrap_or_default(),
                    v(s.cpu.and_then(|c| c.usage_core_nano_seconds)) / 1_000_000,
                    v(s.memory.and_then(|m| m.working_set_bytes)) / 1024,
                    v(s.writable_layer.and_then(|w| w.used_bytes)) / 1024,
                );
            }
        }
        Cmd::Stopp { ids } => {
            for id in ids {
                rt.stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await?;
                println!("Stopped sandbox {id}");
            }
        }
        Cmd::Rmp { ids } => {
            for id in ids {
                rt.remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await?;
                println!("Removed sandbox {id}");
            }
        }
        Cmd::Imagefsinfo => {
            let r = img.image_fs_info(ImageFsInfoRequest {}).await?.into_inner();
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(())
}
