//! `spec::build`: a CRI `ContainerConfig`, the image config and the pod sandbox become one OCI
//! runtime spec (config.json), merged the way Docker and containerd merge them and with
//! containerd's defaults where the client says nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, MountPropagation, NamespaceMode};
use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use super::user::{self, UserRequest};
use crate::sandbox::SandboxRecord;
use crate::sandbox::namespaces::NsKind;

/// Errors turning a request into a spec; all are the client's to fix.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    User(#[from] user::UserError),
    #[error("the generated spec is not valid: {0}")]
    Spec(serde_json::Error),
}

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

/// containerd's default masked paths.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
    /// PID namespace mode TARGET (kubectl debug --target): the target container's namespace.
    pub target_pid_ns: Option<PathBuf>,
}

/// Build the OCI spec. Missing host paths of bind mounts are created as directories
/// (containerd does the same), so this is the create step, not a pure function.
pub fn build(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
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
            "no privileged container allowed in sandbox: the pod sandbox is not privileged".into(),
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
        .unwrap_or(json!({}));
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };

    // Command: as Docker/containerd merge it.
    let entrypoint = strings(image.get("Entrypoint"));
    let cmd = strings(image.get("Cmd"));
    let args: Vec<String> = if !c.command.is_empty() {
        c.command.iter().chain(c.args.iter()).cloned().collect()
    } else if !c.args.is_empty() {
        entrypoint.iter().chain(c.args.iter()).cloned().collect()
    } else {
        entrypoint.iter().chain(cmd.iter()).cloned().collect()
    };
    if args.is_empty() {
        return Err(SpecError::Invalid(
            "no command specified: neither the container config nor the image has one".into(),
        ));
    }

    // Environment: HOSTNAME, then the image's, then the request's; later keys replace earlier.
    let hostname = input.sandbox.hostname();
    let mut env: Vec<String> = Vec::new();
    let mut set_env = |kv: String| {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    set_env(format!("HOSTNAME={hostname}"));
    for e in strings(image.get("Env")) {
        set_env(e);
    }
    for kv in &c.envs {
        if kv.key.is_empty() {
            return Err(SpecError::Invalid(
                "an environment variable has no name".into(),
            ));
        }
        set_env(format!("{}={}", kv.key, kv.value));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.to_string());
    }

    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else {
        image
            .get("WorkingDir")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string()
    };
    if !cwd.starts_with('/') {
        return Err(SpecError::Invalid(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }

    let identity = user::resolve(
        input.rootfs,
        &UserRequest {
            image_user: image
                .get("User")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            run_as_user: sec.run_as_user.as_ref().map(|v| v.value),
            run_as_username: sec.run_as_username.clone(),
            run_as_group: sec.run_as_group.as_ref().map(|v| v.value),
            supplemental_groups: sec.supplemental_groups.clone(),
            strict_groups: sec.supplemental_groups_policy
                == k8s_cri::v1::SupplementalGroupsPolicy::Strict as i32,
        },
    )?;

    // As runc and containerd: HOME from the user's passwd entry (else /) unless set; a tty
    // container gets TERM=xterm.
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = identity.home.clone().unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    if c.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }

    let caps = capabilities(&sec)?;
    let mut process = json!({
        "terminal": c.tty,
        "user": {
            "uid": identity.uid,
            "gid": identity.gid,
            "additionalGids": identity.additional_gids,
        },
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
        "noNewPrivileges": sec.no_new_privs,
    });
    if resources.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(resources.oom_score_adj);
    }
    let ambient: Vec<String> = sec
        .capabilities
        .as_ref()
        .map(|c| {
            c.add_ambient_capabilities
                .iter()
                .map(|n| cap_name(n))
                .collect()
        })
        .unwrap_or_default();
    if !ambient.is_empty() {
        for a in &ambient {
            if !caps.contains(a) {
                return Err(SpecError::Invalid(format!(
                    "ambient capability {a} is not in the container's capability set"
                )));
            }
        }
        process["capabilities"]["ambient"] = json!(ambient);
        process["capabilities"]["inheritable"] = json!(ambient);
    }

    let (mounts, rootfs_propagation) = mounts(
        c,
        sec.privileged,
        &pod_file_mounts(input.sandbox, sec.readonly_rootfs),
    )?;
    let (devices, device_rules) = devices(c)?;
    let (masked, readonly) = if sec.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            if sec.masked_paths.is_empty() {
                DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect()
            } else {
                sec.masked_paths.clone()
            },
            if sec.readonly_paths.is_empty() {
                DEFAULT_READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                sec.readonly_paths.clone()
            },
        )
    };

    let mut linux = json!({
        "namespaces": namespaces(input)?,
        "maskedPaths": masked,
        "readonlyPaths": readonly,
        "devices": devices,
        "resources": linux_resources(&resources, device_rules),
        "cgroupsPath": cgroups_path(input),
    });
    let sysctls = input
        .sandbox
        .config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone())
        .unwrap_or_default();
    if !sysctls.is_empty() {
        linux["sysctl"] = json!(sysctls);
    }
    if let Some(profile) = super::seccomp::profile(&sec, &caps)? {
        linux["seccomp"] = profile;
    }
    if let Some(p) = rootfs_propagation {
        linux["rootfsPropagation"] = json!(p);
    }
    if let Some(u) = pod_userns(input.sandbox) {
        linux["uidMappings"] = json!([u.uid.oci()]);
        linux["gidMappings"] = json!([u.gid.oci()]);
    }
    if let Some(profile) = super::apparmor::profile(&sec)? {
        process["apparmorProfile"] = json!(profile);
    }

    let mut annotations: BTreeMap<String, String> = c.annotations.clone().into_iter().collect();
    let pod = input.sandbox.config.metadata.clone().unwrap_or_default();
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container".to_string()),
        ("io.kubernetes.cri.sandbox-id", input.sandbox.id.clone()),
        (
            "io.kubernetes.cri.container-name",
            c.metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
        ),
        ("io.kubernetes.cri.image-name", input.image_name.to_string()),
        ("io.kubernetes.cri.sandbox-name", pod.name),
        ("io.kubernetes.cri.sandbox-namespace", pod.namespace),
        ("io.kubernetes.cri.sandbox-uid", pod.uid),
    ] {
        annotations.insert(k.to_string(), v);
    }

    let mut spec = json!({
        "ociVersion": "1.1.0",
        "process": process,
        "root": { "path": "rootfs", "readonly": sec.readonly_rootfs },
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    });
    // The pod's UTS namespace already has its hostname (the node's when none was given).
    if input.sandbox.pin(NsKind::Uts).is_some() && !input.sandbox.config.hostname.is_empty() {
        spec["hostname"] = json!(hostname);
    }
    serde_json::from_value(spec).map_err(SpecError::Spec)
}

