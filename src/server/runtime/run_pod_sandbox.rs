//! RunPodSandbox: validate the request, then the daemon creates the pod (rolled back on failure).

use k8s_cri::v1::{NamespaceMode, PodSandboxConfig, RunPodSandboxRequest, RunPodSandboxResponse};

use std::sync::Arc;

use crate::daemon::Daemon;
use crate::error::Error;
use crate::sandbox::{HOST_NAME_MAX, check_sysctl, files, namespace_options, userns};

pub async fn handle(
    daemon: &Arc<Daemon>,
    req: RunPodSandboxRequest,
) -> Result<RunPodSandboxResponse, Error> {
    let config = req
        .config
        .ok_or_else(|| Error::InvalidArgument("RunPodSandbox needs a config".into()))?;
    validate(&config, &req.runtime_handler)?;
    let rec = daemon.run_pod(config, &req.runtime_handler).await?;
    Ok(RunPodSandboxResponse {
        pod_sandbox_id: rec.id,
    })
}

/// What containerd refuses before it touches anything; nothing more (a rule berth invents would
/// break clients that were never wrong).
fn validate(config: &PodSandboxConfig, runtime_handler: &str) -> Result<(), Error> {
    // Only the metadata itself is required, as containerd: its fields may be empty.
    if config.metadata.is_none() {
        return Err(Error::InvalidArgument(
            "pod sandbox config has no metadata".into(),
        ));
    }
    if !runtime_handler.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "runtime handler {runtime_handler:?} is not configured (berth serves the default handler \"\")"
        )));
    }
    let ns = namespace_options(config);
    // A pod network gets the pod's name, namespace and uid in CNI_ARGS, an environment
    // variable, which cannot carry a NUL (the kernel's execve strings end at one).
    if ns.network == NamespaceMode::Pod as i32
        && let Some(m) = &config.metadata
        && [&m.name, &m.namespace, &m.uid]
            .iter()
            .any(|s| s.contains('\0'))
    {
        return Err(Error::InvalidArgument(
            "the pod's name, namespace and uid go to CNI plugins and cannot hold a NUL byte".into(),
        ));
    }
    files::validate_dns(config.dns_config.as_ref()).map_err(Error::InvalidArgument)?;
    if let Some(linux) = &config.linux {
        let mut keys: Vec<&String> = linux.sysctls.keys().collect();
        keys.sort();
        for key in keys {
            check_sysctl(key, &ns).map_err(Error::InvalidArgument)?;
        }
    }
    if ns.pid == NamespaceMode::Target as i32 || ns.ipc == NamespaceMode::Target as i32 {
        return Err(Error::InvalidArgument(
            "namespace mode TARGET is only valid for containers".into(),
        ));
    }
    userns::from_options(&ns).map_err(Error::InvalidArgument)?;
    // Mappings with a host port go to the portmap plugin, which fails both ADD and DEL on a
    // port it cannot use; refused here, before any plugin runs. Without a host port a mapping
    // is not used (as containerd), so it is not checked.
    for m in config.port_mappings.iter().filter(|m| m.host_port > 0) {
        if m.host_port > 65535 || !(1..=65535).contains(&m.container_port) {
            return Err(Error::InvalidArgument(format!(
                "port mapping {}:{} is outside 1-65535",
                m.host_port, m.container_port
            )));
        }
    }
    // As containerd: only what the kernel refuses (HOST_NAME_MAX); an empty one keeps the node's.
    if config.hostname.len() > HOST_NAME_MAX {
        return Err(Error::InvalidArgument(format!(
            "hostname {:?} is longer than {HOST_NAME_MAX} bytes",
            config.hostname
        )));
    }
    Ok(())
}
