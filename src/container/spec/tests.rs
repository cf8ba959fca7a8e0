//! `spec::build` end to end: the request, image config and pod against the config.json they
//! make (the steps' own rules are tested beside them).

use std::path::PathBuf;

use k8s_cri::v1::*;
use serde_json::{Value, json};

use super::capabilities::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES};
use super::linux::{DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
use super::process::DEFAULT_PATH;
use super::*;
use crate::sandbox::SandboxRecord;

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
        systemd_cgroup: false,
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
    assert!(!eff.contains(&"CAP_KILL".to_string()) && !eff.contains(&"CAP_NET_RAW".to_string()));
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
    // Every device: one rule allowing all.
    assert_eq!(
        s["linux"]["resources"]["devices"],
        json!([{"allow": true, "access": "rwm"}])
    );
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
        berth_sys::mountinfo::mount_holding(&mounts, &host.path().canonicalize().unwrap()).unwrap();
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
    assert!(
        rules
            .contains(&json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}))
    );
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
