//! `ps`: list containers, as docker's and crictl's tables or JSON.

use k8s_cri::v1::ContainerState;

use crate::client::Clients;
use crate::lifecycle;
use crate::output::{Format, human_duration, now_nanos, short_id, table};
use crate::resolve;

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Include exited containers.
    #[arg(short, long)]
    pub all: bool,
    /// Only container ids.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn state_name(state: i32) -> &'static str {
    match ContainerState::try_from(state) {
        Ok(ContainerState::ContainerCreated) => "Created",
        Ok(ContainerState::ContainerRunning) => "Running",
        Ok(ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

pub async fn run(c: &mut Clients, a: PsArgs) -> anyhow::Result<()> {
    let mut containers = resolve::containers(c).await?;
    containers.retain(|x| a.all || x.state != ContainerState::ContainerExited as i32);
    containers.sort_by_key(|x| std::cmp::Reverse(x.created_at));
    if a.quiet {
        for x in &containers {
            println!("{}", x.id);
        }
        return Ok(());
    }
    let pods = resolve::pods(c).await?;
    let now = now_nanos();
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for x in &containers {
        let st = lifecycle::status(c, &x.id, false)
            .await
            .ok()
            .and_then(|s| s.status);
        let pod_name = pods
            .iter()
            .find(|p| p.id == x.pod_sandbox_id)
            .and_then(|p| p.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let name = x
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let attempt = x.metadata.as_ref().map_or(0, |m| m.attempt);
        let image = x
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let status = match (ContainerState::try_from(x.state), &st) {
            (Ok(ContainerState::ContainerRunning), Some(s)) => {
                format!("Up {}", human_duration(now - s.started_at))
            }
            (Ok(ContainerState::ContainerExited), Some(s)) => format!(
                "Exited ({}) {} ago",
                s.exit_code,
                human_duration(now - s.finished_at)
            ),
            _ => state_name(x.state).to_string(),
        };
        if a.format == Format::Json {
            json.push(serde_json::json!({
                "id": x.id,
                "name": name,
                "attempt": attempt,
                "image": image,
                "image_ref": x.image_ref,
                "state": state_name(x.state),
                "status": status,
                "exit_code": st.as_ref().map(|s| s.exit_code),
                "created_at": x.created_at,
                "pod_sandbox_id": x.pod_sandbox_id,
                "pod": pod_name,
                "labels": x.labels,
            }));
            continue;
        }
        rows.push(vec![
            short_id(&x.id).to_string(),
            image,
            format!("{} ago", human_duration(now - x.created_at)),
            status,
            name,
            attempt.to_string(),
            short_id(&x.pod_sandbox_id).to_string(),
            pod_name,
        ]);
    }
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        table(
            &[
                "CONTAINER",
                "IMAGE",
                "CREATED",
                "STATUS",
                "NAME",
                "ATTEMPT",
                "POD ID",
                "POD",
            ],
            &rows,
        );
    }
    Ok(())
}
