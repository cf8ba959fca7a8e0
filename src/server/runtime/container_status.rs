//! ContainerStatus (with containerd's verbose keys, which crictl inspect shows).

use std::collections::HashMap;

use k8s_cri::v1::{
    ContainerResources, ContainerStatus, ContainerStatusRequest, ContainerStatusResponse,
    ContainerUser, LinuxContainerUser,
};

use super::convert::image_fields;
use crate::container::{ContainerState, cri_state};
use crate::daemon::Daemon;
use crate::error::Error;

pub async fn handle(
    daemon: &Daemon,
    req: ContainerStatusRequest,
) -> Result<ContainerStatusResponse, Error> {
    let id = daemon.containers.get(&req.container_id)?.id;
    let r = daemon.containers.refresh(&id).await?;
    let (image, image_ref) = image_fields(daemon, &r);
    let running = r.state == ContainerState::Running && r.pid > 0;
    // The spec (as JSON: stable key order, as containerd shows it) only when needed: status is
    // polled often.
    let spec_json = || daemon.containers.spec_json_of(&r.id);
    let spec = if req.verbose { spec_json() } else { None };
    let mut info = HashMap::new();
    if req.verbose {
        // containerd's keys: crictl inspect shows them.
        let verbose = serde_json::json!({
            "sandboxID": r.sandbox_id,
            "pid": r.pid,
            "config": r.config,
            "layers": r.layers,
            "runtimeSpec": spec,
        });
        info.insert("info".to_string(), verbose.to_string());
    }
    // The identity the process really has while it runs (as the container sees it: host ids
    // of a user-namespaced pod mapped back); the spec's otherwise.
    let identity = running
        .then(|| crate::container::user::of_process(r.pid))
        .flatten()
        .map(|id| {
            match daemon.sandboxes.get(&r.sandbox_id).ok().and_then(|sb| {
                crate::sandbox::userns::from_options(&sb.namespace_options())
                    .ok()
                    .flatten()
            }) {
                Some(maps) => crate::container::user::Identity {
                    uid: maps.uid.container_of(id.uid).unwrap_or(id.uid),
                    gid: maps.gid.container_of(id.gid).unwrap_or(id.gid),
                    additional_gids: id
                        .additional_gids
                        .iter()
                        .map(|&g| maps.gid.container_of(g).unwrap_or(g))
                        .collect(),
                    home: None,
                },
                None => id,
            }
        })
        .or_else(|| {
            let spec = spec.clone().or_else(spec_json)?;
            let user = spec.pointer("/process/user")?;
            let id = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
            Some(crate::container::user::Identity {
                uid: id(user.get("uid")?)?,
                gid: id(user.get("gid")?)?,
                additional_gids: user
                    .get("additionalGids")
                    .and_then(|g| g.as_array())
                    .map(|g| g.iter().filter_map(id).collect())
                    .unwrap_or_default(),
                home: None,
            })
        });
    let user = identity.map(|id| ContainerUser {
        linux: Some(LinuxContainerUser {
            uid: i64::from(id.uid),
            gid: i64::from(id.gid),
            supplemental_groups: id.additional_gids.iter().map(|&g| i64::from(g)).collect(),
        }),
    });
    Ok(ContainerStatusResponse {
        status: Some(ContainerStatus {
            id: r.id.clone(),
            metadata: r.config.metadata.clone(),
            state: cri_state(r.state),
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            exit_code: r.exit_code,
            image,
            image_ref,
            reason: r.reason.clone(),
            message: r.message.clone(),
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
            mounts: r.config.mounts.clone(),
            log_path: r
                .log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            // Zero-filled when nothing was set, as containerd answers.
            resources: Some(ContainerResources {
                linux: Some(
                    r.config
                        .linux
                        .as_ref()
                        .and_then(|l| l.resources.clone())
                        .unwrap_or_default(),
                ),
                windows: None,
            }),
            image_id: r.image_id.clone(),
            user,
        }),
        info,
    })
}
