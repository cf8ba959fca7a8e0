//! UpdateRuntimeConfig: the node's pod CIDR from kubelet.

use k8s_cri::v1::{UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse};

use crate::daemon::Daemon;
use crate::error::Error;

/// UpdateRuntimeConfig: kubelet hands the node's pod CIDR (comma-separated when dual-stack)
/// once it is assigned. Pod addresses come from the CNI config's own IPAM, so, as containerd
/// without a config template, berth records it (verbose Status shows it) and changes nothing.
pub async fn handle(
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
