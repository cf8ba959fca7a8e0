//! The CNI exec protocol (CNI spec 1.0, and the 0.3/0.4 results plugins still return): ADD runs
//! every plugin of a network config list in order, each given the previous one's result; DEL
//! runs them in reverse with the cached result. The whole attachment (the config as it was at ADD
//! time, the arguments, the result) is cached on disk before and after ADD, so DEL works after a
//! berthd restart or crash and even if the config dir changed meanwhile.

use crate::error::IoContext;
use crate::error::IoError;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::NetworkConfig;

/// How long one plugin may take.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// CNI failures.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI plugin {plugin} {command} failed: {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        message: String,
    },
    #[error("CNI plugin {plugin} {command}: no answer within {timeout:?}")]
    Timeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    #[error(transparent)]
    Io(#[from] IoError),
}

/// What a pod asks of the network (CNI_ARGS and runtime config capabilities).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodNetworkArgs {
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// `portMappings` capability: hostPort, containerPort, protocol, hostIP.
    pub port_mappings: Vec<Value>,
    /// `dns` capability: servers, searches, options.
    pub dns: Option<Value>,
    /// `bandwidth` capability.
    pub bandwidth: Option<Value>,
}

/// One pod's attachment to a network, as cached on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub sandbox_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub network_name: String,
    pub cni_version: String,
    pub plugins: Vec<Value>,
    pub plugin_paths: Vec<PathBuf>,
    pub bin_dirs: Vec<PathBuf>,
    pub args: PodNetworkArgs,
    /// The last plugin's result; None until ADD finished.
    pub result: Option<Value>,
}

impl Attachment {
    /// A new attachment of `sandbox_id`'s netns to `network`.
    pub fn new(
        network: &NetworkConfig,
        bin_dirs: &[PathBuf],
        sandbox_id: &str,
        netns: &Path,
        args: PodNetworkArgs,
    ) -> Attachment {
        Attachment {
            sandbox_id: sandbox_id.to_string(),
            netns: netns.to_path_buf(),
            ifname: "eth0".into(),
            network_name: network.name.clone(),
            cni_version: network.cni_version.clone(),
            plugins: network.plugins.clone(),
            plugin_paths: network.plugin_paths.clone(),
            bin_dirs: bin_dirs.to_vec(),
            args,
            result: None,
        }
    }

