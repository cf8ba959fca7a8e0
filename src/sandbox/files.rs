//! The files a pod's containers see at /etc/hostname, /etc/hosts and /etc/resolv.conf, written
//! once per pod (bind-mounted into every container, as containerd does).

use std::path::Path;

use k8s_cri::v1::DnsConfig;

/// The host's files, used for host-network pods and when the pod gives no DNS config.
pub const HOST_HOSTS: &str = "/etc/hosts";
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// /etc/hosts of a pod with its own network: the localhost entries and the pod's own name.
pub fn hosts(hostname: &str, ips: &[String]) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file (berth).\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s
}

/// resolv.conf from the pod's DNS config; None when it asks for nothing (the host's file is
/// used then).
pub fn resolv_conf(dns: Option<&DnsConfig>) -> Option<String> {
    let dns = dns?;
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut s = String::new();
    if !dns.searches.is_empty() {
        s.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        s.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        s.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(s)
}

/// Reject DNS values that would smuggle extra lines into resolv.conf.
pub fn validate_dns(dns: Option<&DnsConfig>) -> Result<(), String> {
    let Some(dns) = dns else { return Ok(()) };
    for v in dns.servers.iter().chain(&dns.searches).chain(&dns.options) {
        // Only what cannot be one resolv.conf line: a line break or NUL would inject lines.
        if v.chars().any(|c| c == '\n' || c == '\r' || c == '\0') {
            return Err(format!("invalid DNS config value {v:?}"));
        }
    }
    Ok(())
}

/// Write the three files into `dir` (created), each 0644.
pub fn write_all(dir: &Path, hostname: &str, hosts: &str, resolv: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    for (name, content) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts.to_string()),
        ("resolv.conf", resolv.to_string()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        assert_eq!(resolv_conf(None), None);
        assert_eq!(resolv_conf(Some(&DnsConfig::default())), None);
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into(), "10.96.0.11".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5\n"
        );
        assert!(validate_dns(Some(&dns)).is_ok());
        let bad = DnsConfig {
            servers: vec!["1.1.1.1\nnameserver 6.6.6.6".into()],
            ..Default::default()
        };
        assert!(validate_dns(Some(&bad)).is_err());
    }

    #[test]
    fn hosts_has_localhost_and_the_pod() {
        let h = hosts("web", &["10.1.0.5".into()]);
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.1.0.5\tweb\n"));
    }
}
