//! CNI: network configuration loading (the pod network is the first valid config in the
//! config dir, in name order, as libcni and containerd pick it).

pub mod cni;

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why no pod network is available.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("no network config found in {0}")]
    NoConfig(PathBuf),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network config {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("network {network}: plugin {plugin:?} not found in {dirs}")]
    MissingPlugin {
        network: String,
        plugin: String,
        dirs: String,
    },
}

/// A loaded network configuration list.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub path: PathBuf,
    pub name: String,
    pub cni_version: String,
    /// Each plugin's own config object, as the file has it.
    pub plugins: Vec<serde_json::Value>,
    /// The executable of each plugin, resolved in the bin dirs.
    pub plugin_paths: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListJson {
    name: Option<String>,
    cni_version: Option<String>,
    plugins: Option<Vec<serde_json::Value>>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Load the pod network: the first parseable config in `conf_dir` whose plugins all exist.
pub fn load_default_network(
    conf_dir: &Path,
    bin_dirs: &[PathBuf],
) -> Result<NetworkConfig, NetworkError> {
    let entries = match std::fs::read_dir(conf_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NetworkError::NoConfig(conf_dir.to_path_buf()));
        }
        Err(source) => {
            return Err(NetworkError::Io {
                path: conf_dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "conflist" || x == "conf" || x == "json")
        })
        .collect();
    files.sort();
    let mut first_err = None;
    for f in files {
        match load_file(&f, bin_dirs) {
            Ok(n) => return Ok(n),
            Err(e) => {
                tracing::debug!(error = %e, "skipping network config");
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| NetworkError::NoConfig(conf_dir.to_path_buf())))
}

fn load_file(path: &Path, bin_dirs: &[PathBuf]) -> Result<NetworkConfig, NetworkError> {
    let invalid = |reason: String| NetworkError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(|source| NetworkError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    let parsed: ListJson =
        serde_json::from_value(raw.clone()).map_err(|e| invalid(e.to_string()))?;
    let name = parsed
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("missing \"name\"".into()))?;
    let cni_version = parsed.cni_version.unwrap_or_else(|| "0.4.0".into());
    // A single-plugin .conf is a list of one.
    let plugins = match (parsed.plugins, parsed.kind) {
        (Some(p), _) if !p.is_empty() => p,
        (Some(_), _) => return Err(invalid("\"plugins\" is empty".into())),
        (None, Some(_)) => vec![raw],
        (None, None) => return Err(invalid("neither \"plugins\" nor \"type\"".into())),
    };
    let mut plugin_paths = Vec::new();
    for p in &plugins {
        let kind = p
            .get("type")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty() && !t.contains('/'))
            .ok_or_else(|| invalid("a plugin has no valid \"type\"".into()))?;
        let found = bin_dirs.iter().map(|d| d.join(kind)).find(|p| p.is_file());
        match found {
            Some(p) => plugin_paths.push(p),
            None => {
                return Err(NetworkError::MissingPlugin {
                    network: name,
                    plugin: kind.to_string(),
                    dirs: bin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":"),
                });
            }
        }
    }
    Ok(NetworkConfig {
        path: path.to_path_buf(),
        name,
        cni_version,
        plugins,
        plugin_paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_valid_config_wins() {
        let conf = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let bins = vec![bin.path().to_path_buf()];
        assert!(matches!(
            load_default_network(conf.path(), &bins),
            Err(NetworkError::NoConfig(_))
        ));
        std::fs::write(bin.path().join("bridge"), b"").unwrap();
        std::fs::write(conf.path().join("05-bad.conflist"), b"{not json").unwrap();
        std::fs::write(
            conf.path().join("10-pods.conflist"),
            br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        assert!(matches!(
            load_default_network(conf.path(), &bins),
            Err(NetworkError::Invalid { .. })
        ));
        std::fs::write(bin.path().join("portmap"), b"").unwrap();
        let n = load_default_network(conf.path(), &bins).unwrap();
        assert_eq!(n.name, "pods");
        assert_eq!(n.plugin_paths.len(), 2);
        std::fs::write(
            conf.path().join("01-single.conf"),
            br#"{"cniVersion":"0.4.0","name":"one","type":"bridge"}"#,
        )
        .unwrap();
        assert_eq!(
            load_default_network(conf.path(), &bins).unwrap().name,
            "one"
        );
    }
}
