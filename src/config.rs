//! berthd configuration: a TOML file whose every key has a default that serves out of the box,
//! plus an optional drop-in directory (`<config>.d/*.toml`, applied in name order).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::http_limits::HttpLimits;

/// The default config file location.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/berth.toml";

/// Errors while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole daemon configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Durable data: metadata store, content store, snapshots.
    pub root: PathBuf,
    /// Runtime state (tmpfs): CRI socket, pinned namespaces, shim dirs.
    pub state: PathBuf,
    /// The CRI gRPC unix socket.
    pub address: PathBuf,
    /// Log filter (tracing `EnvFilter` syntax): error, warn, info, debug, trace.
    pub log_level: String,
    /// How log lines are written to stderr: `text` (human) or `json` (one object a line).
    pub log_format: LogFormat,
    pub registry: RegistryConfig,
    pub cni: CniConfig,
    pub metrics: MetricsConfig,
    pub image: ImageConfig,
    pub streaming: StreamingConfig,
    pub runtime: RuntimeConfig,
    pub cgroup: CgroupConfig,
    pub shim_logs: ShimLogsConfig,
}

/// `[cgroup]`: who manages container cgroups.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupConfig {
    /// `cgroupfs` (berth writes the cgroup tree itself; the default) or `systemd` (containers
    /// are transient scopes in their pod's slice, started over D-Bus; systemd must run the
    /// node). kubelet takes the driver RuntimeConfig reports (KEP-4033).
    pub driver: CgroupDriver,
}

/// `[cgroup] driver`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    #[default]
    Cgroupfs,
    Systemd,
}

/// `[shim_logs]`: the persistent copies of shims' own logs, `<root>/shim-logs/<id>.log`
/// (each rotated at 1 MiB, one `.log.1` kept), which outlive their containers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShimLogsConfig {
    /// Logs of removed containers kept (the most recently removed); 0 removes a container's
    /// log with it.
    pub keep_removed: usize,
    /// Bytes the kept logs of removed containers may take together.
    pub max_removed_bytes: u64,
}

impl Default for ShimLogsConfig {
    fn default() -> Self {
        ShimLogsConfig {
            keep_removed: 100,
            max_removed_bytes: 64 << 20,
        }
    }
}

/// `[runtime]`: the runtime handlers berth serves.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Names under which berth's own runtime is also served, besides the default handler `""`
    /// (a RuntimeClass needs a non-empty `handler`; containerd serves its default runtime as
    /// `runc` and as `""` alike). Default: `["berth"]`.
    pub handlers: Vec<String>,
}

/// berthd's log line format (`log_format`, `--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (tracing's default format).
    #[default]
    Text,
    /// One JSON object a line: timestamp, level, target, fields, spans.
    Json,
}

/// `[registry]`: where registry hosts are configured.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// A directory in containerd's `certs.d` layout: `<host>/hosts.toml` (mirrors, plain-HTTP
    /// servers, skip_verify, CA files) and `_default/hosts.toml` for every other host.
    pub config_path: PathBuf,
}

