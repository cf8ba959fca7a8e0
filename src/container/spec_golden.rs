//! TEMPORARY (issue 11 item 4, not to be committed): the specs `spec::build` makes for a broad
//! set of requests, written to /tmp/spec-golden (SPEC_GOLDEN=write) or compared with them
//! (SPEC_GOLDEN=compare).
#![allow(clippy::type_complexity)]

use std::path::PathBuf;

use k8s_cri::v1::*;
use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use super::spec::{SpecInput, build};
use crate::sandbox::{SandboxRecord, SandboxState};

const DIR: &str = "/tmp/spec-golden";
const SRC: &str = "/tmp/spec-golden-src";

struct Case {
    name: String,
    config: ContainerConfig,
    image: Value,
    sandbox: SandboxRecord,
    cgroup_ns: bool,
    target: Option<PathBuf>,
}

fn sandbox() -> SandboxRecord {
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
        state: SandboxState::Ready,
        pins: vec![
            ("ipc".into(), "/run/berth/ns/s/ipc".into()),
            ("uts".into(), "/run/berth/ns/s/uts".into()),
            ("net".into(), "/run/berth/ns/s/net".into()),
        ],
        ips: Vec::new(),
        etc_dir: Some("/run/berth/pods/s/etc".into()),
        pod_init_pid: 0,
        shm: Some("/run/berth/pods/s/shm".into()),
    }
}

fn sec(c: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    c.linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
}

fn res(c: &mut ContainerConfig) -> &mut LinuxContainerResources {
    c.linux
        .get_or_insert_default()
        .resources
        .get_or_insert_default()
}

fn privileged_pod(sb: &mut SandboxRecord) {
    sb.config
        .linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
        .privileged = true;
}

fn pod_ns(sb: &mut SandboxRecord) -> &mut NamespaceOption {
    sb.config
        .linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
        .namespace_options
        .get_or_insert_default()
}

fn bind(dst: &str, src: &str) -> Mount {
    Mount {
        container_path: dst.into(),
        host_path: src.into(),
        ..Default::default()
    }
}

