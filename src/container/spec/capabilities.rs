//! The container's capabilities, as containerd sets them: its default set (every capability
//! when privileged), then the request's additions, then its drops; the ambient (and so
//! inheritable) set only when asked for, and only from that set.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilitiesBuilder};
use serde::Deserialize;
use serde::de::IntoDeserializer;

use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;

/// containerd's default capability set (`CapEff: 00000000a80425fb`).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows, for privileged containers and `ALL`.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `sys_admin`, `SYS_ADMIN`, `CAP_SYS_ADMIN` → `CAP_SYS_ADMIN`.
pub fn cap_name(n: &str) -> String {
    let up = n.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set: defaults (or all when privileged), then add, then drop, as containerd.
pub fn resolve(sec: &k8s_cri::v1::LinuxContainerSecurityContext) -> Result<Vec<String>, SpecError> {
    let mut caps: Vec<String> = if sec.privileged {
        ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    };
    let Some(req) = &sec.capabilities else {
        return Ok(caps);
    };
    let check = |n: &str| -> Result<String, SpecError> {
        let name = cap_name(n);
        if name == "CAP_ALL" || ALL_CAPABILITIES.contains(&name.as_str()) {
            Ok(name)
        } else {
            Err(SpecError::Invalid(format!("unknown capability {n:?}")))
        }
    };
    for a in &req.add_capabilities {
        let a = check(a)?;
        if a == "CAP_ALL" {
            caps = ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        } else if !caps.contains(&a) {
            caps.push(a);
        }
    }
    for d in &req.drop_capabilities {
        let d = check(d)?;
        if d == "CAP_ALL" {
            caps.clear();
        } else {
            caps.retain(|c| c != &d);
        }
    }
    Ok(caps)
}

/// `CAP_*` names as oci-spec's set (its own parser, the one config.json is read with).
fn capability_set(names: &[String]) -> Result<Capabilities, SpecError> {
    names
        .iter()
        .map(|n| {
            Capability::deserialize(n.as_str().into_deserializer()).map_err(
                |e: serde::de::value::Error| SpecError::Invalid(format!("capability {n}: {e}")),
            )
        })
        .collect()
}

/// Bounding, effective and permitted: the resolved set; ambient and inheritable: the
/// requested ambient capabilities, each of which must be in that set.
pub fn with_capabilities(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let caps = resolve(&req.sec)?;
    let set = capability_set(&caps)?;
    let ambient: Vec<String> = req
        .sec
        .capabilities
        .as_ref()
        .map(|c| {
            c.add_ambient_capabilities
                .iter()
                .map(|n| cap_name(n))
                .collect()
        })
        .unwrap_or_default();
    for a in &ambient {
        if !caps.contains(a) {
            return Err(SpecError::Invalid(format!(
                "ambient capability {a} is not in the container's capability set"
            )));
        }
    }
    let builder = LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set);
    let caps = if ambient.is_empty() {
        let mut caps = builder.build()?;
        // oci-spec's default would give every process three ambient and inheritable ones.
        caps.set_ambient(None);
        caps.set_inheritable(None);
        caps
    } else {
        let ambient = capability_set(&ambient)?;
        builder
            .ambient(ambient.clone())
            .inheritable(ambient)
            .build()?
    };
    draft.process.set_capabilities(Some(caps));
    Ok(())
}
