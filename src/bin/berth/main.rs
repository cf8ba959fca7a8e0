//! berth: a small human CLI over CRI, for operators on the node (crictl works too).
//!
//! One module per verb or verb group; `client` holds the connection, `output` the table
//! helpers, `creds` where registry credentials come from.

mod client;
mod creds;
mod events;
mod exec;
mod images;
mod info;
mod inspect;
mod lifecycle;
mod logs;
mod output;
mod pods;
mod portforward;
mod ps;
mod pull;
mod resolve;
mod run;
mod stats;
mod stream;
mod term;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use k8s_cri::v1::ImageSpec;

use client::Clients;

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
    Pull(pull::PullArgs),
    /// List images.
    Images(images::ImagesArgs),
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
    Pods(pods::PodsArgs),
    /// List containers.
    Ps(ps::PsArgs),
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
    /// Run a command in a running container; exits with the command's status.
    Exec(exec::ExecArgs),
    /// Live CPU, memory and writable-layer usage of containers.
    Stats(stats::StatsArgs),
    /// Run a command in a new container, in a pod of its own (pulling the image if missing).
    Run(Box<run::RunArgs>),
    /// A container's log.
    Logs(logs::LogsArgs),
    /// Stop running containers (SIGTERM, then SIGKILL after --time).
    Stop(lifecycle::StopArgs),
    /// Start containers (an exited one is created again in its pod, as its next attempt).
    Start(lifecycle::StartArgs),
    /// Remove containers (and the pods `run` made for them).
    Rm(lifecycle::RmArgs),
    /// Attach this terminal to a running container's stdio.
    Attach(lifecycle::AttachArgs),
    /// Containers, pods or images as JSON.
    Inspect(inspect::InspectArgs),
    /// Container events as they happen.
    Events(events::EventsArgs),
    /// Forward local ports to a pod's ports.
    PortForward(portforward::PortForwardArgs),
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
    let result = rt.block_on(run(cli));
    // A session's stdin reader may still be blocked in read(2): do not wait for it.
    rt.shutdown_background();
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code.clamp(1, 255) as u8),
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("berth: {:?}: {}", s.code(), s.message()),
                None => eprintln!("berth: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// An image reference as CRI's ImageSpec.
pub fn image_spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

/// Runs one verb; the process exit status on success (a command's own status for exec).
async fn run(cli: Cli) -> anyhow::Result<i32> {
    let mut c = Clients::connect(&cli.address).await?;
    match cli.command {
        Cmd::Version => info::version(&mut c).await?,
        Cmd::Info => info::info(&mut c).await?,
        Cmd::Pull(a) => pull::run(&mut c, a).await?,
        Cmd::Images(a) => images::images(&mut c, a).await?,
        Cmd::Inspecti { image } => images::inspecti(&mut c, image).await?,
        Cmd::Rmi { images } => images::rmi(&mut c, images).await?,
        Cmd::Imagefsinfo => images::imagefsinfo(&mut c).await?,
        Cmd::Pods(a) => pods::pods(&mut c, a).await?,
        Cmd::Ps(a) => ps::run(&mut c, a).await?,
        Cmd::Stopp { ids } => pods::stopp(&mut c, ids).await?,
        Cmd::Rmp { ids } => pods::rmp(&mut c, ids).await?,
        Cmd::Exec(a) => return exec::run(&mut c, a).await,
        Cmd::Stats(a) => stats::run(&mut c, a).await?,
        Cmd::Run(a) => return run::run(&mut c, *a).await,
        Cmd::Logs(a) => logs::run(&mut c, a).await?,
        Cmd::Stop(a) => lifecycle::stop(&mut c, a).await?,
        Cmd::Start(a) => return lifecycle::start(&mut c, a).await,
        Cmd::Rm(a) => lifecycle::rm(&mut c, a).await?,
        Cmd::Attach(a) => return lifecycle::attach(&mut c, a).await,
        Cmd::Inspect(a) => inspect::run(&mut c, a).await?,
        Cmd::Events(a) => events::run(&mut c, a).await?,
        Cmd::PortForward(a) => portforward::run(&mut c, a).await?,
    }
    Ok(0)
}