fn cases() -> Vec<Case> {
    let base = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        command: vec!["sh".into()],
        annotations: [("a.b/c".to_string(), "v".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let image = json!({"config": {"Env": ["PATH=/bin", "A=image"], "WorkingDir": "/w"}});
    let mut out: Vec<Case> = Vec::new();
    let mut add = |name: &str,
                   f: &dyn Fn(
        &mut ContainerConfig,
        &mut Value,
        &mut SandboxRecord,
    ) -> (bool, Option<PathBuf>)| {
        let mut c = base.clone();
        let mut i = image.clone();
        let mut sb = sandbox();
        let (cgroup_ns, target) = f(&mut c, &mut i, &mut sb);
        out.push(Case {
            name: name.into(),
            config: c,
            image: i,
            sandbox: sb,
            cgroup_ns,
            target,
        });
    };
    add("defaults", &|_, _, _| (false, None));
    add("defaults_no_etc_no_hostname", &|_, _, sb| {
        sb.etc_dir = None;
        sb.config.hostname.clear();
        (false, None)
    });
    add("image_merge_entrypoint_cmd", &|c, i, _| {
        c.command.clear();
        *i = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["c1", "c2"], "Env": ["A=1", "B=2"], "WorkingDir": "/srv", "User": "app"}});
        (false, None)
    });
    add("image_merge_args_only", &|c, i, _| {
        c.command.clear();
        c.args = vec!["x".into(), "y".into()];
        c.envs = vec![
            KeyValue {
                key: "A".into(),
                value: "req".into(),
            },
            KeyValue {
                key: "HOME".into(),
                value: "/h".into(),
            },
        ];
        c.working_dir = "/tmp".into();
        *i = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["c1"], "Env": ["A=1", "PATH=/x"]}});
        (false, None)
    });
    add("no_command", &|c, i, _| {
        c.command.clear();
        *i = json!({"config": {}});
        (false, None)
    });
    add("empty_env_key", &|c, _, _| {
        c.envs = vec![KeyValue {
            key: "".into(),
            value: "x".into(),
        }];
        (false, None)
    });
    add("relative_workdir", &|c, _, _| {
        c.working_dir = "rel".into();
        (false, None)
    });
    add("privileged", &|c, _, sb| {
        privileged_pod(sb);
        sec(c).privileged = true;
        (false, None)
    });
    add("privileged_with_seccomp_and_caps", &|c, _, sb| {
        privileged_pod(sb);
        let s = sec(c);
        s.privileged = true;
        s.seccomp = Some(SecurityProfile {
            profile_type: 0,
            localhost_ref: String::new(),
        });
        s.capabilities = Some(Capability {
            drop_capabilities: vec!["SYS_ADMIN".into()],
            ..Default::default()
        });
        (false, None)
    });
    add("privileged_not_in_pod", &|c, _, _| {
        sec(c).privileged = true;
        (false, None)
    });
    add("host_network_pid_ipc", &|_, _, sb| {
        sb.pins.clear();
        sb.shm = None;
        let ns = pod_ns(sb);
        ns.network = NamespaceMode::Node as i32;
        ns.pid = NamespaceMode::Node as i32;
        ns.ipc = NamespaceMode::Node as i32;
        (false, None)
    });
    add("pod_pid_namespace", &|_, _, sb| {
        sb.pins.push(("pid".into(), "/run/berth/ns/s/pid".into()));
        pod_ns(sb).pid = NamespaceMode::Pod as i32;
        (true, None)
    });
    add("container_pid_namespace", &|c, _, sb| {
        sb.pins.push(("pid".into(), "/run/berth/ns/s/pid".into()));
        sec(c).namespace_options = Some(NamespaceOption {
            pid: NamespaceMode::Container as i32,
            ..Default::default()
        });
        (false, None)
    });
    add("target_pid_namespace", &|c, _, _| {
        sec(c).namespace_options = Some(NamespaceOption {
            pid: NamespaceMode::Target as i32,
            target_id: "t".into(),
            ..Default::default()
        });
        (false, Some("/proc/42/ns/pid".into()))
    });
    add("target_pid_namespace_missing", &|c, _, _| {
        sec(c).namespace_options = Some(NamespaceOption {
            pid: NamespaceMode::Target as i32,
            target_id: "t".into(),
            ..Default::default()
        });
        (false, None)
    });
    add("legacy_pod_without_shm", &|_, _, sb| {
        sb.shm = None;
        (false, None)
    });
    let userns = |sb: &mut SandboxRecord| {
        sb.pins.push(("user".into(), "/run/berth/ns/s/user".into()));
        pod_ns(sb).userns_options = Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: vec![IdMapping {
                host_id: 65536,
                container_id: 0,
                length: 65536,
            }],
            gids: vec![IdMapping {
                host_id: 131072,
                container_id: 0,
                length: 65536,
            }],
        });
    };
    add("userns_pod", &|c, _, sb| {
        userns(sb);
        c.mounts = vec![Mount {
            uid_mappings: vec![IdMapping {
                host_id: 65536,
                container_id: 0,
                length: 65536,
            }],
            gid_mappings: vec![IdMapping {
                host_id: 131072,
                container_id: 0,
                length: 65536,
            }],
            ..bind("/vol", &format!("{SRC}/vol"))
        }];
        let ns = pod_ns(sb).clone();
        sec(c).namespace_options = Some(ns);
        (true, None)
    });
    add("userns_pod_mismatch", &|c, _, sb| {
        userns(sb);
        let mut ns = pod_ns(sb).clone();
        ns.userns_options.as_mut().unwrap().uids[0].host_id = 1;
        sec(c).namespace_options = Some(ns);
        (false, None)
    });
    add("userns_pod_readonly_rootfs", &|c, _, sb| {
        userns(sb);
        sec(c).readonly_rootfs = true;
        (false, None)
    });
    add("devices", &|c, _, _| {
        c.devices = vec![
            Device {
                container_path: "/dev/mynull".into(),
                host_path: "/dev/null".into(),
                permissions: "rw".into(),
            },
            Device {
                container_path: "".into(),
                host_path: "/dev/zero".into(),
                permissions: "".into(),
            },
            Device {
                container_path: "/dev/loop".into(),
                host_path: "/dev/loop0".into(),
                permissions: "r".into(),
            },
        ];
        (false, None)
    });
    add("device_bad_permissions", &|c, _, _| {
        c.devices = vec![Device {
            container_path: "/dev/x".into(),
            host_path: "/dev/null".into(),
            permissions: "rwx".into(),
        }];
        (false, None)
    });
    add("device_not_a_device", &|c, _, _| {
        c.devices = vec![Device {
            container_path: "/dev/x".into(),
            host_path: "/etc/hostname".into(),
            permissions: "".into(),
        }];
        (false, None)
    });
    add("mounts", &|c, _, _| {
        c.mounts = vec![
            Mount {
                readonly: true,
                ..bind("/data/sub", &format!("{SRC}/ro"))
            },
            bind("/data", &format!("{SRC}/made/by/berth")),
            bind("/dev/shm", &format!("{SRC}/shm")),
            bind("/etc/hosts", &format!("{SRC}/hosts")),
            Mount {
                readonly: true,
                recursive_read_only: true,
                propagation: MountPropagation::PropagationPrivate as i32,
                ..bind("/rro", &format!("{SRC}/rro"))
            },
            Mount {
                selinux_relabel: true,
                ..bind("/a/b/c", &format!("{SRC}/deep"))
            },
        ];
        (false, None)
    });
    add("mounts_readonly_rootfs", &|c, _, _| {
        sec(c).readonly_rootfs = true;
        c.mounts = vec![bind("/data", &format!("{SRC}/rw"))];
        (false, None)
    });
    add("mount_rro_not_readonly", &|c, _, _| {
        c.mounts = vec![Mount {
            recursive_read_only: true,
            ..bind("/rro", &format!("{SRC}/rro"))
        }];
        (false, None)
    });
    add("mount_rro_not_private", &|c, _, _| {
        c.mounts = vec![Mount {
            readonly: true,
            recursive_read_only: true,
            propagation: MountPropagation::PropagationHostToContainer as i32,
            ..bind("/rro", &format!("{SRC}/rro"))
        }];
        (false, None)
    });
    add("mount_relative_dst", &|c, _, _| {
        c.mounts = vec![bind("data", "/tmp")];
        (false, None)
    });
    add("mount_relative_src", &|c, _, _| {
        c.mounts = vec![bind("/data", "tmp")];
        (false, None)
    });
    add("mount_image_volume", &|c, _, _| {
        c.mounts = vec![Mount {
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..bind("/data", "/tmp")
        }];
        (false, None)
    });
    add("mount_propagation_slave_on_shared", &|c, _, _| {
        c.mounts = vec![Mount {
            propagation: MountPropagation::PropagationHostToContainer as i32,
            ..bind("/p", &format!("{SRC}/shared/x"))
        }];
        (false, None)
    });
    add("mount_propagation_shared_on_shared", &|c, _, _| {
        c.mounts = vec![
            Mount {
                propagation: MountPropagation::PropagationHostToContainer as i32,
                ..bind("/p", &format!("{SRC}/shared/x"))
            },
            Mount {
                propagation: MountPropagation::PropagationBidirectional as i32,
                ..bind("/q", &format!("{SRC}/shared/y"))
            },
        ];
        (false, None)
    });
    add("mount_propagation_slave_on_slave", &|c, _, _| {
        c.mounts = vec![Mount {
            propagation: MountPropagation::PropagationHostToContainer as i32,
            ..bind("/p", &format!("{SRC}/slave/x"))
        }];
        (false, None)
    });
    add("mount_propagation_shared_on_slave", &|c, _, _| {
        c.mounts = vec![Mount {
            propagation: MountPropagation::PropagationBidirectional as i32,
            ..bind("/p", &format!("{SRC}/slave/x"))
        }];
        (false, None)
    });
    add("mount_propagation_on_private", &|c, _, _| {
        c.mounts = vec![Mount {
            propagation: MountPropagation::PropagationHostToContainer as i32,
            ..bind("/p", &format!("{SRC}/private"))
        }];
        (false, None)
    });
    let seccomp = |c: &mut ContainerConfig, t: security_profile::ProfileType, r: &str| {
        sec(c).seccomp = Some(SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        });
    };
    add("seccomp_runtime_default", &|c, _, _| {
        seccomp(c, security_profile::ProfileType::RuntimeDefault, "");
        (false, None)
    });
    add("seccomp_runtime_default_sys_admin", &|c, _, _| {
        seccomp(c, security_profile::ProfileType::RuntimeDefault, "");
        sec(c).capabilities = Some(Capability {
            add_capabilities: vec!["SYS_ADMIN".into(), "CAP_SYS_PTRACE".into()],
            drop_capabilities: vec!["SYS_CHROOT".into()],
            ..Default::default()
        });
        (false, None)
    });
    add("seccomp_unconfined", &|c, _, _| {
        seccomp(c, security_profile::ProfileType::Unconfined, "");
        (false, None)
    });
    add("seccomp_localhost_oci", &|c, _, _| {
        seccomp(
            c,
            security_profile::ProfileType::Localhost,
            &format!("{SRC}/seccomp-oci.json"),
        );
        (false, None)
    });
    add("seccomp_localhost_docker", &|c, _, _| {
        seccomp(
            c,
            security_profile::ProfileType::Localhost,
            &format!("{SRC}/seccomp-docker.json"),
        );
        (false, None)
    });
    add("seccomp_localhost_missing", &|c, _, _| {
        seccomp(
            c,
            security_profile::ProfileType::Localhost,
            &format!("{SRC}/none.json"),
        );
        (false, None)
    });
    add("seccomp_legacy_runtime_default", &|c, _, _| {
        #[allow(deprecated)]
        {
            sec(c).seccomp_profile_path = "runtime/default".into();
        }
        (false, None)
    });
    add("seccomp_legacy_localhost", &|c, _, _| {
        #[allow(deprecated)]
        {
            sec(c).seccomp_profile_path = format!("localhost/{SRC}/seccomp-oci.json");
        }
        (false, None)
    });
    add("seccomp_legacy_bad", &|c, _, _| {
        #[allow(deprecated)]
        {
            sec(c).seccomp_profile_path = "strict".into();
        }
        (false, None)
    });
    add("apparmor_runtime_default", &|c, _, _| {
        sec(c).apparmor = Some(SecurityProfile {
            profile_type: 0,
            localhost_ref: String::new(),
        });
        (false, None)
    });
    add("apparmor_unconfined_legacy", &|c, _, _| {
        #[allow(deprecated)]
        {
            sec(c).apparmor_profile = "unconfined".into();
        }
        (false, None)
    });
    add("apparmor_localhost", &|c, _, _| {
        sec(c).apparmor = Some(SecurityProfile {
            profile_type: security_profile::ProfileType::Localhost as i32,
            localhost_ref: "deny-write".into(),
        });
        (false, None)
    });
    add("apparmor_bad", &|c, _, _| {
        #[allow(deprecated)]
        {
            sec(c).apparmor_profile = "bogus".into();
        }
        (false, None)
    });
    add("sysctls", &|_, _, sb| {
        sb.config.linux.as_mut().unwrap().sysctls = [
            ("kernel.shm_rmid_forced", "1"),
            ("net.core.somaxconn", "1024"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        (false, None)
    });
    add("no_sysctls_no_cgroup_parent", &|_, _, sb| {
        let l = sb.config.linux.as_mut().unwrap();
        l.sysctls.clear();
        l.cgroup_parent.clear();
        (false, None)
    });
    add("resources", &|c, _, _| {
        *res(c) = LinuxContainerResources {
            cpu_period: 100000,
            cpu_quota: 50000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            oom_score_adj: -998,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![
                HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 4 << 20,
                },
                HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 0,
                },
            ],
            unified: [
                ("memory.high".to_string(), "50000000".to_string()),
                ("pids.max".to_string(), "42".to_string()),
            ]
            .into_iter()
            .collect(),
            memory_swap_limit_in_bytes: 0,
        };
        (false, None)
    });
    add("resources_swap_and_negative_quota", &|c, _, _| {
        *res(c) = LinuxContainerResources {
            cpu_quota: -1,
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 128 << 20,
            ..Default::default()
        };
        (false, None)
    });
    add("resources_swap_only", &|c, _, _| {
        *res(c) = LinuxContainerResources {
            memory_swap_limit_in_bytes: 128 << 20,
            ..Default::default()
        };
        (false, None)
    });
    add("resources_oom_out_of_range", &|c, _, _| {
        res(c).oom_score_adj = 1 << 40;
        (false, None)
    });
    add("resources_hugepage_out_of_range", &|c, _, _| {
        res(c).hugepage_limits = vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: u64::MAX,
        }];
        (false, None)
    });
    add("run_as_user", &|c, _, _| {
        sec(c).run_as_user = Some(Int64Value { value: 1000 });
        (false, None)
    });
    add("run_as_unknown_uid", &|c, _, _| {
        sec(c).run_as_user = Some(Int64Value { value: 4242 });
        sec(c).run_as_group = Some(Int64Value { value: 77 });
        (false, None)
    });
    add("run_as_username_group_supplemental", &|c, _, _| {
        let s = sec(c);
        s.run_as_username = "app".into();
        s.run_as_group = Some(Int64Value { value: 2000 });
        s.supplemental_groups = vec![3000, 4000];
        (false, None)
    });
    add("supplemental_groups_strict", &|c, _, _| {
        let s = sec(c);
        s.run_as_username = "app".into();
        s.supplemental_groups = vec![3000];
        s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
        (false, None)
    });
    add("image_user_name_group", &|_, i, _| {
        i["config"]["User"] = json!("app:extra");
        (false, None)
    });
    add("unknown_user", &|c, _, _| {
        sec(c).run_as_username = "ghost".into();
        (false, None)
    });
    add("tty_stdin", &|c, _, _| {
        c.tty = true;
        c.stdin = true;
        c.stdin_once = true;
        (false, None)
    });
    add("tty_with_term", &|c, _, _| {
        c.tty = true;
        c.envs = vec![KeyValue {
            key: "TERM".into(),
            value: "vt100".into(),
        }];
        (false, None)
    });
    add("masked_readonly_paths", &|c, _, _| {
        let s = sec(c);
        s.masked_paths = vec!["/proc/x".into(), "/proc/y".into()];
        s.readonly_paths = vec!["/proc/z".into()];
        (false, None)
    });
    add("capabilities_add_drop", &|c, _, _| {
        sec(c).capabilities = Some(Capability {
            add_capabilities: vec!["sys_admin".into(), "NET_ADMIN".into()],
            drop_capabilities: vec!["CAP_KILL".into(), "NET_RAW".into()],
            ..Default::default()
        });
        (false, None)
    });
    add("capabilities_all_drop_all", &|c, _, _| {
        sec(c).capabilities = Some(Capability {
            add_capabilities: vec!["ALL".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
        (false, None)
    });
    add("capabilities_add_all", &|c, _, _| {
        sec(c).capabilities = Some(Capability {
            add_capabilities: vec!["ALL".into()],
            drop_capabilities: vec!["MKNOD".into()],
            ..Default::default()
        });
        (false, None)
    });
    add("capabilities_ambient", &|c, _, _| {
        sec(c).capabilities = Some(Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            add_ambient_capabilities: vec!["net_admin".into(), "CAP_NET_BIND_SERVICE".into()],
            ..Default::default()
        });
        (false, None)
    });
    add("capabilities_ambient_not_in_set", &|c, _, _| {
        sec(c).capabilities = Some(Capability {
            add_ambient_capabilities: vec!["SYS_ADMIN".into()],
            ..Default::default()
        });
        (false, None)
    });
    add("capabilities_unknown", &|c, _, _| {
        sec(c).capabilities = Some(Capability {
            add_capabilities: vec!["CAP_FLY".into()],
            ..Default::default()
        });
        (false, None)
    });
    add("no_new_privs_readonly_rootfs", &|c, _, _| {
        sec(c).no_new_privs = true;
        sec(c).readonly_rootfs = true;
        (false, None)
    });
    add("everything", &|c, i, sb| {
        privileged_pod(sb);
        sb.pins.push(("pid".into(), "/run/berth/ns/s/pid".into()));
        *i = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["c1"], "Env": ["A=1"], "User": "1000:2000"}});
        c.tty = true;
        c.devices = vec![Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }];
        c.mounts = vec![Mount {
            readonly: true,
            ..bind("/data", &format!("{SRC}/ro"))
        }];
        let s = sec(c);
        s.no_new_privs = true;
        s.capabilities = Some(Capability {
            add_capabilities: vec!["SYS_ADMIN".into()],
            add_ambient_capabilities: vec!["SYS_ADMIN".into()],
            ..Default::default()
        });
        s.seccomp = Some(SecurityProfile {
            profile_type: 0,
            localhost_ref: String::new(),
        });
        *res(c) = LinuxContainerResources {
            cpu_shares: 2,
            memory_limit_in_bytes: 1 << 30,
            oom_score_adj: 1000,
            ..Default::default()
        };
        (true, None)
    });
    out
}

fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("etc")).unwrap();
    std::fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("etc/group"),
        "root:x:0:\nextra:x:2000:app\nother:x:3000:app,root\n",
    )
    .unwrap();
    d
}

/// The JSON berthd sends the shim for UpdateContainerResources (as resources.rs builds it).
fn update_json(r: &LinuxContainerResources) -> Value {
    match super::spec::linux_resources(r) {
        Ok(u) => serde_json::to_value(u).unwrap(),
        Err(e) => json!({"error": e.to_string()}),
    }
}

fn outcome(case: &Case) -> Result<Spec, String> {
    let r = rootfs();
    build(&SpecInput {
        id: "c1",
        config: &case.config,
        image_config: &case.image,
        image_name: "docker.io/library/busybox:latest",
        sandbox: &case.sandbox,
        rootfs: r.path(),
        cgroup_ns: case.cgroup_ns,
        target_pid_ns: case.target.clone(),
    })
    .map_err(|e| e.to_string())
}

/// Paths where two JSON values differ (arrays of strings compared as sets under "capabilities").
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                diff(
                    &format!("{path}/{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if path.contains("/capabilities/") => {
            let mut x: Vec<String> = x.iter().map(|v| v.to_string()).collect();
            let mut y: Vec<String> = y.iter().map(|v| v.to_string()).collect();
            x.sort();
            y.sort();
            if x != y {
                out.push(format!("{path}: {x:?} != {y:?}"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}/{i}"), a, b, out);
            }
        }
        _ if a != b => out.push(format!("{path}: old {a} != new {b}")),
        _ => {}
    }
}

