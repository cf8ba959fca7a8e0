//! A container's bundle, read and validated before anything is created (no side effects).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::error::{Error, Result};

/// A container's validated configuration: its spec and absolute rootfs.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
}

impl Container {
    /// Read `<bundle>/config.json` and check that this executor can run it.
    pub fn load(id: &str, bundle: &Path) -> Result<Container> {
        let path = bundle.join("config.json");
        let spec = Spec::load(&path).map_err(|source| Error::LoadSpec {
            path: path.clone(),
            source,
        })?;
        Container::new(id, bundle, spec)
    }

    /// Validate `spec` for the bundle directory `bundle`.
    pub fn new(id: &str, bundle: &Path, spec: Spec) -> Result<Container> {
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::InvalidSpec("root is not set".into()))?;
        let rootfs = bundle.join(root.path());
        let container = Container {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            rootfs,
            spec,
        };
        container.validate()?;
        Ok(container)
    }

    fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::InvalidSpec(m));
        if !self.rootfs.is_dir() {
            return invalid(format!(
                "root.path {} is not a directory",
                self.rootfs.display()
            ));
        }
        let Some(process) = self.spec.process() else {
            return invalid("process is not set".into());
        };
        match process.args() {
            Some(args) if !args.is_empty() && !args[0].is_empty() => {}
            _ => return invalid("process.args is empty".into()),
        }
        if !process.cwd().is_absolute() {
            return invalid(format!(
                "process.cwd {} is not absolute",
                process.cwd().display()
            ));
        }
        for m in self.spec.mounts().iter().flatten() {
            if !m.destination().is_absolute() {
                return invalid(format!(
                    "mount destination {} is not absolute",
                    m.destination().display()
                ));
            }
        }
        let mut seen = Vec::new();
        for ns in self.namespaces() {
            let typ = ns.typ();
            if seen.contains(&typ) {
                return invalid(format!("namespace {typ} is listed twice"));
            }
            seen.push(typ);
            match typ {
                LinuxNamespaceType::User if ns.path().is_none() => {
                    return Err(Error::Unsupported(
                        "a user namespace must be given by path (berthd pins the pod's)".into(),
                    ));
                }
                LinuxNamespaceType::Time => {
                    return Err(Error::Unsupported(
                        "time namespaces are not supported yet".into(),
                    ));
                }
                LinuxNamespaceType::Mount if ns.path().is_some() => {
                    return Err(Error::Unsupported(
                        "joining an existing mount namespace is not supported".into(),
                    ));
                }
                _ => {}
            }
        }
        if !seen.contains(&LinuxNamespaceType::Mount) {
            // The rootfs is set up with mounts and pivot_root: never on the host's mount table.
            return invalid("a new mount namespace is required".into());
        }
        if let Some(linux) = self.spec.linux()
            && (linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
                || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty()))
            && !seen.contains(&LinuxNamespaceType::User)
        {
            return invalid("uid/gid mappings need a user namespace".into());
        }
        Ok(())
    }

    /// `linux.namespaces`, or none.
    pub fn namespaces(&self) -> &[oci_spec::runtime::LinuxNamespace] {
        self.spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or_default()
    }

    /// Whether the namespace of `typ` is listed without a path (a new one is created).
    pub fn creates_namespace(&self, typ: LinuxNamespaceType) -> bool {
        self.namespaces()
            .iter()
            .any(|n| n.typ() == typ && n.path().is_none())
    }

    /// `process.terminal`.
    pub fn terminal(&self) -> bool {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#"{
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
    }"#;

    fn bundle() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        d
    }

    #[test]
    fn accepts_a_plain_spec() {
        let d = bundle();
        let c = Container::new("c1", d.path(), spec(BASE)).unwrap();
        assert_eq!(c.rootfs, d.path().join("rootfs"));
        assert!(c.creates_namespace(LinuxNamespaceType::Pid));
        assert!(!c.creates_namespace(LinuxNamespaceType::Network));
        assert!(!c.terminal());
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let d = bundle();
        let with =
            |from: &str, to: &str| Container::new("c", d.path(), spec(&BASE.replace(from, to)));
        let err = with(r#"{"type": "pid"}"#, r#"{"type": "user"}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("user namespace must be given by path"),
            "{err}"
        );
        let err = with(r#"{"type": "mount"}, "#, "").unwrap_err();
        assert!(
            err.to_string().contains("mount namespace is required"),
            "{err}"
        );
        let err = with(r#""args": ["sh"]"#, r#""args": []"#).unwrap_err();
        assert!(err.to_string().contains("process.args is empty"), "{err}");
        let err = with(r#""cwd": "/""#, r#""cwd": "tmp""#).unwrap_err();
        assert!(err.to_string().contains("not absolute"), "{err}");
        let err = with(r#""path": "rootfs""#, r#""path": "nope""#).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = with(r#"{"type": "pid"}"#, r#"{"type": "mount"}"#).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }
}
