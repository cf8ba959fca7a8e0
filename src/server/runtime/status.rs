//! Status: runtime and network readiness, the handlers and their features.

use std::collections::HashMap;

use k8s_cri::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse,
};

use crate::daemon::Daemon;
use crate::error::Error;
use crate::network::load_default_network;

pub async fn handle(daemon: &Daemon, req: StatusRequest) -> Result<StatusResponse, Error> {
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
                "max_layer_bytes": cfg.image.max_layer_bytes,
                "max_layer_inodes": cfg.image.max_layer_inodes,
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
        // The default handler "" and every [runtime] handlers name: one runtime, one set of
        // features (containerd lists its default runtime both ways too).
        runtime_handlers: std::iter::once(String::new())
            .chain(daemon.config.runtime.handlers.iter().cloned())
            .map(|name| RuntimeHandler {
                name,
                features: Some(RuntimeHandlerFeatures {
                    // mount_setattr(2) (Linux 5.12) applies rro in the shim.
                    recursive_read_only_mounts: recursive_read_only_supported(),
                    user_namespaces: daemon.user_namespaces,
                }),
            })
            .collect(),
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: true,
        }),
    })
}

/// Whether this kernel has mount_setattr(2): called with an invalid fd and no flags it answers
/// EBADF where it exists, ENOSYS where it does not.
// Probes mount_setattr(2), a raw syscall.
#[allow(unsafe_code)]
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