#[test]
fn golden() {
    let Ok(mode) = std::env::var("SPEC_GOLDEN") else {
        return;
    };
    std::fs::create_dir_all(DIR).unwrap();
    let mut report = Vec::new();
    let mut failures = 0;
    for case in cases() {
        let got = outcome(&case);
        let mut entries = vec![(
            case.name.clone(),
            match &got {
                Ok(s) => serde_json::to_value(s).unwrap(),
                Err(e) => json!({"error": e}),
            },
            got.as_ref().ok().cloned(),
        )];
        if let Some(r) = case
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
        {
            entries.push((format!("update_{}", case.name), update_json(r), None));
        }
        for (name, value, spec) in entries {
            let file = format!("{DIR}/{name}.json");
            if mode == "write" {
                std::fs::write(&file, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
                report.push(format!("wrote {name}"));
                continue;
            }
            let old: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            let mut notes = Vec::new();
            diff("", &old, &value, &mut notes);
            let typed = match (&spec, old.get("error")) {
                (Some(new), None) => {
                    let old_spec: Spec = serde_json::from_value(old.clone()).unwrap();
                    let reparsed: Spec = serde_json::from_value(value.clone()).unwrap();
                    if &old_spec == new && reparsed == old_spec {
                        "typed Spec equal"
                    } else {
                        failures += 1;
                        "TYPED SPEC DIFFERS"
                    }
                }
                (None, _) if name.starts_with("update_") => {
                    let o =
                        serde_json::from_value::<oci_spec::runtime::LinuxResources>(old.clone());
                    let n =
                        serde_json::from_value::<oci_spec::runtime::LinuxResources>(value.clone());
                    match (o, n) {
                        (Ok(o), Ok(n)) if o == n => "typed LinuxResources equal",
                        (Err(_), Err(_)) if value.get("error").is_some() => {
                            "old JSON not a LinuxResources (the shim refused it); new: an error"
                        }
                        _ => {
                            failures += 1;
                            "TYPED RESOURCES DIFFER"
                        }
                    }
                }
                _ => {
                    if notes.is_empty() {
                        "same error"
                    } else {
                        failures += 1;
                        "ERROR DIFFERS"
                    }
                }
            };
            report.push(format!("{name}: {typed}; raw JSON diffs: {notes:?}"));
        }
    }
    std::fs::write("/tmp/spec-work/golden-report.txt", report.join("\n")).unwrap();
    assert_eq!(failures, 0, "{}", report.join("\n"));
}
