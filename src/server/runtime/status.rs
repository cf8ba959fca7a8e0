use std::collections::HashMap;

use k8s_cri::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse, UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse,
};

use crate::daemon::Daemon;
use crate::error::Error;
use crate::network::load_default_network;

pub fn status(daemon: &Daemon, req: StatusRequest) -> Result<StatusResponse, Error> {
    let cni = &daemon.config.cni;
    let network = load_default_network(&cni.conf_dir, &cni.bin_dirs);
    let network_condition = match &network {
        Ok(_) => RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        Err(e) => RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: format!("Network plugin returns error: cni plugin not initialized: {e}"),
        },
    };
    let runtime_condition = RuntimeCondition {
        r#type: "RuntimeReady".into(),
        status: true,
        reason: String::new(),
        message: String::new(),
    };
    let mut info = HashMap::new();
    if req.verbose {
        let cfg = &daemon.config;
        let network_info = match &network {
            Ok(n) => serde_json::json!({
                "name": n.name,
                "cniVersion": n.cni_version,
                "path": n.path,
                "plugins": n.plugins,
            }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let config = serde_json::json!({
            // containerd's key; critest probes idmapped mounts on its parent (berth's root).
            "stateDir": cfg.root.join("sandboxes"),
            "root": cfg.root,
            "state": cfg.state,
            "address": cfg.address,
            "registry": { "config_path": cfg.registry.config_path },
            "cni": { "conf_dir": cni.conf_dir, "bin_dirs": cni.bin_dirs },
            "metrics": { "address": cfg.metrics.address },
            "streaming": {
                "address": daemon.streaming.local_addr().to_string(),
                "token_ttl_secs": cfg.streaming.token_ttl_secs,
            },
            "image": {
                "max_concurrent_downloads": cfg.image.max_concurrent_downloads,
                "read_timeout_secs": cfg.image.read_timeout_secs,
            },
        });
        info.insert("config".to_string(), config.to_string());
        let cidrs = daemon
            .pod_cidrs
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        info.insert("podCIDRs".to_string(), serde_json::json!(cidrs).to_string());
        info.insert("network".to_string(), network_info.to_string());
        // containerd's key (crictl info shows it).
        let cni_status = match &network {
            Ok(_) => "OK".to_string(),
            Err(e) => e.to_string(),
        };
        info.insert(
            "lastCNILoadStatus".to_string(),
            serde_json::json!(cni_status).to_string(),
        );
    }
    Ok(StatusResponse {
        status: Some(RuntimeStatus {
            conditions: vec![runtime_condition, network_condition],
        }),
        info,
        runtime_handlers: vec![RuntimeHandler {
            name: String::new(),
            features: Some(RuntimeHandlerFeatures {
                // mount_setattr(2) (Linux 5.12) applies rro in the shim.
                recursive_read_only_mounts: recursive_read_only_supported(),
                user_namespaces: daemon.user_namespaces,
            }),
        }],
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: true,
        }),
    })
}

/// Whether this kernel has mount_setattr(2): called with an invalid fd and no flags it answers
/// EBADF where it exists, ENOSYS where it does not.
fn recursive_read_only_supported() -> bool {
    // SAFETY: an empty path, a null attribute of size 0 and fd -1: the kernel reads nothing
    // and fails before touching any mount.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            std::ptr::null::<u8>(),
            0,
        )
    };
    !(r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

/// UpdateRuntimeConfig: kubelet hands the node's pod CIDR (comma-separated when dual-stack)
/// once it is assigned. Pod addresses come from the CNI config's own IPAM, so, as containerd
/// without a config template, berth records it (verbose Status shows it) and changes nothing.
pub fn update_runtime_config(
    daemon: &Daemon,
    req: UpdateRuntimeConfigRequest,
) -> Result<UpdateRuntimeConfigResponse, Error> {
    let cidr = req
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .unwrap_or_default();
    let cidrs = parse_pod_cidrs(&cidr)?;
    if cidrs.is_empty() {
        return Ok(UpdateRuntimeConfigResponse {});
    }
    tracing::info!(pod_cidrs = ?cidrs, "pod CIDR set by kubelet");
    if let Ok(mut current) = daemon.pod_cidrs.lock() {
        *current = cidrs;
    }
    Ok(UpdateRuntimeConfigResponse {})
}

/// `10.244.1.0/24` or `10.244.1.0/24,fd00:1::/64`: each an address and a prefix length that
/// fits it. Empty means "not set".
fn parse_pod_cidrs(s: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || Error::InvalidArgument(format!("invalid pod CIDR {part:?}"));
        let (addr, len) = part.split_once('/').ok_or_else(bad)?;
        let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(bad());
        }
        out.push(part.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_pod_cidrs;

    #[test]
    fn pod_cidrs() {
        assert_eq!(parse_pod_cidrs("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_pod_cidrs("10.244.1.0/24, fd00:1::/64").unwrap(),
            vec!["10.244.1.0/24", "fd00:1::/64"]
        );
        for bad in [
            "10.244.1.0",
            "10.244.1.0/33",
            "fd00::/129",
            "x/8",
            "10.0.0.0/a",
        ] {
            assert!(parse_pod_cidrs(bad).is_err(), "{bad}");
        }
    }
}