fn cap_name(n: &str) -> String {
    let up = n.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set: defaults (or all when privileged), then add, then drop, as containerd.
fn capabilities(
    sec: &k8s_cri::v1::LinuxContainerSecurityContext,
) -> Result<Vec<String>, SpecError> {
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

fn default_mounts(privileged: bool) -> Vec<Value> {
    let ro = if privileged { "rw" } else { "ro" };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", ro]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", ro]}),
    ]
}

/// The pod's user namespace mapping (validated at RunPodSandbox), if it has one.
fn pod_userns(sandbox: &SandboxRecord) -> Option<crate::sandbox::userns::PodUserns> {
    sandbox.pin(NsKind::User)?;
    crate::sandbox::userns::from_options(&sandbox.namespace_options())
        .ok()
        .flatten()
}

/// The pod's /dev/shm, shared by its containers (containerd's sandbox shm): the pod's tmpfs, or
/// the node's for a hostIPC pod.
fn shm_mount(sandbox: &SandboxRecord) -> Value {
    let bind = |source: &Path| {
        json!({"destination": "/dev/shm", "type": "bind", "source": source,
               "options": ["rbind", "rprivate", "rw"]})
    };
    match &sandbox.shm {
        Some(dir) => bind(dir),
        None if sandbox.pin(NsKind::Ipc).is_none() => bind(Path::new("/dev/shm")),
        // A pod from before pods had one: the container's own, as then.
        None => json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    }
}

