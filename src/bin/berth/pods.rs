//! Pod verbs: `pods`, `stopp`, `rmp`.

use k8s_cri::v1::{
    ListPodSandboxRequest, PodSandboxState, RemovePodSandboxRequest, StopPodSandboxRequest,
};

use crate::client::Clients;
use crate::output::short_id;

pub async fn pods(c: &mut Clients) -> anyhow::Result<()> {
    let items =
        c.rt.list_pod_sandbox(ListPodSandboxRequest { filter: None })
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
    Ok(())
}

pub async fn stopp(c: &mut Clients, ids: Vec<String>) -> anyhow::Result<()> {
    for id in ids {
        c.rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await?;
        println!("Stopped sandbox {id}");
    }
    Ok(())
}

pub async fn rmp(c: &mut Clients, ids: Vec<String>) -> anyhow::Result<()> {
    for id in ids {
        c.rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await?;
        println!("Removed sandbox {id}");
    }
    Ok(())
}
