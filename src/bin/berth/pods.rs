//! Pod verbs: `pods`, `stopp`, `rmp`.

use k8s_cri::v1::{PodSandbox, PodSandboxState, RemovePodSandboxRequest, StopPodSandboxRequest};

use crate::client::Clients;
use crate::output::{Format, human_duration, now_nanos, short_id, table};
use crate::resolve;

#[derive(Debug, clap::Args)]
pub struct PodsArgs {
    /// Only pod ids.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `pods`: every pod sandbox, newest first, as crictl's `pods` table or JSON.
pub async fn pods(c: &mut Clients, a: PodsArgs) -> anyhow::Result<()> {
    let mut items = resolve::pods(c).await?;
    items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    if a.quiet {
        for p in &items {
            println!("{}", p.id);
        }
        return Ok(());
    }
    let now = now_nanos();
    let state = |p: &PodSandbox| {
        if p.state == PodSandboxState::SandboxReady as i32 {
            "Ready"
        } else {
            "NotReady"
        }
    };
    if a.format == Format::Json {
        let json: Vec<_> = items
            .iter()
            .map(|p| {
                let m = p.metadata.clone().unwrap_or_default();
                serde_json::json!({
                    "id": p.id,
                    "name": m.name,
                    "namespace": m.namespace,
                    "uid": m.uid,
                    "attempt": m.attempt,
                    "state": state(p),
                    "created_at": p.created_at,
                    "runtime_handler": p.runtime_handler,
                    "labels": p.labels,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|p| {
            let m = p.metadata.clone().unwrap_or_default();
            vec![
                short_id(&p.id).to_string(),
                format!("{} ago", human_duration(now - p.created_at)),
                state(p).to_string(),
                m.name,
                m.namespace,
                m.attempt.to_string(),
            ]
        })
        .collect();
    table(
        &["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT"],
        &rows,
    );
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