/// The pod's /dev/shm, /etc/hostname, /etc/hosts and /etc/resolv.conf (the files read-only
/// with a read-only rootfs, as containerd mounts them).
fn pod_file_mounts(sandbox: &SandboxRecord, readonly: bool) -> Vec<Value> {
    let shm = shm_mount(sandbox);
    let Some(dir) = &sandbox.etc_dir else {
        return vec![shm];
    };
    let userns = pod_userns(sandbox);
    std::iter::once(shm)
        .chain(["hostname", "hosts", "resolv.conf"].iter().map(|name| {
            let mut m = json!({
                "destination": format!("/etc/{name}"),
                "type": "bind",
                "source": dir.join(name),
                "options": ["rbind", "rprivate", if readonly { "ro" } else { "rw" }],
            });
            // Owned by the pod's root in a user-namespaced pod (idmapped, as containerd does).
            if let Some(u) = &userns {
                m["uidMappings"] = json!([u.uid.oci()]);
                m["gidMappings"] = json!([u.gid.oci()]);
            }
            m
        }))
        .collect()
}

/// Default mounts, the pod's files, then the request's binds (a bind on a default destination
/// replaces it), parents before children; and the root's propagation the binds need (as
/// containerd: `rshared` for a bidirectional bind, else `rslave` for a host-to-container one,
/// whose sources must be shared, or shared or slave, on the host).
fn mounts(
    c: &ContainerConfig,
    privileged: bool,
    pod_files: &[Value],
) -> Result<(Vec<Value>, Option<&'static str>), SpecError> {
    let mut rootfs_propagation = None;
    let mut out = default_mounts(privileged);
    out.extend(pod_files.iter().cloned());
    let mut binds = Vec::new();
    for m in &c.mounts {
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
        let mut bind = json!({
            "destination": m.container_path,
            "type": "bind",
            "source": m.host_path,
            "options": options,
        });
        // kubelet's volumes of a user-namespaced pod: an idmapped bind (KEP-127).
        let oci = |ids: &[k8s_cri::v1::IdMapping]| {
            ids.iter()
                .map(|i| json!({"containerID": i.container_id, "hostID": i.host_id, "size": i.length}))
                .collect::<Vec<_>>()
        };
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            bind["uidMappings"] = json!(oci(&m.uid_mappings));
            bind["gidMappings"] = json!(oci(&m.gid_mappings));
        }
        binds.push(bind);
    }
    out.retain(|d| !binds.iter().any(|b| b["destination"] == d["destination"]));
    out.extend(binds);
    // Stable sort by depth: /a before /a/b, defaults keep their order.
    out.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .map_or(0, |d| Path::new(d).components().count())
    });
    Ok((out, rootfs_propagation))
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

/// Devices from the request, and the device cgroup rules: deny all, allow containerd's
/// defaults and the requested devices.
fn devices(c: &ContainerConfig) -> Result<(Vec<Value>, Vec<Value>), SpecError> {
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for (t, major, minor, access) in [
        ("c", Some(1), Some(3), "rwm"),    // null
        ("c", Some(1), Some(5), "rwm"),    // zero
        ("c", Some(1), Some(7), "rwm"),    // full
        ("c", Some(5), Some(0), "rwm"),    // tty
        ("c", Some(1), Some(8), "rwm"),    // random
        ("c", Some(1), Some(9), "rwm"),    // urandom
        ("c", Some(5), Some(2), "rwm"),    // ptmx
        ("c", Some(136), None, "rwm"),     // pts
        ("c", None, None, "m"),            // mknod of any char device
        ("b", None, None, "m"),            // and block device
        ("c", Some(10), Some(200), "rwm"), // tun
    ] {
        rules.push(
            json!({"allow": true, "type": t, "major": major, "minor": minor, "access": access}),
        );
    }
    let mut devices = Vec::new();
    for d in &c.devices {
        let meta = std::fs::metadata(&d.host_path)
            .map_err(|e| SpecError::Invalid(format!("device {}: {e}", d.host_path)))?;
        let kind = if meta.file_type().is_char_device() {
            "c"
        } else if meta.file_type().is_block_device() {
            "b"
        } else {
            return Err(SpecError::Invalid(format!(
                "{} is not a device",
                d.host_path
            )));
        };
        let access = if d.permissions.is_empty() {
            "rwm".to_string()
        } else if d.permissions.chars().all(|c| "rwm".contains(c)) {
            d.permissions.clone()
        } else {
            return Err(SpecError::Invalid(format!(
                "device permissions {:?} are not a subset of \"rwm\"",
                d.permissions
            )));
        };
        let rdev = meta.rdev();
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let path = if d.container_path.is_empty() {
            d.host_path.clone()
        } else {
            d.container_path.clone()
        };
        devices.push(json!({
            "path": path, "type": kind, "major": major, "minor": minor,
            "fileMode": meta.mode() & 0o777, "uid": meta.uid(), "gid": meta.gid(),
        }));
        rules.push(
            json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": access}),
        );
    }
    Ok((devices, rules))
}

