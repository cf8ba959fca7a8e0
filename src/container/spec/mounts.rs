//! The container's mounts: containerd's defaults (proc, /dev, /sys, ...), the pod's files
//! (/dev/shm, /etc/hostname, /etc/hosts, /etc/resolv.conf), then the request's binds, parents
//! before children; and the root's propagation those binds need.

use std::path::{Path, PathBuf};

use k8s_cri::v1::MountPropagation;
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder, Mount, MountBuilder};

use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;
use super::userns;
use crate::sandbox::SandboxRecord;
use crate::sandbox::namespaces::NsKind;

/// A mount of `typ` from `source` on `destination`.
fn mount(
    destination: &str,
    typ: &str,
    source: &Path,
    options: &[&str],
) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// containerd's default mounts; /sys and its cgroups writable only for a privileged container.
fn default_mounts(privileged: bool) -> Result<Vec<Mount>, SpecError> {
    let ro = if privileged { "rw" } else { "ro" };
    Ok(vec![
        mount(
            "/proc",
            "proc",
            Path::new("proc"),
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            Path::new("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            Path::new("mqueue"),
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            Path::new("sysfs"),
            &["nosuid", "noexec", "nodev", ro],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", ro],
        )?,
    ])
}

/// The pod's /dev/shm, shared by its containers (containerd's sandbox shm): the pod's tmpfs, or
/// the node's for a hostIPC pod.
fn shm_mount(sandbox: &SandboxRecord) -> Result<Mount, SpecError> {
    let bind = |source: &Path| mount("/dev/shm", "bind", source, &["rbind", "rprivate", "rw"]);
    match &sandbox.shm {
        Some(dir) => bind(dir),
        None if sandbox.pin(NsKind::Ipc).is_none() => bind(Path::new("/dev/shm")),
        // A pod from before pods had one: the container's own, as then.
        None => mount(
            "/dev/shm",
            "tmpfs",
            Path::new("shm"),
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    }
}

/// The pod's /dev/shm, /etc/hostname, /etc/hosts and /etc/resolv.conf (the files read-only
/// with a read-only rootfs, as containerd mounts them).
fn pod_file_mounts(req: &Request<'_>) -> Result<Vec<Mount>, SpecError> {
    let sandbox = req.sandbox;
    let mut out = vec![shm_mount(sandbox)?];
    let Some(dir) = &sandbox.etc_dir else {
        return Ok(out);
    };
    let mode = if req.sec.readonly_rootfs { "ro" } else { "rw" };
    let userns = req.pod_userns();
    for name in ["hostname", "hosts", "resolv.conf"] {
        let mut m = MountBuilder::default()
            .destination(format!("/etc/{name}"))
            .typ("bind")
            .source(dir.join(name))
            .options(vec!["rbind".to_string(), "rprivate".into(), mode.into()]);
        // Owned by the pod's root in a user-namespaced pod (idmapped, as containerd does).
        if let Some(u) = &userns {
            m = m
                .uid_mappings(vec![userns::id_mapping(&u.uid)?])
                .gid_mappings(vec![userns::id_mapping(&u.gid)?]);
        }
        out.push(m.build()?);
    }
    Ok(out)
}

/// kubelet's mappings of a volume of a user-namespaced pod (KEP-127).
fn id_mappings(ids: &[k8s_cri::v1::IdMapping]) -> Result<Vec<LinuxIdMapping>, SpecError> {
    ids.iter()
        .map(|i| {
            Ok(LinuxIdMappingBuilder::default()
                .container_id(i.container_id)
                .host_id(i.host_id)
                .size(i.length)
                .build()?)
        })
        .collect()
}

/// Default mounts, the pod's files, then the request's binds (a bind on a default destination
/// replaces it), parents before children; and the root's propagation the binds need (as
/// containerd: `rshared` for a bidirectional bind, else `rslave` for a host-to-container one,
/// whose sources must be shared, or shared or slave, on the host).
pub fn with_mounts(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let mut rootfs_propagation = None;
    let mut out = default_mounts(req.sec.privileged)?;
    out.extend(pod_file_mounts(req)?);
    let mut binds = Vec::new();
    for m in &req.config.mounts {
        if !m.container_path.starts_with('/') {
            return Err(SpecError::Invalid(format!(
                "mount destination {:?} is not absolute",
                m.container_path
            )));
        }
        if !m.host_path.starts_with('/') {
            return Err(SpecError::Invalid(format!(
                "mount source {:?} is not absolute",
                m.host_path
            )));
        }
        if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
            return Err(SpecError::Invalid(
                "image volume mounts are not supported by berth yet".into(),
            ));
        }
        // As containerd: a recursive read-only bind must be read-only and private (a mount
        // propagated in later could not be made read-only).
        if m.recursive_read_only {
            if !m.readonly {
                return Err(SpecError::Invalid(format!(
                    "recursive read-only mount {} must be read-only (readonly: true)",
                    m.container_path
                )));
            }
            if m.propagation != MountPropagation::PropagationPrivate as i32 {
                return Err(SpecError::Invalid(format!(
                    "recursive read-only mount {} requires private propagation",
                    m.container_path
                )));
            }
        }
        let host = PathBuf::from(&m.host_path);
        if std::fs::symlink_metadata(&host).is_err() {
            // containerd creates a missing bind source as a directory.
            std::fs::create_dir_all(&host).map_err(|e| {
                SpecError::Invalid(format!("creating mount source {}: {e}", host.display()))
            })?;
        }
        let propagation = match MountPropagation::try_from(m.propagation) {
            Ok(MountPropagation::PropagationHostToContainer) => {
                ensure_propagates(&host, false)?;
                rootfs_propagation.get_or_insert("rslave");
                "rslave"
            }
            Ok(MountPropagation::PropagationBidirectional) => {
                ensure_propagates(&host, true)?;
                rootfs_propagation = Some("rshared");
                "rshared"
            }
            _ => "rprivate",
        };
        let mut options = vec!["rbind", propagation, if m.readonly { "ro" } else { "rw" }];
        if m.recursive_read_only {
            options.push("rro");
        }
        let mut bind = mount(&m.container_path, "bind", &host, &options)?;
        // kubelet's volumes of a user-namespaced pod: an idmapped bind (KEP-127). Set past the
        // builder, which refuses one list without the other: berth passes kubelet's on as sent.
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            bind.set_uid_mappings(Some(id_mappings(&m.uid_mappings)?));
            bind.set_gid_mappings(Some(id_mappings(&m.gid_mappings)?));
        }
        binds.push(bind);
    }
    // The same destination string (not the same path: `/a/` and `/a` are two mounts).
    out.retain(|d| {
        !binds
            .iter()
            .any(|b| b.destination().as_os_str() == d.destination().as_os_str())
    });
    out.extend(binds);
    // Stable sort by depth: /a before /a/b, defaults keep their order.
    out.sort_by_key(|m| m.destination().components().count());
    draft.mounts = out;
    if let Some(p) = rootfs_propagation {
        draft.linux.set_rootfs_propagation(Some(p.to_string()));
    }
    Ok(())
}

/// A bind with host-to-container (or bidirectional) propagation only works when the mount
/// holding its source is in a shared (or slave, for host-to-container) peer group on the host:
/// refuse it otherwise, as containerd and runc do, rather than start a container whose mounts
/// silently never propagate.
fn ensure_propagates(source: &Path, bidirectional: bool) -> Result<(), SpecError> {
    let mounts = berth_sys::mountinfo::read_self()
        .map_err(|e| SpecError::Invalid(format!("reading /proc/self/mountinfo: {e}")))?;
    let real = std::fs::canonicalize(source)
        .map_err(|e| SpecError::Invalid(format!("mount source {}: {e}", source.display())))?;
    let Some(holder) = berth_sys::mountinfo::mount_holding(&mounts, &real) else {
        return Err(SpecError::Invalid(format!(
            "no mount holds {}",
            real.display()
        )));
    };
    if holder.is_shared() || (!bidirectional && holder.is_slave()) {
        return Ok(());
    }
    Err(SpecError::Invalid(format!(
        "path {} is mounted on {} but it is not a {} mount",
        source.display(),
        holder.mount_point.display(),
        if bidirectional {
            "shared"
        } else {
            "shared or slave"
        }
    )))
}
