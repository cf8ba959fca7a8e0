//! `ps`: list containers.

use k8s_cri::v1::{ContainerState, ListContainersRequest};

use crate::client::Clients;
use crate::output::short_id;

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Include exited containers.
    #[arg(short, long)]
    pub all: bool,
}

pub async fn run(c: &mut Clients, a: PsArgs) -> anyhow::Result<()> {
    let containers =
        c.rt.list_containers(ListContainersRequest { filter: None })
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
        if !a.all && state == "Exited" {
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
    Ok(())
}