/// Whether the node accounts swap in the memory controller (cgroup v1 `memory.memsw.*`, v2
/// `memory.swap.max`), as containerd checks before it defaults swap to the memory limit.
fn swap_accounting() -> bool {
    static SWAP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SWAP.get_or_init(|| {
        if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
            return true;
        }
        // v2: the file exists in every non-root cgroup when swap is accounted.
        std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
            .is_some_and(|p| {
                Path::new("/sys/fs/cgroup")
                    .join(p.trim_start_matches('/'))
                    .join("memory.swap.max")
                    .exists()
            })
    })
}

pub(crate) fn linux_resources(
    r: &k8s_cri::v1::LinuxContainerResources,
    device_rules: Vec<Value>,
) -> Value {
    let mut out = json!({ "devices": device_rules });
    let mut cpu = serde_json::Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if r.cpu_quota != 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    let mut memory = serde_json::Map::new();
    if r.memory_limit_in_bytes > 0 {
        memory.insert("limit".into(), json!(r.memory_limit_in_bytes));
    }
    if r.memory_swap_limit_in_bytes > 0 {
        memory.insert("swap".into(), json!(r.memory_swap_limit_in_bytes));
    } else if r.memory_limit_in_bytes > 0 && swap_accounting() {
        // containerd's default: memory+swap = memory, so a limited container does not swap.
        memory.insert("swap".into(), json!(r.memory_limit_in_bytes));
    }
    if !memory.is_empty() {
        out["memory"] = Value::Object(memory);
    }
    if !r.hugepage_limits.is_empty() {
        out["hugepageLimits"] = json!(
            r.hugepage_limits
                .iter()
                .map(|h| json!({"pageSize": h.page_size, "limit": h.limit}))
                .collect::<Vec<_>>()
        );
    }
    if !r.unified.is_empty() {
        out["unified"] = json!(r.unified);
    }
    out
}

fn namespaces(input: &SpecInput<'_>) -> Result<Vec<Value>, SpecError> {
    let sb = input.sandbox;
    let opts = input
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_else(|| sb.namespace_options());
    let mut out = vec![json!({"type": "mount"})];
    match NamespaceMode::try_from(opts.pid) {
        Ok(NamespaceMode::Node) => {}
        Ok(NamespaceMode::Target) => match &input.target_pid_ns {
            Some(path) => out.push(json!({"type": "pid", "path": path})),
            None => {
                return Err(SpecError::Invalid(format!(
                    "the target container {:?} of PID namespace mode TARGET is not running in this pod",
                    opts.target_id
                )));
            }
        },
        // POD: the pod's shared namespace (its PID 1 is berth-shim pod-init).
        Ok(NamespaceMode::Pod) if sb.pin(NsKind::Pid).is_some() => {
            out.push(json!({"type": "pid", "path": sb.pin(NsKind::Pid)}));
        }
        // CONTAINER (or a pod without a shared one): the container's own.
        _ => out.push(json!({"type": "pid"})),
    }
    // A container of a user-namespaced pod must ask for the pod's (kubelet copies it).
    if let Some(u) = &opts.userns_options
        && crate::sandbox::userns::from_options(&opts)
            != crate::sandbox::userns::from_options(&sb.namespace_options())
    {
        return Err(SpecError::Invalid(format!(
            "user namespace config for sandbox is different from container. Sandbox userns config: {:?} - Container userns config: {u:?}",
            sb.namespace_options().userns_options
        )));
    }
    for (kind, name) in [
        (NsKind::User, "user"),
        (NsKind::Ipc, "ipc"),
        (NsKind::Uts, "uts"),
        (NsKind::Net, "network"),
    ] {
        if let Some(p) = sb.pin(kind) {
            out.push(json!({"type": name, "path": p}));
        }
    }
    if input.cgroup_ns {
        out.push(json!({"type": "cgroup"}));
    }
    Ok(out)
}

