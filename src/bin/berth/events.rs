//! `events`: container events as they happen (GetContainerEvents), one line each.

use k8s_cri::v1::{ContainerEventType, GetEventsRequest};

use crate::client::Clients;
use crate::output::{Format, rfc3339, short_id};

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// One JSON object a line.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub async fn run(c: &mut Clients, a: EventsArgs) -> anyhow::Result<()> {
    let mut stream =
        c.rt.get_container_events(GetEventsRequest {})
            .await?
            .into_inner();
    // A deleted container has no status left: its name from its earlier events.
    let mut names = std::collections::HashMap::<String, String>::new();
    while let Some(e) = stream.message().await? {
        let kind = match ContainerEventType::try_from(e.container_event_type) {
            Ok(ContainerEventType::ContainerCreatedEvent) => "create",
            Ok(ContainerEventType::ContainerStartedEvent) => "start",
            Ok(ContainerEventType::ContainerStoppedEvent) => "stop",
            Ok(ContainerEventType::ContainerDeletedEvent) => "delete",
            Err(_) => "unknown",
        };
        let pod = e.pod_sandbox_status.as_ref();
        let pod_id = pod.map(|p| p.id.clone()).unwrap_or_default();
        let pod_name = pod
            .and_then(|p| p.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let name = e
            .containers_statuses
            .iter()
            .find(|s| s.id == e.container_id)
            .and_then(|s| s.metadata.as_ref())
            .map(|m| m.name.clone())
            .or_else(|| names.get(&e.container_id).cloned())
            .unwrap_or_default();
        if kind == "delete" {
            names.remove(&e.container_id);
        } else {
            names.insert(e.container_id.clone(), name.clone());
        }
        if a.format == Format::Json {
            let line = serde_json::json!({
                "time": e.created_at,
                "type": kind,
                "container_id": e.container_id,
                "name": name,
                "pod_sandbox_id": pod_id,
                "pod": pod_name,
            });
            println!("{line}");
        } else {
            println!(
                "{} container {kind} {} (name={name}, pod={}, pod_name={pod_name})",
                rfc3339(e.created_at),
                e.container_id,
                short_id(&pod_id),
            );
        }
    }
    Ok(())
}
