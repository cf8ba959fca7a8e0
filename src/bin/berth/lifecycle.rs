//! `stop`, `start`, `rm`, `attach`, and waiting for a container's exit.

use std::time::Duration;

use anyhow::Context;
use k8s_cri::v1::*;

use crate::client::Clients;
use crate::resolve::{self, RUN_LABEL};

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: i64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Stop a running container first (SIGKILL).
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Attach to the container's output (and stdin with -i) and exit with its code.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin.
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Do not attach stdin.
    #[arg(long)]
    pub no_stdin: bool,
    pub container: String,
}

pub async fn status(
    c: &mut Clients,
    id: &str,
    verbose: bool,
) -> anyhow::Result<ContainerStatusResponse> {
    Ok(c.rt
        .container_status(ContainerStatusRequest {
            container_id: id.to_string(),
            verbose,
        })
        .await?
        .into_inner())
}

/// Wait until the container has exited; its exit code.
pub async fn wait_exit(c: &mut Clients, id: &str) -> anyhow::Result<i32> {
    loop {
        let s = status(c, id, false)
            .await?
            .status
            .context("ContainerStatus without a status")?;
        if s.state == ContainerState::ContainerExited as i32 {
            return Ok(s.exit_code);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn stop(c: &mut Clients, a: StopArgs) -> anyhow::Result<()> {
    for key in a.containers {
        let ctr = resolve::container(c, &key).await?;
        c.rt.stop_container(StopContainerRequest {
            container_id: ctr.id.clone(),
            timeout: a.time,
        })
        .await?;
        println!("{key}");
    }
    Ok(())
}

/// Stop and remove a pod, reporting failures on stderr only (a cleanup).
pub async fn remove_pod(c: &mut Clients, pod: &str) {
    let log_dir =
        c.rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.to_string(),
            verbose: true,
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().info.get("info").cloned())
        .and_then(|i| serde_json::from_str::<serde_json::Value>(&i).ok())
        .and_then(|v| v["config"]["log_directory"].as_str().map(str::to_string));
    let stop =
        c.rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.to_string(),
        })
        .await;
    let removed =
        c.rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.to_string(),
        })
        .await;
    if let Err(e) = stop.and(removed) {
        eprintln!("berth: removing pod {pod}: {}", e.message());
        return;
    }
    if let Some(dir) = log_dir.filter(|d| !d.is_empty()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Remove a container, and its pod when `berth run` made it and nothing else is in it.
pub async fn remove(c: &mut Clients, id: &str, pod: &str, force: bool) -> anyhow::Result<()> {
    if force {
        c.rt.stop_container(StopContainerRequest {
            container_id: id.to_string(),
            timeout: 0,
        })
        .await?;
    }
    c.rt.remove_container(RemoveContainerRequest {
        container_id: id.to_string(),
    })
    .await?;
    let pods = resolve::pods(c).await?;
    let made_by_run = pods
        .iter()
        .any(|p| p.id == pod && p.labels.get(RUN_LABEL).is_some_and(|v| v == "true"));
    if made_by_run {
        let left = resolve::containers(c)
            .await?
            .iter()
            .any(|x| x.pod_sandbox_id == pod);
        if !left {
            remove_pod(c, pod).await;
        }
    }
    Ok(())
}

pub async fn rm(c: &mut Clients, a: RmArgs) -> anyhow::Result<()> {
    for key in a.containers {
        let ctr = resolve::container(c, &key).await?;
        let running = ctr.state == ContainerState::ContainerRunning as i32;
        if running && !a.force {
            anyhow::bail!("container {key} is running: stop it first or use rm -f");
        }
        remove(c, &ctr.id, &ctr.pod_sandbox_id, a.force).await?;
        println!("{key}");
    }
    Ok(())
}

/// Start created containers; an exited one is created again from its own config in its pod
/// (CRI starts a container once), as the next attempt, and the old one removed.
pub async fn start(c: &mut Clients, a: StartArgs) -> anyhow::Result<i32> {
    let mut last = None;
    for key in &a.containers {
        let ctr = resolve::container(c, key).await?;
        let id = match ContainerState::try_from(ctr.state) {
            Ok(ContainerState::ContainerRunning) => ctr.id.clone(),
            Ok(ContainerState::ContainerCreated) => {
                c.rt.start_container(StartContainerRequest {
                    container_id: ctr.id.clone(),
                })
                .await?;
                ctr.id.clone()
            }
            _ => restart(c, &ctr).await?,
        };
        if !a.attach {
            println!("{key}");
        }
        last = Some(id);
    }
    if a.attach
        && let Some(id) = last
    {
        let tty = tty_of(c, &id).await?;
        crate::run::attach_session(c, &id, a.interactive, tty).await?;
        return wait_exit(c, &id).await;
    }
    Ok(0)
}

async fn restart(c: &mut Clients, ctr: &Container) -> anyhow::Result<String> {
    let info = status(c, &ctr.id, true).await?.info;
    let config: ContainerConfig = info
        .get("info")
        .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
        .and_then(|v| serde_json::from_value(v["config"].clone()).ok())
        .context("the runtime did not say how the container was made: cannot start it again")?;
    let pod_config =
        c.rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: ctr.pod_sandbox_id.clone(),
            verbose: true,
        })
        .await?
        .into_inner()
        .info
        .get("info")
        .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
        .and_then(|v| serde_json::from_value::<PodSandboxConfig>(v["config"].clone()).ok());
    let mut config = config;
    let meta = config.metadata.get_or_insert_with(Default::default);
    meta.attempt += 1;
    config.log_path = format!("{}/{}.log", meta.name, meta.attempt);
    c.rt.remove_container(RemoveContainerRequest {
        container_id: ctr.id.clone(),
    })
    .await?;
    let id =
        c.rt.create_container(CreateContainerRequest {
            pod_sandbox_id: ctr.pod_sandbox_id.clone(),
            config: Some(config),
            sandbox_config: pod_config,
        })
        .await?
        .into_inner()
        .container_id;
    c.rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await?;
    Ok(id)
}

/// Whether the container has a terminal (from its config).
pub async fn tty_of(c: &mut Clients, id: &str) -> anyhow::Result<bool> {
    let info = status(c, id, true).await?.info;
    Ok(info
        .get("info")
        .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
        .and_then(|v| v["config"]["tty"].as_bool())
        .unwrap_or(false))
}

pub async fn attach(c: &mut Clients, a: AttachArgs) -> anyhow::Result<i32> {
    let ctr = resolve::container(c, &a.container).await?;
    let tty = tty_of(c, &ctr.id).await?;
    crate::run::attach_session(c, &ctr.id, !a.no_stdin, tty).await?;
    wait_exit(c, &ctr.id).await
}
