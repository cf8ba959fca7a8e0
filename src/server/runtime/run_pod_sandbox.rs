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
    if !daemon.config.runtime.serves(&req.runtime_handler) {
        return Err(Error::InvalidArgument(format!(
            "runtime handler {:?} is not configured (berth serves \"\" and [runtime] handlers {:?})",
            req.runtime_handler, daemon.config.runtime.handlers
        )));
    }
    validate(&config)?;
    let rec = daemon.run_pod(config, &req.runtime_handler).await?;
    Ok(RunPodSandboxResponse {
        pod_sandbox_id: rec.id,
    })
}

/// What containerd refuses before it touches anything; nothing more (a rule berth invents would
/// break clients that were never wrong).
fn validate(config: &PodSandboxConfig) -> Result<(), Error> {
    // Only the metadata itself is required, as containerd: its fields may be empty.
    if config.metadata.is_none() {
        return Err(Error::InvalidArgument(
            "pod sandbox config has no metadata".into(),
        ));
    }
    let ns = namespace_options(config);
    // A pod network gets the pod's name, namespace and uid in CNI_ARGS, an environment
    // variable, which cannot carry a NUL (the kernel's execve strings end at one).
    // Every mode but NODE is a pod network, as containerd reads it (an unknown value too).
    if ns.network != NamespaceMode::Node as i32
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::PodSandboxMetadata;
    use k8s_cri::v1::{LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption};

    fn pod(network: i32, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                ..Default::default()
            }),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Found by make fuzz-cri: an unknown network mode is a pod network (as containerd reads
    /// it), so a NUL in the name must be refused before CNI_ARGS are built, not by the plugin's
    /// exec as INTERNAL.
    #[test]
    fn a_nul_in_the_name_of_any_pod_network_mode_is_invalid() {
        for mode in [NamespaceMode::Pod as i32, 99, -1] {
            let e = validate(&pod(mode, "nul\0byte")).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "mode {mode}: {e:?}");
        }
        assert!(validate(&pod(NamespaceMode::Node as i32, "nul\0byte")).is_ok());
        assert!(validate(&pod(99, "fine")).is_ok());
    }
}
