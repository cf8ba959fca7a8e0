//! What the steps read: the request as berthd received it ([`SpecInput`]) and the parts of it
//! every step needs, taken out once ([`Request`]).

use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext};
use serde_json::Value;

use super::error::SpecError;
use crate::sandbox::SandboxRecord;
use crate::sandbox::namespaces::NsKind;
use crate::sandbox::userns::{self, PodUserns};

/// Everything `build` needs.
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    /// The image config JSON (the blob whose digest is the image id).
    pub image_config: &'a Value,
    pub image_name: &'a str,
    pub sandbox: &'a SandboxRecord,
    /// The prepared rootfs, read for /etc/passwd and /etc/group.
    pub rootfs: &'a Path,
    /// Give the container its own cgroup namespace (cgroup v2 hosts, as containerd).
    pub cgroup_ns: bool,
    /// The systemd cgroup driver: `linux.cgroupsPath` is `<pod slice>:berth:<id>`.
    pub systemd_cgroup: bool,
    /// PID namespace mode TARGET (kubectl debug --target): the target container's namespace.
    pub target_pid_ns: Option<PathBuf>,
}

/// The input with its security context, resources and image config taken out.
pub struct Request<'a> {
    pub input: &'a SpecInput<'a>,
    pub config: &'a ContainerConfig,
    pub sandbox: &'a SandboxRecord,
    /// The container's security context (defaults when kubelet sent none).
    pub sec: LinuxContainerSecurityContext,
    /// The container's resources (defaults when kubelet sent none).
    pub resources: LinuxContainerResources,
    /// The image config's `config` object (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`).
    pub image: Value,
}

impl<'a> Request<'a> {
    /// Take the request apart; a privileged container needs a privileged pod.
    pub fn new(input: &'a SpecInput<'a>) -> Result<Self, SpecError> {
        let c = input.config;
        let sec = c
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone())
            .unwrap_or_default();
        let pod_privileged = input
            .sandbox
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .is_some_and(|s| s.privileged);
        if sec.privileged && !pod_privileged {
            // kubelet marks the pod privileged when any of its containers is (containerd's rule).
            return Err(SpecError::Invalid(
                "no privileged container allowed in sandbox: the pod sandbox is not privileged"
                    .into(),
            ));
        }
        let resources = c
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .unwrap_or_default();
        let image = input
            .image_config
            .get("config")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        Ok(Request {
            input,
            config: c,
            sandbox: input.sandbox,
            sec,
            resources,
            image,
        })
    }

    /// A string list of the image config (`Entrypoint`, `Cmd`, `Env`); missing is empty.
    pub fn image_strings(&self, key: &str) -> Vec<String> {
        self.image
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A string of the image config (`WorkingDir`, `User`); missing is empty.
    pub fn image_string(&self, key: &str) -> &str {
        self.image
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }

    /// The pod's user namespace mapping (validated at RunPodSandbox), if it has one.
    pub fn pod_userns(&self) -> Option<PodUserns> {
        self.sandbox.pin(NsKind::User)?;
        userns::from_options(&self.sandbox.namespace_options())
            .ok()
            .flatten()
    }
}
