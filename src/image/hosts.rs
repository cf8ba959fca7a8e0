//! Registry host configuration in containerd's `certs.d` layout: `<dir>/<host>/hosts.toml`
//! (or `<dir>/_default/hosts.toml`) lists mirrors to try in order, then the upstream `server`.

use crate::error::IoError;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ImageError;

/// How to reach one registry endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    /// `true` for plain HTTP.
    pub plain_http: bool,
    /// `host[:port]` to connect to.
    pub host: String,
    /// Do not verify the TLS certificate.
    pub skip_verify: bool,
    /// Extra CA certificates (PEM files) to trust.
    pub ca_files: Vec<PathBuf>,
    /// May resolve tags to manifests (containerd's `resolve` capability).
    pub resolve: bool,
}

impl RegistryHost {
    /// `http://host` or `https://host`, for messages.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.plain_http { "http" } else { "https" },
            self.host
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    ca: Option<OneOrMany>,
    #[serde(default)]
    host: toml::map::Map<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    ca: Option<OneOrMany>,
    #[serde(default)]
    override_path: Option<bool>,
    #[serde(default)]
    header: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn paths(&self, base: &Path) -> Vec<PathBuf> {
        let list = match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        };
        list.into_iter().map(|p| base.join(p)).collect()
    }
}

/// True for registries on loopback, which are tried over plain HTTP after HTTPS.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    if host == "localhost" {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The endpoints to try for `registry`, in order.
pub fn resolve_hosts(config_dir: &Path, registry: &str) -> Result<Vec<RegistryHost>, ImageError> {
    let dir_name = registry.replace(['[', ']'], "");
    let mut file = None;
    for candidate in [
        config_dir.join(&dir_name).join("hosts.toml"),
        config_dir.join("_default").join("hosts.toml"),
    ] {
        match std::fs::read_to_string(&candidate) {
            Ok(text) => {
                file = Some((candidate, text));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ImageError::Io(IoError::new(
                    format!("reading {}", candidate.display()),
                    e,
                )));
            }
        }
    }
    let default_server = default_server(registry);
    let Some((path, text)) = file else {
        let mut hosts = vec![RegistryHost {
            plain_http: false,
            host: default_server,
            skip_verify: false,
            ca_files: Vec::new(),
            resolve: true,
        }];
        if is_loopback(registry) {
            hosts.push(RegistryHost {
                plain_http: true,
                ..hosts[0].clone()
            });
        }
        return Ok(hosts);
    };
    parse_hosts_file(&path, &text, registry, &default_server)
}

/// docker.io's API lives at registry-1.docker.io.
fn default_server(registry: &str) -> String {
    if registry == "docker.io" {
        "registry-1.docker.io".to_string()
    } else {
        registry.to_string()
    }
}

fn parse_hosts_file(
    path: &Path,
    text: &str,
    registry: &str,
    default_server: &str,
) -> Result<Vec<RegistryHost>, ImageError> {
    let bad = |reason: String| ImageError::Internal(format!("{}: {reason}", path.display()));
    let base = path.parent().unwrap_or(Path::new("/"));
    let parsed: HostsFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut hosts = Vec::new();
    for (url, value) in &parsed.host {
        let entry: HostEntry = value
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| bad(format!("host {url:?}: {e}")))?;
        if entry.override_path == Some(true) {
            return Err(bad(format!("host {url:?}: override_path is not supported")));
        }
        if entry.header.is_some() {
            return Err(bad(format!(
                "host {url:?}: custom headers are not supported"
            )));
        }
        let caps = entry.capabilities.as_deref();
        if !has_cap(caps, "pull") {
            continue;
        }
        let (plain_http, host) = split_url(url).map_err(bad)?;
        hosts.push(RegistryHost {
            plain_http,
            host,
            skip_verify: entry.skip_verify.unwrap_or(false),
            ca_files: entry.ca.as_ref().map(|c| c.paths(base)).unwrap_or_default(),
            resolve: has_cap(caps, "resolve"),
        });
    }
    let server_caps = parsed.capabilities.as_deref();
    let server_ca = parsed
        .ca
        .as_ref()
        .map(|c| c.paths(base))
        .unwrap_or_default();
    match parsed.server.as_deref() {
        Some(server) => {
            let (plain_http, host) = split_url(server).map_err(bad)?;
            hosts.push(RegistryHost {
                plain_http,
                host,
                skip_verify: parsed.skip_verify.unwrap_or(false),
                ca_files: server_ca,
                resolve: has_cap(server_caps, "resolve"),
            });
        }
        None => {
            let upstream = RegistryHost {
                plain_http: false,
                host: default_server.to_string(),
                skip_verify: parsed.skip_verify.unwrap_or(false),
                ca_files: server_ca,
                resolve: has_cap(server_caps, "resolve"),
            };
            let loopback = is_loopback(registry);
            hosts.push(upstream.clone());
            if loopback {
                hosts.push(RegistryHost {
                    plain_http: true,
                    ..upstream
                });
            }
        }
    }
    Ok(hosts)
}

