//! PodSandboxStatus (with containerd's verbose keys, which crictl inspectp shows).

use std::collections::HashMap;

use k8s_cri::v1::{
    LinuxPodSandboxStatus, Namespace, PodIp, PodSandboxNetworkStatus, PodSandboxStatus,
    PodSandboxStatusRequest, PodSandboxStatusResponse,
};

use super::convert::sandbox_state;
use crate::daemon::Daemon;
use crate::error::Error;
use crate::sandbox::SandboxState;

pub async fn handle(
    daemon: &Daemon,
    req: PodSandboxStatusRequest,
) -> Result<PodSandboxStatusResponse, Error> {
    let r = daemon.sandboxes.get(&req.pod_sandbox_id)?;
    let mut info = HashMap::new();
    if req.verbose {
        // containerd's keys where berth has the same thing (crictl inspectp, operators'
        // scripts that nsenter a pod by its runtimeSpec namespaces).
        let pinned: serde_json::Map<String, serde_json::Value> = r
            .pins
            .iter()
            .map(|(k, p)| (k.clone(), serde_json::json!(p)))
            .collect();
        let oci_type = |k: &str| {
            if k == "net" {
                "network".to_string()
            } else {
                k.to_string()
            }
        };
        let namespaces: Vec<_> = r
            .pins
            .iter()
            .map(|(k, p)| serde_json::json!({"type": oci_type(k), "path": p}))
            .collect();
        let ready = r.state == SandboxState::Ready;
        let verbose = serde_json::json!({
            "config": r.config,
            "runtimeHandler": r.runtime_handler,
            "runtimeType": "berth",
            "pid": r.pod_init_pid,
            "processStatus": if ready { "running" } else { "deleted" },
            "netNamespaceClosed": !ready,
            "pinnedNamespaces": pinned,
            "runtimeSpec": {"linux": {"namespaces": namespaces}},
            "cniResult": daemon.sandboxes.cni_result(&r.id),
            "ips": r.ips,
            "etcDir": r.etc_dir,
            "shm": r.shm,
        });
        info.insert("info".to_string(), verbose.to_string());
    }
    let now = berth_sys::time::now_nanos();
    Ok(PodSandboxStatusResponse {
        status: Some(PodSandboxStatus {
            id: r.id.clone(),
            metadata: r.config.metadata.clone(),
            state: sandbox_state(r.state),
            created_at: r.created_at,
            // Host-network pods have no pod IP of their own (kubelet uses the node's); a
            // stopped pod's network is gone.
            network: Some(match (r.state, r.ips.split_first()) {
                (SandboxState::Ready, Some((first, rest))) => PodSandboxNetworkStatus {
                    ip: first.clone(),
                    additional_ips: rest.iter().map(|ip| PodIp { ip: ip.clone() }).collect(),
                },
                _ => PodSandboxNetworkStatus::default(),
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(r.namespace_options()),
                }),
            }),
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
            runtime_handler: r.runtime_handler.clone(),
        }),
        info,
        containers_statuses: Vec::new(),
        timestamp: now,
    })
}