    /// The pod's IP addresses from the result (without prefix length), IPv4 first.
    pub fn ips(&self) -> Vec<String> {
        let mut ips: Vec<String> = self
            .result
            .as_ref()
            .and_then(|r| r.get("ips"))
            .and_then(|i| i.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|ip| ip.get("address")?.as_str())
                    .map(|addr| addr.split('/').next().unwrap_or(addr).to_string())
                    .collect()
            })
            .unwrap_or_default();
        ips.sort_by_key(|ip| ip.contains(':'));
        ips
    }

    /// CNI_ARGS, with the Kubernetes keys every runtime passes.
    fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.args.pod_namespace, self.args.pod_name, self.sandbox_id, self.args.pod_uid
        )
    }

    /// The config plugin `i` gets on stdin: its own object plus the list's name and version,
    /// the capabilities it declares, and the previous result.
    fn plugin_config(&self, i: usize, prev: Option<&Value>) -> Value {
        let mut conf = self.plugins[i].clone();
        let Some(obj) = conf.as_object_mut() else {
            return conf;
        };
        obj.insert("name".into(), json!(self.network_name));
        obj.insert("cniVersion".into(), json!(self.cni_version));
        let caps = obj
            .get("capabilities")
            .and_then(|c| c.as_object())
            .cloned()
            .unwrap_or_default();
        let wants = |k: &str| caps.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        let mut runtime = serde_json::Map::new();
        if wants("portMappings") && !self.args.port_mappings.is_empty() {
            runtime.insert("portMappings".into(), json!(self.args.port_mappings));
        }
        if wants("dns")
            && let Some(dns) = &self.args.dns
        {
            runtime.insert("dns".into(), dns.clone());
        }
        if wants("bandwidth")
            && let Some(bw) = &self.args.bandwidth
        {
            runtime.insert("bandwidth".into(), bw.clone());
        }
        if !runtime.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        if let Some(prev) = prev {
            obj.insert("prevResult".into(), prev.clone());
        }
        conf
    }

    /// Run one plugin; returns its stdout parsed (Null when empty).
    async fn exec(
        &self,
        i: usize,
        command: &'static str,
        prev: Option<&Value>,
    ) -> Result<Value, CniError> {
        let path = &self.plugin_paths[i];
        let plugin = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let conf = serde_json::to_vec(&self.plugin_config(i, prev)).map_err(|e| {
            CniError::Io(IoError::new(
                "encoding the plugin config",
                std::io::Error::other(e),
            ))
        })?;
        let cni_path = std::env::join_paths(&self.bin_dirs)
            .map_err(|e| CniError::Io(IoError::new("CNI_PATH", std::io::Error::other(e))))?;
        let mut child = tokio::process::Command::new(path)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.sandbox_id)
            .env("CNI_NETNS", &self.netns)
            .env("CNI_IFNAME", &self.ifname)
            .env("CNI_ARGS", self.cni_args())
            .env("CNI_PATH", cni_path)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(format!("starting CNI plugin {}", path.display()))?;
        let mut stdin = child.stdin.take();
        let run = async {
            if let Some(stdin) = stdin.as_mut() {
                stdin.write_all(&conf).await?;
            }
            drop(stdin);
            child.wait_with_output().await
        };
        let out = match tokio::time::timeout(PLUGIN_TIMEOUT, run).await {
            Ok(r) => r.context(format!("running CNI plugin {plugin}"))?,
            Err(_) => {
                return Err(CniError::Timeout {
                    plugin,
                    command,
                    timeout: PLUGIN_TIMEOUT,
                });
            }
        };
        let stdout: Value = if out.stdout.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&out.stdout).unwrap_or_else(
                |_| json!({ "msg": String::from_utf8_lossy(&out.stdout).trim().to_string() }),
            )
        };
        if !out.status.success() {
            // The spec's error object: {code, msg, details}; else whatever was printed.
            let mut message = [stdout.get("msg"), stdout.get("details")]
                .iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            if message.is_empty() {
                message = String::from_utf8_lossy(&out.stderr).trim().to_string();
            }
            if message.is_empty() {
                message = format!("exit status {}", out.status);
            }
            return Err(CniError::Plugin {
                plugin,
                command,
                message,
            });
        }
        Ok(stdout)
    }

    /// CNI ADD through the whole list. On failure the plugins that ran are deleted again.
    pub async fn add(&mut self) -> Result<(), CniError> {
        let mut prev: Option<Value> = None;
        for i in 0..self.plugins.len() {
            match self.exec(i, "ADD", prev.as_ref()).await {
                Ok(Value::Null) => {}
                Ok(result) => prev = Some(result),
                Err(e) => {
                    self.result = prev;
                    if let Err(d) = self.del().await {
                        tracing::warn!(sandbox = %self.sandbox_id, error = %d, "CNI DEL after a failed ADD");
                    }
                    return Err(e);
                }
            }
        }
        self.result = prev;
        Ok(())
    }

    /// CNI DEL through the list in reverse. Every plugin runs even if one fails; the first
    /// failure is returned.
    pub async fn del(&self) -> Result<(), CniError> {
        let mut first = None;
        for i in (0..self.plugins.len()).rev() {
            if let Err(e) = self.exec(i, "DEL", self.result.as_ref()).await {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Where attachments are cached: one JSON file per sandbox.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    fn path(&self, sandbox_id: &str) -> PathBuf {
        self.dir.join(format!("{sandbox_id}.json"))
    }

    /// Write (atomically, durably) the attachment of its sandbox.
    pub fn save(&self, a: &Attachment) -> Result<(), CniError> {
        std::fs::create_dir_all(&self.dir).context(format!("creating {}", self.dir.display()))?;
        let path = self.path(&a.sandbox_id);
        let data = serde_json::to_vec(a).map_err(|e| {
            CniError::Io(IoError::new(
                "encoding the CNI cache",
                std::io::Error::other(e),
            ))
        })?;
        berth_sys::fs::write_atomic(&path, &data)
            .context(format!("writing {}", path.display()))
            .map_err(CniError::from)
    }

    pub fn load(&self, sandbox_id: &str) -> Result<Option<Attachment>, CniError> {
        let path = self.path(sandbox_id);
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| {
                CniError::Io(IoError::new(
                    format!("reading {}", path.display()),
                    std::io::Error::other(e),
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IoError::new(format!("reading {}", path.display()), e).into()),
        }
    }

    /// Remove what a berthd that died while writing an entry left (start-up only).
    pub fn remove_stale_temps(&self) -> usize {
        berth_sys::fs::remove_stale_temps(&self.dir)
    }

    /// The sandboxes with a cache entry.
    pub fn ids(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| {
                        let name = e.ok()?.file_name().into_string().ok()?;
                        name.strip_suffix(".json").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn remove(&self, sandbox_id: &str) -> Result<(), CniError> {
        let path = self.path(sandbox_id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(IoError::new(format!("removing {}", path.display()), e).into())
            }
            _ => Ok(()),
        }
    }
}

/// The `bandwidth` capability from the pod annotations kubelet has always used
/// (`kubernetes.io/ingress-bandwidth`, `kubernetes.io/egress-bandwidth`, e.g. `10M`).
pub fn bandwidth_from_annotations(
    annotations: &std::collections::HashMap<String, String>,
) -> Option<Value> {
    let rate = |k: &str| annotations.get(k).and_then(|v| parse_quantity(v));
    let (ingress, egress) = (
        rate("kubernetes.io/ingress-bandwidth"),
        rate("kubernetes.io/egress-bandwidth"),
    );
    if ingress.is_none() && egress.is_none() {
        return None;
    }
    let mut bw = serde_json::Map::new();
    // Burst as kubelet's dockershim and containerd set it: effectively unlimited.
    if let Some(r) = ingress {
        bw.insert("ingressRate".into(), json!(r));
        bw.insert("ingressBurst".into(), json!(i32::MAX));
    }
    if let Some(r) = egress {
        bw.insert("egressRate".into(), json!(r));
        bw.insert("egressBurst".into(), json!(i32::MAX));
    }
    Some(Value::Object(bw))
}

/// A Kubernetes quantity in bits per second: `100`, `10k`, `10M`, `1G`, `1Ki`, `5Mi`...
fn parse_quantity(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = n * mult;
    (v >= 0.0 && v.is_finite()).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        Attachment {
            sandbox_id: "abc".into(),
            netns: "/run/x/net".into(),
            ifname: "eth0".into(),
            network_name: "pods".into(),
            cni_version: "1.0.0".into(),
            plugins: vec![
                json!({"type": "bridge", "bridge": "cni0"}),
                json!({"type": "portmap", "capabilities": {"portMappings": true}}),
            ],
            plugin_paths: vec!["/bin/bridge".into(), "/bin/portmap".into()],
            bin_dirs: vec!["/bin".into()],
            args: PodNetworkArgs {
                pod_namespace: "ns".into(),
                pod_name: "web".into(),
                pod_uid: "u1".into(),
                port_mappings: vec![
                    json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}),
                ],
                dns: None,
                bandwidth: None,
            },
            result: None,
        }
    }

    #[test]
    fn plugin_configs_carry_name_version_capabilities_and_prev_result() {
        let a = attachment();
        let c0 = a.plugin_config(0, None);
        assert_eq!(c0["name"], "pods");
        assert_eq!(c0["cniVersion"], "1.0.0");
        assert!(
            c0.get("runtimeConfig").is_none(),
            "bridge asks for no capability"
        );
        assert!(c0.get("prevResult").is_none());
        let prev = json!({"ips": [{"address": "10.1.0.2/16"}]});
        let c1 = a.plugin_config(1, Some(&prev));
        assert_eq!(c1["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert_eq!(c1["prevResult"], prev);
        assert_eq!(
            a.cni_args(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u1"
        );
    }

    #[test]
    fn ips_ipv4_first_without_prefix() {
        let mut a = attachment();
        a.result = Some(json!({"ips": [
            {"address": "fd00::5/64", "interface": 0},
            {"address": "10.1.0.5/16", "gateway": "10.1.0.1"}
        ]}));
        assert_eq!(a.ips(), vec!["10.1.0.5", "fd00::5"]);
    }

    #[test]
    fn cache_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path().join("cni"));
        assert!(cache.load("abc").unwrap().is_none());
        let a = attachment();
        cache.save(&a).unwrap();
        assert_eq!(cache.load("abc").unwrap(), Some(a));
        cache.remove("abc").unwrap();
        cache.remove("abc").unwrap();
        assert!(cache.load("abc").unwrap().is_none());
    }

    #[test]
    fn bandwidth_quantities() {
        let mut ann = std::collections::HashMap::new();
        assert!(bandwidth_from_annotations(&ann).is_none());
        ann.insert("kubernetes.io/ingress-bandwidth".into(), "10M".into());
        ann.insert("kubernetes.io/egress-bandwidth".into(), "1Mi".into());
        let bw = bandwidth_from_annotations(&ann).unwrap();
        assert_eq!(bw["ingressRate"], 10_000_000);
        assert_eq!(bw["egressRate"], 1_048_576);
        assert_eq!(parse_quantity("bogus"), None);
    }
}