/// `[cni]`: where CNI network configs and plugins are found.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CniConfig {
    /// Directory of `.conflist` / `.conf` files; the first in name order is the pod network.
    pub conf_dir: PathBuf,
    /// Directories searched for plugin executables, in order.
    pub bin_dirs: Vec<PathBuf>,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` serving `GET /metrics`; empty disables the endpoint.
    pub address: String,
    /// Seconds a client has to send a request's headers (an idle keep-alive connection is
    /// closed after as long).
    pub header_read_timeout_secs: u64,
    /// Connections open at once; more are closed as they are accepted.
    pub max_connections: usize,
    /// Seconds between two readings of every pod and container for ListPodSandboxMetrics
    /// (CRI answers the latest reading, never reads per request).
    pub collection_period_secs: u64,
}

/// `[streaming]`: the HTTP server behind Exec, Attach and PortForward URLs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// `host:port`; port 0 lets the kernel choose. Keep it on loopback unless the clients (the
    /// kubelet's API server proxy) reach it from elsewhere.
    pub address: String,
    /// Seconds a streaming URL stays valid (it can be used once).
    pub token_ttl_secs: u64,
    /// Seconds a client has to send a request's headers (an idle keep-alive connection is
    /// closed after as long).
    pub header_read_timeout_secs: u64,
    /// Connections open at once, upgraded sessions included; more are closed as they are
    /// accepted.
    pub max_connections: usize,
}

/// `[image]`: pull behaviour.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Layers of one image downloaded (and unpacked) at the same time.
    pub max_concurrent_downloads: usize,
    /// Seconds a registry may stay silent during a pull before the pull fails.
    pub read_timeout_secs: u64,
    /// Bytes of file data one layer may write when it is unpacked (holes of sparse files are
    /// free); a layer that writes more fails the pull.
    pub max_layer_bytes: u64,
    /// Files, directories, links and other objects one layer may create when it is unpacked.
    pub max_layer_inodes: u64,
}

impl ImageConfig {
    /// The unpack budget of one layer.
    pub fn layer_limits(&self) -> crate::snapshot::unpack::Limits {
        crate::snapshot::unpack::Limits {
            max_bytes: self.max_layer_bytes,
            max_inodes: self.max_layer_inodes,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/var/lib/berth"),
            state: PathBuf::from("/run/berth"),
            address: PathBuf::from("/run/berth/berth.sock"),
            log_level: "info".to_string(),
            log_format: LogFormat::Text,
            registry: RegistryConfig::default(),
            cni: CniConfig::default(),
            metrics: MetricsConfig::default(),
            image: ImageConfig::default(),
            streaming: StreamingConfig::default(),
            runtime: RuntimeConfig::default(),
            cgroup: CgroupConfig::default(),
            shim_logs: ShimLogsConfig::default(),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            handlers: vec!["berth".to_string()],
        }
    }
}

impl RuntimeConfig {
    /// Whether RunPodSandbox's `runtime_handler` names berth's runtime.
    pub fn serves(&self, handler: &str) -> bool {
        handler.is_empty() || self.handlers.iter().any(|h| h == handler)
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            config_path: PathBuf::from("/etc/berth/certs.d"),
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            address: "127.0.0.1:9717".to_string(),
            header_read_timeout_secs: 30,
            max_connections: 64,
            collection_period_secs: 10,
        }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1:0".to_string(),
            token_ttl_secs: 60,
            header_read_timeout_secs: 30,
            max_connections: 1024,
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            max_concurrent_downloads: 8,
            read_timeout_secs: 60,
            max_layer_bytes: crate::snapshot::unpack::DEFAULT_MAX_LAYER_BYTES,
            max_layer_inodes: crate::snapshot::unpack::DEFAULT_MAX_LAYER_INODES,
        }
    }
}

impl MetricsConfig {
    /// How often pod and container metrics are read.
    pub fn collection_period(&self) -> Duration {
        Duration::from_secs(self.collection_period_secs)
    }

    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            max_connections: self.max_connections,
        }
    }
}

impl StreamingConfig {
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            max_connections: self.max_connections,
        }
    }
}

impl Config {
    /// Load `path` (a missing file is the defaults only when `required` is false) and its drop-ins.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::new();
        match std::fs::read_to_string(path) {
            Ok(text) => merge(&mut merged, parse_table(path, &text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        for dropin in dropin_files(path)? {
            let text = std::fs::read_to_string(&dropin).map_err(|source| ConfigError::Read {
                path: dropin.clone(),
                source,
            })?;
            merge(&mut merged, parse_table(&dropin, &text)?);
        }
        let config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Refuse values that cannot work, with the key named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, p) in [
            ("root", &self.root),
            ("state", &self.state),
            ("address", &self.address),
        ] {
            if !p.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be an absolute path, got {}",
                    p.display()
                )));
            }
        }
        // A RuntimeClass handler is a DNS label (Kubernetes validates it so).
        for h in &self.runtime.handlers {
            let label = !h.is_empty()
                && h.len() <= 63
                && h.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !h.starts_with('-')
                && !h.ends_with('-');
            if !label {
                return Err(ConfigError::Invalid(format!(
                    "runtime.handlers: {h:?} is not a DNS label (a RuntimeClass handler)"
                )));
            }
        }
        if self.image.max_concurrent_downloads == 0 {
            return Err(ConfigError::Invalid(
                "image.max_concurrent_downloads must be at least 1".into(),
            ));
        }
        if self.image.max_layer_bytes == 0 || self.image.max_layer_inodes == 0 {
            return Err(ConfigError::Invalid(
                "image.max_layer_bytes and image.max_layer_inodes must be at least 1".into(),
            ));
        }
        if !self.metrics.address.is_empty()
            && self
                .metrics
                .address
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "metrics.address must be host:port or empty, got {:?}",
                self.metrics.address
            )));
        }
        if self.metrics.collection_period_secs == 0 {
            return Err(ConfigError::Invalid(
                "metrics.collection_period_secs must be at least 1".into(),
            ));
        }
        if self
            .streaming
            .address
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "streaming.address must be host:port, got {:?}",
                self.streaming.address
            )));
        }
        for (key, secs, max) in [
            (
                "metrics",
                self.metrics.header_read_timeout_secs,
                self.metrics.max_connections,
            ),
            (
                "streaming",
                self.streaming.header_read_timeout_secs,
                self.streaming.max_connections,
            ),
        ] {
            if secs == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{key}.header_read_timeout_secs must be at least 1"
                )));
            }
            if max == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{key}.max_connections must be at least 1"
                )));
            }
        }
        if self.streaming.token_ttl_secs == 0 {
            return Err(ConfigError::Invalid(
                "streaming.token_ttl_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn parse_table(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}

/// `<config>.d/*.toml` in name order; a missing directory has none.
fn dropin_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut dir = path.as_os_str().to_owned();
    dir.push(".d");
    let dir = PathBuf::from(dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Deep-merge tables: a drop-in overrides single keys, not whole sections.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_optional_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&dir.path().join("none.toml"), false).unwrap();
        assert_eq!(c, Config::default());
        assert!(Config::load(&dir.path().join("none.toml"), true).is_err());
    }

    #[test]
    fn dropins_override_single_keys() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("berth.toml");
        std::fs::write(
            &main,
            "root = \"/r\"\n[cni]\nconf_dir = \"/c\"\n[metrics]\naddress = \"\"\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("berth.toml.d")).unwrap();
        std::fs::write(
            dir.path().join("berth.toml.d/10-x.toml"),
            "[cni]\nbin_dirs = [\"/b\"]\n",
        )
        .unwrap();
        let c = Config::load(&main, true).unwrap();
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.cni.conf_dir, PathBuf::from("/c"));
        assert_eq!(c.cni.bin_dirs, vec![PathBuf::from("/b")]);
        assert_eq!(c.metrics.address, "");
        assert_eq!(c.state, PathBuf::from("/run/berth"));
    }

    #[test]
    fn log_format_key() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("berth.toml");
        std::fs::write(&main, "log_format = \"json\"\n").unwrap();
        assert_eq!(
            Config::load(&main, true).unwrap().log_format,
            LogFormat::Json
        );
        std::fs::write(&main, "log_format = \"xml\"\n").unwrap();
        assert!(Config::load(&main, true).is_err());
    }

    #[test]
    fn cgroup_driver_key() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("berth.toml");
        assert_eq!(Config::default().cgroup.driver, CgroupDriver::Cgroupfs);
        std::fs::write(&main, "[cgroup]\ndriver = \"systemd\"\n").unwrap();
        assert_eq!(
            Config::load(&main, true).unwrap().cgroup.driver,
            CgroupDriver::Systemd
        );
        std::fs::write(&main, "[cgroup]\ndriver = \"Systemd\"\n").unwrap();
        assert!(Config::load(&main, true).is_err());
    }

    #[test]
    fn shim_logs_keys() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("berth.toml");
        std::fs::write(&main, "[shim_logs]\nkeep_removed = 0\n").unwrap();
        let c = Config::load(&main, true).unwrap();
        assert_eq!(c.shim_logs.keep_removed, 0);
        assert_eq!(c.shim_logs.max_removed_bytes, 64 << 20);
        std::fs::write(&main, "[shim_logs]\nkeep = 1\n").unwrap();
        assert!(Config::load(&main, true).is_err());
    }

    #[test]
    fn runtime_handlers_key() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("berth.toml");
        assert!(Config::default().runtime.serves(""));
        assert!(Config::default().runtime.serves("berth"));
        assert!(!Config::default().runtime.serves("runc"));
        std::fs::write(&main, "[runtime]\nhandlers = [\"runc\", \"kata-1\"]\n").unwrap();
        let c = Config::load(&main, true).unwrap();
        assert!(c.runtime.serves("runc") && c.runtime.serves("kata-1") && c.runtime.serves(""));
        assert!(!c.runtime.serves("berth"));
        std::fs::write(&main, "[runtime]\nhandlers = []\n").unwrap();
        assert!(!Config::load(&main, true).unwrap().runtime.serves("berth"));
        for bad in ["\"\"", "\"Runc\"", "\"-x\"", "\"a.b\""] {
            std::fs::write(&main, format!("[runtime]\nhandlers = [{bad}]\n")).unwrap();
            assert!(Config::load(&main, true).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("berth.toml");
        std::fs::write(&main, "rooot = \"/r\"\n").unwrap();
        assert!(matches!(
            Config::load(&main, true),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::write(&main, "root = \"relative\"\n").unwrap();
        assert!(matches!(
            Config::load(&main, true),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn shipped_config_file_is_the_defaults() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/berth.toml");
        let c = Config::load(&shipped, true).unwrap();
        assert_eq!(c, Config::default());
    }
}