fn has_cap(caps: Option<&[String]>, cap: &str) -> bool {
    caps.is_none_or(|c| c.iter().any(|x| x == cap))
}

/// `http://h:p[/v2]` → (plain, "h:p"). Path prefixes other than /v2 are refused.
fn split_url(url: &str) -> Result<(bool, String), String> {
    let (plain, rest) = if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else {
        (false, url)
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_end_matches('/');
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if !(path.is_empty() || path == "v2") {
        return Err(format!(
            "{url:?}: path prefixes other than /v2 are not supported"
        ));
    }
    Ok((plain, host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for l in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.8.9.10",
            "[::1]:5000",
        ] {
            assert!(is_loopback(l), "{l}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:1",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn defaults_without_config() {
        let dir = tempfile::tempdir().unwrap();
        let h = resolve_hosts(dir.path(), "docker.io").unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].url(), "https://registry-1.docker.io");
        let h = resolve_hosts(dir.path(), "127.0.0.1:5000").unwrap();
        let urls: Vec<_> = h.iter().map(|h| h.url()).collect();
        assert_eq!(urls, ["https://127.0.0.1:5000", "http://127.0.0.1:5000"]);
    }

    #[test]
    fn mirrors_then_server_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("docker.io")).unwrap();
        std::fs::write(
            dir.path().join("docker.io/hosts.toml"),
            r#"
server = "https://registry-1.docker.io"
[host."http://10.0.0.9:5000"]
  capabilities = ["pull", "resolve"]
[host."https://b.example:443/v2"]
  capabilities = ["pull"]
  skip_verify = true
  ca = "ca.pem"
[host."https://push-only.example"]
  capabilities = ["push"]
"#,
        )
        .unwrap();
        let h = resolve_hosts(dir.path(), "docker.io").unwrap();
        let urls: Vec<_> = h.iter().map(|h| h.url()).collect();
        assert_eq!(
            urls,
            [
                "http://10.0.0.9:5000",
                "https://b.example:443",
                "https://registry-1.docker.io"
            ]
        );
        assert!(h[0].resolve && !h[1].resolve && h[1].skip_verify);
        assert_eq!(h[1].ca_files, vec![dir.path().join("docker.io/ca.pem")]);
    }

    #[test]
    fn default_dir_and_plain_http_server() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("_default")).unwrap();
        std::fs::write(
            dir.path().join("_default/hosts.toml"),
            "server = \"http://10.1.2.3:5000\"\n",
        )
        .unwrap();
        let h = resolve_hosts(dir.path(), "10.1.2.3:5000").unwrap();
        assert_eq!(h.len(), 1);
        assert!(h[0].plain_http);
        std::fs::write(dir.path().join("_default/hosts.toml"), "bogus = 1\n").unwrap();
        assert!(resolve_hosts(dir.path(), "x.example").is_err());
    }
}
