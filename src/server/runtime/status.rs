use std::collections::HashMap;

use k8s_cri::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse,
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
            "root": cfg.root,
            "state": cfg.state,
            "address": cfg.address,
            "registry": { "config_path": cfg.registry.config_path },
            "cni": { "conf_dir": cni.conf_dir, "bin_dirs": cni.bin_dirs },
            "metrics": { "address": cfg.metrics.address },
        });
        info.insert("config".to_string(), config.to_string());
        info.insert("network".to_string(), network_info.to_string());
    }
    Ok(StatusResponse {
        status: Some(RuntimeStatus {
            conditions: vec![runtime_condition, network_condition],
        }),
        info,
        runtime_handlers: vec![RuntimeHandler {
            name: String::new(),
            features: Some(RuntimeHandlerFeatures {
                recursive_read_only_mounts: false,
                user_namespaces: false,
            }),
        }],
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: false,
        }),
    })
}
