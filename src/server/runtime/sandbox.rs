//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox.

use std::collections::HashMap;

use k8s_cri::v1::{
    LinuxPodSandboxStatus, ListPodSandboxRequest, ListPodSandboxResponse, Namespace, PodIp,
    PodSandbox, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus,
    PodSandboxStatusRequest, PodSandboxStatusResponse, RemovePodSandboxRequest,
    RemovePodSandboxResponse, RunPodSandboxRequest, RunPodSandboxResponse, StopPodSandboxRequest,
    StopPodSandboxResponse,
};

use crate::daemon::Daemon;
use crate::error::Error;
use crate::sandbox::{SandboxRecord, SandboxState};

fn state(s: SandboxState) -> i32 {
    match s {
        SandboxState::Ready => PodSandboxState::SandboxReady as i32,
        SandboxState::NotReady => PodSandboxState::SandboxNotready as i32,
    }
}

fn to_cri(r: &SandboxRecord) -> PodSandbox {
    PodSandbox {
        id: r.id.clone(),
        metadata: r.config.metadata.clone(),
        state: state(r.state),
        created_at: r.created_at,
        labels: r.config.labels.clone(),
        annotations: r.config.annotations.clone(),
        runtime_handler: r.runtime_handler.clone(),
    }
}

pub async fn run(
    daemon: &Daemon,
    req: RunPodSandboxRequest,
) -> Result<RunPodSandboxResponse, Error> {
    let config = req
        .config
        .ok_or_else(|| Error::InvalidArgument("RunPodSandbox needs a config".into()))?;
    let rec = daemon.run_pod(config, &req.runtime_handler).await?;
    Ok(RunPodSandboxResponse {
        pod_sandbox_id: rec.id,
    })
}

pub async fn stop(
    daemon: &Daemon,
    req: StopPodSandboxRequest,
) -> Result<StopPodSandboxResponse, Error> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Error::InvalidArgument("pod sandbox id is required".into()));
    }
    daemon.stop_pod(&req.pod_sandbox_id).await?;
    Ok(StopPodSandboxResponse {})
}

pub async fn remove(
    daemon: &Daemon,
    req: RemovePodSandboxRequest,
) -> Result<RemovePodSandboxResponse, Error> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Error::InvalidArgument("pod sandbox id is required".into()));
    }
    daemon.remove_pod(&req.pod_sandbox_id).await?;
    Ok(RemovePodSandboxResponse {})
}

pub fn status(
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
            state: state(r.state),
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

pub fn list(daemon: &Daemon, req: ListPodSandboxRequest) -> Result<ListPodSandboxResponse, Error> {
    let items = daemon
        .sandboxes
        .list(req.filter.as_ref())
        .iter()
        .map(to_cri)
        .collect();
    Ok(ListPodSandboxResponse { items })
}