fn cgroups_path(input: &SpecInput<'_>) -> String {
    let parent = input
        .sandbox
        .config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/berth".to_string());
    format!("{}/{}", parent.trim_end_matches('/'), input.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::*;

    fn sandbox(pins: Vec<(String, PathBuf)>) -> SandboxRecord {
        SandboxRecord {
            id: "s".repeat(64),
            config: PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "pod".into(),
                    uid: "u".into(),
                    namespace: "ns".into(),
                    attempt: 0,
                }),
                hostname: "podhost".into(),
                linux: Some(LinuxPodSandboxConfig {
                    cgroup_parent: "/kubepods/pod-u".into(),
                    sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            runtime_handler: String::new(),
            created_at: 1,
            state: crate::sandbox::SandboxState::Ready,
            pins,
            ips: Vec::new(),
            etc_dir: None,
            pod_init_pid: 0,
            shm: None,
        }
    }

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nextra:x:2000:app\n").unwrap();
        d
    }

    fn build_with(
        config: &ContainerConfig,
        image: Value,
        sb: &SandboxRecord,
    ) -> Result<Spec, SpecError> {
        let r = rootfs();
        build(&SpecInput {
            id: "c1",
            config,
            image_config: &image,
            image_name: "docker.io/library/busybox:latest",
            sandbox: sb,
            rootfs: r.path(),
            cgroup_ns: false,
            target_pid_ns: None,
        })
    }

    fn spec_json(s: &Spec) -> Value {
        serde_json::to_value(s).unwrap()
    }

    /// Capability lists are sets in the spec; compare them as sets.
    fn set(v: &Value) -> std::collections::BTreeSet<String> {
        serde_json::from_value(v.clone()).unwrap()
    }

    fn names(v: &[&str]) -> std::collections::BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_merging_like_docker() {
        let sb = sandbox(vec![]);
        let image = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["c1", "c2"], "Env": ["PATH=/bin", "A=image"], "WorkingDir": "/w"}});
        let base = ContainerConfig::default();
        let s = spec_json(&build_with(&base, image.clone(), &sb).unwrap());
        assert_eq!(s["process"]["args"], json!(["/ep", "c1", "c2"]));
        assert_eq!(s["process"]["cwd"], "/w");
        let args_only = ContainerConfig {
            args: vec!["x".into()],
            ..Default::default()
        };
        let s = spec_json(&build_with(&args_only, image.clone(), &sb).unwrap());
        assert_eq!(s["process"]["args"], json!(["/ep", "x"]));
        let cmd = ContainerConfig {
            command: vec!["/bin/sh".into()],
            args: vec!["-c".into(), "true".into()],
            envs: vec![KeyValue {
                key: "A".into(),
                value: "req".into(),
            }],
            working_dir: "/tmp".into(),
            ..Default::default()
        };
        let s = spec_json(&build_with(&cmd, image.clone(), &sb).unwrap());
        assert_eq!(s["process"]["args"], json!(["/bin/sh", "-c", "true"]));
        assert_eq!(s["process"]["cwd"], "/tmp");
        let env: Vec<String> = serde_json::from_value(s["process"]["env"].clone()).unwrap();
        assert!(env.contains(&"A=req".to_string()) && !env.contains(&"A=image".to_string()));
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert!(env.iter().any(|e| e.starts_with("HOSTNAME=")));
        assert!(matches!(
            build_with(&base, json!({"config": {}}), &sb),
            Err(SpecError::Invalid(_))
        ));
        // No PATH in the image: the default one.
        let s = spec_json(&build_with(&cmd, json!({"config": {}}), &sb).unwrap());
        assert!(
            s["process"]["env"]
                .as_array()
                .unwrap()
                .contains(&json!(DEFAULT_PATH))
        );
    }

    #[test]
    fn defaults_equal_containerds() {
        let sb = sandbox(vec![("ipc".into(), "/run/berth/ns/s/ipc".into())]);
        let c = ContainerConfig {
            command: vec!["sh".into()],
            ..Default::default()
        };
        let s = spec_json(&build_with(&c, json!({}), &sb).unwrap());
        assert_eq!(
            set(&s["process"]["capabilities"]["effective"]),
            names(DEFAULT_CAPABILITIES)
        );
        assert_eq!(
            set(&s["process"]["capabilities"]["bounding"]),
            names(DEFAULT_CAPABILITIES)
        );
        assert!(s["process"]["capabilities"].get("inheritable").is_none());
        assert_eq!(s["linux"]["maskedPaths"], json!(DEFAULT_MASKED_PATHS));
        assert_eq!(s["linux"]["readonlyPaths"], json!(DEFAULT_READONLY_PATHS));
        assert_eq!(s["process"]["user"]["uid"], 0);
        assert_eq!(s["linux"]["cgroupsPath"], "/kubepods/pod-u/c1");
        assert_eq!(s["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
        let ns: Vec<Value> = serde_json::from_value(s["linux"]["namespaces"].clone()).unwrap();
        assert!(ns.contains(&json!({"type": "mount"})));
        assert!(ns.contains(&json!({"type": "pid"})));
        assert!(ns.contains(&json!({"type": "ipc", "path": "/run/berth/ns/s/ipc"})));
        // Host network and UTS: no entries, and no hostname without a private UTS namespace.
        assert!(
            !ns.iter()
                .any(|n| n["type"] == "network" || n["type"] == "uts")
        );
        assert!(s.get("hostname").is_none());
        assert_eq!(s["root"]["path"], "rootfs");
        assert_eq!(
            s["annotations"]["io.kubernetes.cri.sandbox-id"],
            "s".repeat(64)
        );
    }

    #[test]
    fn security_context() {
        let sb = sandbox(vec![("uts".into(), "/p/uts".into())]);
        let mut c = ContainerConfig {
            command: vec!["sh".into()],
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: vec!["sys_admin".into()],
                        drop_capabilities: vec!["CAP_KILL".into(), "NET_RAW".into()],
                        ..Default::default()
                    }),
                    run_as_username: "app".into(),
                    readonly_rootfs: true,
                    no_new_privs: true,
                    masked_paths: vec!["/proc/x".into()],
                    ..Default::default()
                }),
                resources: Some(LinuxContainerResources {
                    memory_limit_in_bytes: 64 << 20,
                    cpu_shares: 512,
                    cpu_quota: 50000,
                    cpu_period: 100000,
                    oom_score_adj: 500,
                    ..Default::default()
                }),
            }),
            tty: true,
            ..Default::default()
        };
        let s = spec_json(&build_with(&c, json!({}), &sb).unwrap());
        let eff: Vec<String> =
            serde_json::from_value(s["process"]["capabilities"]["effective"].clone()).unwrap();
        assert!(eff.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(
            !eff.contains(&"CAP_KILL".to_string()) && !eff.contains(&"CAP_NET_RAW".to_string())
        );
        assert_eq!(
            s["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 2000]})
        );
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(s["process"]["terminal"], true);
        assert_eq!(s["process"]["oomScoreAdj"], 500);
        assert_eq!(s["linux"]["maskedPaths"], json!(["/proc/x"]));
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(s["hostname"], "podhost");
        // Privileged: every capability, no masked or read-only paths, sysfs writable; only in
        // a privileged pod.
        let sec = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sec.privileged = true;
        sec.capabilities = None;
        sec.masked_paths.clear();
        let e = build_with(&c, json!({}), &sb).unwrap_err();
        assert!(e.to_string().contains("no privileged container"), "{e}");
        let mut sb = sb.clone();
        sb.config
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .get_or_insert_default()
            .privileged = true;
        let s = spec_json(&build_with(&c, json!({}), &sb).unwrap());
        assert_eq!(
            set(&s["process"]["capabilities"]["bounding"]),
            names(ALL_CAPABILITIES)
        );
        assert_eq!(s["linux"]["maskedPaths"], json!([]));
        let sys = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap()
            .clone();
        assert!(sys["options"].as_array().unwrap().contains(&json!("rw")));
        // Unknown capability and unknown user are the client's error.
        let sec = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sec.capabilities = Some(Capability {
            add_capabilities: vec!["CAP_FLY".into()],
            ..Default::default()
        });
        assert!(matches!(
            build_with(&c, json!({}), &sb),
            Err(SpecError::Invalid(_))
        ));
        let sec = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sec.capabilities = Some(Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
        sec.privileged = false;
        let s = spec_json(&build_with(&c, json!({}), &sb).unwrap());
        assert!(set(&s["process"]["capabilities"]["effective"]).is_empty());
        let sec = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sec.run_as_username = "ghost".into();
        assert!(matches!(
            build_with(&c, json!({}), &sb),
            Err(SpecError::User(_))
        ));
    }

    #[test]
    fn bind_mounts_and_devices() {
        let sb = sandbox(vec![]);
        let host = tempfile::tempdir().unwrap();
        let missing = host.path().join("made/by/berth");
        let c = ContainerConfig {
            command: vec!["sh".into()],
            mounts: vec![
                Mount {
                    container_path: "/data/sub".into(),
                    host_path: host.path().display().to_string(),
                    readonly: true,
                    ..Default::default()
                },
                Mount {
                    container_path: "/data".into(),
                    host_path: missing.display().to_string(),
                    ..Default::default()
                },
                Mount {
                    container_path: "/dev/shm".into(),
                    host_path: host.path().display().to_string(),
                    ..Default::default()
                },
            ],
            devices: vec![Device {
                container_path: "/dev/mynull".into(),
                host_path: "/dev/null".into(),
                permissions: "rw".into(),
            }],
            ..Default::default()
        };
        let s = spec_json(&build_with(&c, json!({}), &sb).unwrap());
        assert!(missing.is_dir(), "a missing bind source is created");
        let m = s["mounts"].as_array().unwrap();
        let pos = |d: &str| m.iter().position(|x| x["destination"] == d).unwrap();
        assert!(pos("/data") < pos("/data/sub"));
        assert_eq!(
            m[pos("/data/sub")]["options"],
            json!(["rbind", "rprivate", "ro"])
        );
        assert_eq!(
            m[pos("/data")]["options"],
            json!(["rbind", "rprivate", "rw"])
        );
        assert!(s["linux"].get("rootfsPropagation").is_none());
        // Propagating binds: rslave / rshared, and the root's propagation to match, when the
        // source's mount on this host allows it; a precise refusal otherwise (the e2e suite
        // makes shared and private mounts of its own to see both).
        let mounts = berth_sys::mountinfo::read_self().unwrap();
        let holder =
            berth_sys::mountinfo::mount_holding(&mounts, &host.path().canonicalize().unwrap())
                .unwrap();
        let (shared, slave) = (holder.is_shared(), holder.is_slave());
        for (mode, option, root, allowed) in [
            (
                MountPropagation::PropagationHostToContainer,
                "rslave",
                "rslave",
                shared || slave,
            ),
            (
                MountPropagation::PropagationBidirectional,
                "rshared",
                "rshared",
                shared,
            ),
        ] {
            let mut c = c.clone();
            c.mounts[0].propagation = mode as i32;
            match build_with(&c, json!({}), &sb) {
                Ok(spec) => {
                    assert!(allowed, "{mode:?} on a mount that cannot propagate");
                    let s = spec_json(&spec);
                    let m = s["mounts"].as_array().unwrap();
                    let sub = m.iter().find(|x| x["destination"] == "/data/sub").unwrap();
                    assert_eq!(sub["options"], json!(["rbind", option, "ro"]));
                    assert_eq!(s["linux"]["rootfsPropagation"], root);
                }
                Err(e) => {
                    assert!(!allowed, "{mode:?}: {e}");
                    assert!(e.to_string().contains("but it is not a"), "{e}");
                }
            }
        }
        assert_eq!(
            m.iter().filter(|x| x["destination"] == "/dev/shm").count(),
            1
        );
        assert_eq!(m[pos("/dev/shm")]["type"], "bind");
        let d = &s["linux"]["devices"][0];
        assert_eq!(
            (
                d["path"].as_str(),
                d["type"].as_str(),
                d["major"].as_i64(),
                d["minor"].as_i64()
            ),
            (Some("/dev/mynull"), Some("c"), Some(1), Some(3))
        );
        let rules = s["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules[0], json!({"allow": false, "access": "rwm"}));
        assert!(rules.contains(
            &json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"})
        ));
        let bad = ContainerConfig {
            command: vec!["sh".into()],
            devices: vec![Device {
                container_path: "/dev/x".into(),
                host_path: "/etc/hostname".into(),
                permissions: String::new(),
            }],
            ..Default::default()
        };
        assert!(matches!(
            build_with(&bad, json!({}), &sb),
            Err(SpecError::Invalid(_))
        ));
        let relative = ContainerConfig {
            command: vec!["sh".into()],
            mounts: vec![Mount {
                container_path: "data".into(),
                host_path: "/tmp".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(matches!(
            build_with(&relative, json!({}), &sb),
            Err(SpecError::Invalid(_))
        ));
    }
}
