//! The container's namespaces: its own mount namespace; the pod's (or its own, or the target
//! container's) PID namespace; the pod's user, IPC, UTS and network namespaces where the pod
//! has its own; its own cgroup namespace when berthd gives one. And the hostname, which only a
//! pod's own UTS namespace has.

use std::path::Path;

use k8s_cri::v1::NamespaceMode;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType};

use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;
use crate::sandbox::namespaces::NsKind;
use crate::sandbox::userns;

/// A namespace of `typ`: a new one, or the one at `path`.
fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace, SpecError> {
    let ns = LinuxNamespaceBuilder::default().typ(typ);
    Ok(match path {
        Some(p) => ns.path(p).build()?,
        None => ns.build()?,
    })
}

/// `linux.namespaces`.
pub fn with_namespaces(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let sb = req.sandbox;
    let opts = req
        .sec
        .namespace_options
        .clone()
        .unwrap_or_else(|| sb.namespace_options());
    let mut out = vec![namespace(LinuxNamespaceType::Mount, None)?];
    match NamespaceMode::try_from(opts.pid) {
        Ok(NamespaceMode::Node) => {}
        Ok(NamespaceMode::Target) => match &req.input.target_pid_ns {
            Some(path) => out.push(namespace(LinuxNamespaceType::Pid, Some(path))?),
            None => {
                return Err(SpecError::Invalid(format!(
                    "the target container {:?} of PID namespace mode TARGET is not running in this pod",
                    opts.target_id
                )));
            }
        },
        // POD: the pod's shared namespace (its PID 1 is berth-shim pod-init).
        Ok(NamespaceMode::Pod) if sb.pin(NsKind::Pid).is_some() => {
            out.push(namespace(LinuxNamespaceType::Pid, sb.pin(NsKind::Pid))?);
        }
        // CONTAINER (or a pod without a shared one): the container's own.
        _ => out.push(namespace(LinuxNamespaceType::Pid, None)?),
    }
    // A container of a user-namespaced pod must ask for the pod's (kubelet copies it).
    if let Some(u) = &opts.userns_options
        && userns::from_options(&opts) != userns::from_options(&sb.namespace_options())
    {
        return Err(SpecError::Invalid(format!(
            "user namespace config for sandbox is different from container. Sandbox userns config: {:?} - Container userns config: {u:?}",
            sb.namespace_options().userns_options
        )));
    }
    for (kind, typ) in [
        (NsKind::User, LinuxNamespaceType::User),
        (NsKind::Ipc, LinuxNamespaceType::Ipc),
        (NsKind::Uts, LinuxNamespaceType::Uts),
        (NsKind::Net, LinuxNamespaceType::Network),
    ] {
        if let Some(p) = sb.pin(kind) {
            out.push(namespace(typ, Some(p))?);
        }
    }
    if req.input.cgroup_ns {
        out.push(namespace(LinuxNamespaceType::Cgroup, None)?);
    }
    draft.linux.set_namespaces(Some(out));
    Ok(())
}

/// The hostname, when the pod has its own UTS namespace and was given one (without one, the
/// pod's UTS namespace already has the node's).
pub fn with_hostname(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    if req.sandbox.pin(NsKind::Uts).is_some() && !req.sandbox.config.hostname.is_empty() {
        draft.hostname = Some(req.sandbox.hostname());
    }
    Ok(())
}
