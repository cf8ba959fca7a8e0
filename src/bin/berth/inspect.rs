//! `inspect`: containers, pods or images (by id, unique prefix, name or image reference) as a
//! JSON array, each with its CRI status and the runtime's verbose info.

use k8s_cri::v1::{ImageStatusRequest, PodSandboxStatusRequest};

use crate::client::Clients;
use crate::{image_spec, lifecycle, resolve};

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Only look for this kind of object.
    #[arg(long, value_parser = ["container", "pod", "image"])]
    pub r#type: Option<String>,
    #[arg(required = true)]
    pub objects: Vec<String>,
}

fn parsed_info(info: &std::collections::HashMap<String, String>) -> serde_json::Value {
    info.get("info")
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or(serde_json::Value::Null)
}

pub async fn run(c: &mut Clients, a: InspectArgs) -> anyhow::Result<()> {
    let want = |k: &str| a.r#type.as_deref().is_none_or(|t| t == k);
    let containers = resolve::containers(c).await?;
    let pods = resolve::pods(c).await?;
    let mut out = Vec::new();
    for key in &a.objects {
        if want("container")
            && let Some(ctr) = resolve::find_container(&containers, key)?
        {
            let r = lifecycle::status(c, &ctr.id, true).await?;
            out.push(serde_json::json!({
                "type": "container",
                "status": r.status,
                "info": parsed_info(&r.info),
            }));
            continue;
        }
        if want("pod")
            && let Some(pod) = resolve::find_pod(&pods, key)?
        {
            let r =
                c.rt.pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: pod.id.clone(),
                    verbose: true,
                })
                .await?
                .into_inner();
            out.push(serde_json::json!({
                "type": "pod",
                "status": r.status,
                "info": parsed_info(&r.info),
                "containers_statuses": r.containers_statuses,
            }));
            continue;
        }
        if want("image") {
            let r = c
                .img
                .image_status(ImageStatusRequest {
                    image: image_spec(key),
                    verbose: true,
                })
                .await?
                .into_inner();
            if let Some(status) = r.image {
                out.push(serde_json::json!({
                    "type": "image",
                    "status": status,
                    "info": parsed_info(&r.info),
                }));
                continue;
            }
        }
        anyhow::bail!("no such object: {key}");
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
