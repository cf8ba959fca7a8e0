//! The container's seccomp profile (OCI `linux.seccomp`), chosen from the CRI security context
//! the way containerd chooses it:
//!
//! - `seccomp` set: `RuntimeDefault` is berth's default profile, `Unconfined` none, `Localhost`
//!   the JSON profile at the absolute path `localhost_ref`;
//! - `seccomp` unset: the deprecated `seccomp_profile_path` (`runtime/default` and
//!   `docker/default`, `unconfined`, `localhost/<path>`); both unset is unconfined
//!   (containerd's `unset_seccomp_profile = ""`: kubelet sends `RuntimeDefault` explicitly
//!   when a pod asks for it or `--seccomp-default` is on);
//! - privileged containers get none.
//!
//! Profiles are in Docker's format, a superset of the OCI one: `archMap` picks the
//! architectures of this machine, `includes`/`excludes` (`caps`, `arches`, `minKernel`) keep or
//! drop a rule by the container's final capability set, this machine's architecture (Go's
//! names: `amd64`, `arm64`...) and the running kernel. The default profile is such a file,
//! `seccomp_default.json`: containerd's default (deny with EPERM; the allow-list; the calls
//! CAP_SYS_ADMIN, CAP_SYS_PTRACE... unlock; clone without namespace flags and clone3 → ENOSYS
//! for the others).

use std::path::Path;

use k8s_cri::v1::LinuxContainerSecurityContext;
use k8s_cri::v1::security_profile::ProfileType;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscallBuilder,
};
use serde::Deserialize;
use serde::de::IntoDeserializer;

use super::capabilities;
use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;

/// The RuntimeDefault profile, in Docker's format. (It stays beside `container/`: the shim's
/// tests read the same file.)
const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// A seccomp profile file: OCI's `linux.seccomp`, or Docker's format.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: String,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<ArchMap>>,
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    syscalls: Option<Vec<SyscallRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallRule {
    name: Option<String>,
    names: Option<Vec<String>>,
    action: String,
    errno_ret: Option<u32>,
    args: Option<Vec<Arg>>,
    includes: Option<Condition>,
    excludes: Option<Condition>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    arches: Option<Vec<String>>,
    caps: Option<Vec<String>>,
    min_kernel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    value_two: Option<u64>,
    op: String,
}

/// What the filter is evaluated against.
struct Target<'a> {
    /// The container's capabilities (`CAP_*`).
    caps: &'a [String],
    /// This machine's seccomp architecture (`SCMP_ARCH_X86_64`) and Go name (`amd64`).
    arch: &'static str,
    goarch: &'static str,
    /// The running kernel's (major, minor), read when a profile asks.
    kernel: fn() -> Result<(u32, u32), String>,
}

/// `linux.seccomp`, for the container's final capability set.
pub fn with_seccomp(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let caps = capabilities::resolve(&req.sec)?;
    if let Some(profile) = profile(&req.sec, &caps)? {
        draft.linux.set_seccomp(Some(profile));
    }
    Ok(())
}

/// The OCI `linux.seccomp` for a container with the final capability set `caps`, or `None`
/// for no filter.
pub fn profile(
    sec: &LinuxContainerSecurityContext,
    caps: &[String],
) -> Result<Option<LinuxSeccomp>, SpecError> {
    if sec.privileged {
        return Ok(None);
    }
    let (arch, goarch) = native_arch();
    let target = Target {
        caps,
        arch,
        goarch,
        kernel: running_kernel,
    };
    // Deprecated in CRI, still sent by old clients (and honoured by containerd).
    #[allow(deprecated)]
    let path_field = sec.seccomp_profile_path.as_str();
    let (kind, localhost_ref) = match &sec.seccomp {
        Some(p) => {
            let kind = ProfileType::try_from(p.profile_type).map_err(|_| {
                SpecError::Invalid(format!("unknown seccomp profile type {}", p.profile_type))
            })?;
            if kind != ProfileType::Localhost && !p.localhost_ref.is_empty() {
                return Err(SpecError::Invalid(
                    "seccomp localhost_ref must only be set when the profile type is Localhost"
                        .into(),
                ));
            }
            (kind, p.localhost_ref.clone())
        }
        None => match path_field {
            "" => return Ok(None),
            "runtime/default" | "docker/default" => (ProfileType::RuntimeDefault, String::new()),
            "unconfined" => (ProfileType::Unconfined, String::new()),
            other => match other.strip_prefix("localhost/") {
                Some(path) => (ProfileType::Localhost, path.to_string()),
                None => {
                    return Err(SpecError::Invalid(format!(
                        "invalid seccomp profile {other:?}: expected runtime/default, \
                         unconfined or localhost/<path>"
                    )));
                }
            },
        },
    };
    match kind {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => convert(DEFAULT_PROFILE, &target)
            .map(Some)
            .map_err(|e| SpecError::Invalid(format!("the default seccomp profile: {e}"))),
        ProfileType::Localhost => {
            // kubelet sends the absolute path; tolerate the old prefix as containerd does.
            let path = localhost_ref
                .strip_prefix("localhost/")
                .unwrap_or(&localhost_ref);
            let bad = |e: String| SpecError::Invalid(format!("seccomp profile {path}: {e}"));
            if !Path::new(path).is_absolute() {
                return Err(bad("not an absolute path".into()));
            }
            let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            convert(&text, &target).map(Some).map_err(bad)
        }
    }
}

/// This machine's seccomp architecture and Go's name for it.
fn native_arch() -> (&'static str, &'static str) {
    if cfg!(target_arch = "x86_64") {
        ("SCMP_ARCH_X86_64", "amd64")
    } else if cfg!(target_arch = "aarch64") {
        ("SCMP_ARCH_AARCH64", "arm64")
    } else if cfg!(target_arch = "riscv64") {
        ("SCMP_ARCH_RISCV64", "riscv64")
    } else if cfg!(target_arch = "s390x") {
        ("SCMP_ARCH_S390X", "s390x")
    } else if cfg!(target_arch = "powerpc64") {
        ("SCMP_ARCH_PPC64LE", "ppc64le")
    } else if cfg!(target_arch = "loongarch64") {
        ("SCMP_ARCH_LOONGARCH64", "loong64")
    } else {
        ("SCMP_ARCH_NATIVE", "")
    }
}

fn running_kernel() -> Result<(u32, u32), String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_err(|e| format!("reading the kernel version: {e}"))?;
    parse_version(release.trim())
}

/// "6.18.44-fc" → (6, 18).
fn parse_version(v: &str) -> Result<(u32, u32), String> {
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let mut num = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (num(), num()) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(format!("bad kernel version {v:?}")),
    }
}

/// One of oci-spec's names (`SCMP_ACT_ERRNO`, `SCMP_CMP_EQ`, ...).
fn known<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String> {
    s.parse::<T>().map_err(|_| format!("unknown {what} {s:?}"))
}

/// An architecture by its OCI name, parsed as config.json is (oci-spec's serde names).
fn arch(name: &str) -> Result<Arch, String> {
    Arch::deserialize(name.into_deserializer())
        .map_err(|_: serde::de::value::Error| format!("unknown architecture {name:?}"))
}

/// Parse a profile file and resolve it for `target` into OCI `linux.seccomp`.
fn convert(text: &str, target: &Target<'_>) -> Result<LinuxSeccomp, String> {
    let p: ProfileFile =
        serde_json::from_str(text).map_err(|e| format!("not a seccomp profile: {e}"))?;
    let default_action = known::<LinuxSeccompAction>("defaultAction", &p.default_action)?;
    if default_action == LinuxSeccompAction::ScmpActNotify || p.listener_path.is_some() {
        return Err("seccomp user notification (SCMP_ACT_NOTIFY) is not supported".into());
    }
    let mut out = LinuxSeccompBuilder::default().default_action(default_action);
    if let Some(e) = p.default_errno_ret {
        out = out.default_errno_ret(e);
    }

    let listed = p.architectures.unwrap_or_default();
    let map = p.arch_map.unwrap_or_default();
    if !listed.is_empty() && !map.is_empty() {
        return Err("both architectures and archMap are set; use one".into());
    }
    let mut arches = listed;
    if let Some(m) = map.iter().find(|m| m.architecture == target.arch) {
        arches.push(m.architecture.clone());
        arches.extend(m.sub_architectures.iter().flatten().cloned());
    }
    let arches = arches
        .iter()
        .map(|a| arch(a))
        .collect::<Result<Vec<_>, _>>()?;
    if !arches.is_empty() {
        out = out.architectures(arches);
    }
    let flags = p
        .flags
        .unwrap_or_default()
        .iter()
        .map(|f| known::<LinuxSeccompFilterFlag>("flag", f))
        .collect::<Result<Vec<_>, _>>()?;
    if !flags.is_empty() {
        out = out.flags(flags);
    }
    if let Some(m) = p.listener_metadata {
        out = out.listener_metadata(m);
    }

    let mut syscalls = Vec::new();
    for (i, rule) in p.syscalls.into_iter().flatten().enumerate() {
        let err = |m: String| format!("syscalls[{i}]: {m}");
        if !applies(rule.includes.as_ref(), rule.excludes.as_ref(), target).map_err(err)? {
            continue;
        }
        let names = match (rule.name, rule.names) {
            (Some(_), Some(n)) if !n.is_empty() => {
                return Err(err("both name and names are set; use one".into()));
            }
            (Some(n), _) => vec![n],
            (None, n) => n.unwrap_or_default(),
        };
        if names.is_empty() {
            return Err(err("no syscall names".into()));
        }
        let action = known::<LinuxSeccompAction>("action", &rule.action).map_err(err)?;
        if action == LinuxSeccompAction::ScmpActNotify {
            return Err(err(
                "seccomp user notification (SCMP_ACT_NOTIFY) is not supported".into(),
            ));
        }
        let mut call = LinuxSyscallBuilder::default().names(names).action(action);
        if let Some(e) = rule.errno_ret {
            call = call.errno_ret(e);
        }
        let args = rule.args.unwrap_or_default();
        if !args.is_empty() {
            let mut out_args = Vec::new();
            for a in args {
                if a.index > 5 {
                    return Err(err(format!("argument index {} is not 0 to 5", a.index)));
                }
                let op = known::<LinuxSeccompOperator>("operator", &a.op).map_err(err)?;
                let mut arg = LinuxSeccompArgBuilder::default()
                    .index(a.index as usize)
                    .value(a.value)
                    .op(op);
                if let Some(v2) = a.value_two {
                    arg = arg.value_two(v2);
                }
                out_args.push(arg.build().map_err(|e| err(e.to_string()))?);
            }
            call = call.args(out_args);
        }
        syscalls.push(call.build().map_err(|e| err(e.to_string()))?);
    }
    out.syscalls(syscalls).build().map_err(|e| e.to_string())
}

/// Whether a rule's `includes` hold and its `excludes` do not (Docker's semantics: every
/// included capability is needed, any excluded one drops the rule).
fn applies(
    includes: Option<&Condition>,
    excludes: Option<&Condition>,
    target: &Target<'_>,
) -> Result<bool, String> {
    let has_cap = |c: &String| target.caps.contains(&capabilities::cap_name(c));
    let kernel_at_least = |min: &str| -> Result<bool, String> {
        let want = parse_version(min).map_err(|e| format!("minKernel: {e}"))?;
        Ok((target.kernel)()? >= want)
    };
    if let Some(ex) = excludes {
        if ex.arches.iter().flatten().any(|a| a == target.goarch)
            || ex.caps.iter().flatten().any(has_cap)
        {
            return Ok(false);
        }
        if let Some(min) = &ex.min_kernel
            && kernel_at_least(min)?
        {
            return Ok(false);
        }
    }
    if let Some(inc) = includes {
        let arches = inc.arches.as_deref().unwrap_or_default();
        if (!arches.is_empty() && !arches.iter().any(|a| a == target.goarch))
            || !inc.caps.iter().flatten().all(has_cap)
        {
            return Ok(false);
        }
        if let Some(min) = &inc.min_kernel
            && !kernel_at_least(min)?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::SecurityProfile;
    use serde_json::{Value, json};

    fn caps(extra: &[&str]) -> Vec<String> {
        super::super::capabilities::DEFAULT_CAPABILITIES
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    }

    /// The profile as config.json holds it.
    fn json_profile(
        sec: &LinuxContainerSecurityContext,
        caps: &[String],
    ) -> Result<Option<Value>, SpecError> {
        profile(sec, caps).map(|p| p.map(|p| serde_json::to_value(p).unwrap()))
    }

    fn with(profile_type: ProfileType, localhost_ref: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: profile_type as i32,
                localhost_ref: localhost_ref.into(),
            }),
            ..Default::default()
        }
    }

    fn default_for(caps: &[String]) -> Value {
        json_profile(&with(ProfileType::RuntimeDefault, ""), caps)
            .unwrap()
            .unwrap()
    }

    /// The rules naming `name`: (action, has args).
    fn rules_for(p: &Value, name: &str) -> Vec<(String, bool)> {
        p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["names"].as_array().unwrap().contains(&json!(name)))
            .map(|s| {
                (
                    s["action"].as_str().unwrap().to_string(),
                    s.get("args").is_some(),
                )
            })
            .collect()
    }

    fn allowed(p: &Value, name: &str) -> bool {
        rules_for(p, name).contains(&("SCMP_ACT_ALLOW".into(), false))
    }

    #[test]
    fn runtime_default_is_containerds_profile() {
        let p = default_for(&caps(&[]));
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                p["architectures"],
                json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
            );
            assert!(allowed(&p, "arch_prctl"));
        }
        for name in [
            "read",
            "write",
            "execve",
            "futex",
            "openat",
            "rt_sigreturn",
            "chroot",
        ] {
            assert!(allowed(&p, name), "{name}");
        }
        for name in [
            "mount", "umount2", "unshare", "setns", "kcmp", "reboot", "bpf",
        ] {
            assert!(rules_for(&p, name).is_empty(), "{name}");
        }
        // minKernel 4.8 holds here: ptrace is allowed, as containerd allows it.
        assert!(allowed(&p, "ptrace"));
        // clone without namespace flags, clone3 → ENOSYS.
        assert_eq!(
            rules_for(&p, "clone"),
            vec![("SCMP_ACT_ALLOW".into(), true)]
        );
        let clone = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"] == json!(["clone"]))
            .unwrap();
        assert_eq!(
            clone["args"],
            json!([{"index": 0, "value": 0x7E02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}])
        );
        let clone3 = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"] == json!(["clone3"]))
            .unwrap();
        assert_eq!(
            clone3,
            &json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38})
        );
        assert_eq!(rules_for(&p, "personality").len(), 5);
        assert_eq!(rules_for(&p, "socket").len(), 3);
        // Docker-only fields are resolved away; the result is a valid OCI profile.
        let text = p.to_string();
        for field in ["includes", "excludes", "comment", "archMap"] {
            assert!(!text.contains(field), "{field}");
        }
        let oci: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p).unwrap();
        assert_eq!(oci.default_action(), LinuxSeccompAction::ScmpActErrno);
    }

    #[test]
    fn capabilities_unlock_syscalls() {
        let p = default_for(&caps(&["CAP_SYS_ADMIN"]));
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone3",
            "sethostname",
        ] {
            assert!(allowed(&p, name), "{name}");
        }
        // CAP_SYS_ADMIN: clone and clone3 unconditionally, no ENOSYS rule.
        assert_eq!(
            rules_for(&p, "clone"),
            vec![("SCMP_ACT_ALLOW".into(), false)]
        );
        assert_eq!(
            rules_for(&p, "clone3"),
            vec![("SCMP_ACT_ALLOW".into(), false)]
        );
        assert!(!allowed(&p, "kcmp"));
        let p = default_for(&caps(&["CAP_SYS_PTRACE", "CAP_SYS_TIME", "CAP_BPF"]));
        for name in [
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "settimeofday",
            "bpf",
        ] {
            assert!(allowed(&p, name), "{name}");
        }
        assert!(!allowed(&p, "mount"));
        // The capability set, not the defaults: dropping SYS_CHROOT drops chroot.
        let without: Vec<String> = caps(&[])
            .into_iter()
            .filter(|c| c != "CAP_SYS_CHROOT")
            .collect();
        assert!(!allowed(&default_for(&without), "chroot"));
    }

    #[test]
    #[allow(deprecated)]
    fn unset_unconfined_and_privileged_have_none() {
        let c = caps(&[]);
        assert_eq!(
            json_profile(&LinuxContainerSecurityContext::default(), &c).unwrap(),
            None
        );
        assert_eq!(
            json_profile(&with(ProfileType::Unconfined, ""), &c).unwrap(),
            None
        );
        let mut privileged = with(ProfileType::RuntimeDefault, "");
        privileged.privileged = true;
        assert_eq!(json_profile(&privileged, &c).unwrap(), None);
        // The deprecated path field.
        let path = |p: &str| LinuxContainerSecurityContext {
            seccomp_profile_path: p.into(),
            ..Default::default()
        };
        assert_eq!(json_profile(&path("unconfined"), &c).unwrap(), None);
        assert_eq!(
            json_profile(&path("runtime/default"), &c).unwrap(),
            Some(default_for(&c))
        );
        assert_eq!(
            json_profile(&path("docker/default"), &c).unwrap(),
            Some(default_for(&c))
        );
        assert!(matches!(
            json_profile(&path("strict"), &c),
            Err(SpecError::Invalid(_))
        ));
        // localhost_ref only with Localhost; unknown types.
        assert!(json_profile(&with(ProfileType::RuntimeDefault, "/x.json"), &c).is_err());
        let mut unknown = with(ProfileType::RuntimeDefault, "");
        unknown.seccomp.as_mut().unwrap().profile_type = 9;
        assert!(json_profile(&unknown, &c).is_err());
    }

    #[test]
    #[allow(deprecated)]
    fn localhost_profiles_are_read_and_converted() {
        let dir = tempfile::tempdir().unwrap();
        let c = caps(&[]);
        // OCI format: passed through.
        let oci = dir.path().join("oci.json");
        std::fs::write(
            &oci,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28},
                             {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap();
        let p = json_profile(&with(ProfileType::Localhost, oci.to_str().unwrap()), &c)
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                   "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28},
                                {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]})
        );
        // The deprecated "localhost/<path>" form reads the same file.
        let old = LinuxContainerSecurityContext {
            seccomp_profile_path: format!("localhost/{}", oci.display()),
            ..Default::default()
        };
        assert_eq!(json_profile(&old, &c).unwrap(), Some(p));

        // Docker format: archMap, includes and excludes resolved.
        let docker = dir.path().join("docker.json");
        std::fs::write(
            &docker,
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}],
                "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW", "comment": "one name"},
                             {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["SYS_ADMIN"]}},
                             {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
                             {"names": ["futex"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "3.10"}},
                             {"names": ["statmount"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
                             {"names": ["riscv_flush_icache"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["riscv64"]}}]}"#,
        )
        .unwrap();
        let p = json_profile(&with(ProfileType::Localhost, docker.to_str().unwrap()), &c)
            .unwrap()
            .unwrap();
        let names: Vec<&Value> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["names"])
            .collect();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                p["architectures"],
                json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
            );
        }
        assert_eq!(names, vec![&json!(["read"]), &json!(["futex"])]);
        let p = json_profile(
            &with(ProfileType::Localhost, docker.to_str().unwrap()),
            &caps(&["CAP_SYS_ADMIN"]),
        )
        .unwrap()
        .unwrap();
        assert!(allowed(&p, "mount"));
    }

    #[test]
    fn bad_localhost_profiles_are_invalid_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let c = caps(&[]);
        let err = |path: &str| match json_profile(&with(ProfileType::Localhost, path), &c) {
            Err(SpecError::Invalid(m)) => m,
            other => panic!("{path}: {other:?}"),
        };
        let missing = dir.path().join("missing.json");
        let m = err(missing.to_str().unwrap());
        assert!(
            m.contains(missing.to_str().unwrap()) && m.contains("No such file"),
            "{m}"
        );
        assert!(err("profiles/x.json").contains("not an absolute path"));
        for (i, (text, want)) in [
            ("not json", "not a seccomp profile"),
            (r#"{"syscalls": []}"#, "defaultAction"),
            (r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#, "unknown defaultAction"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}"#,
                "unknown architecture",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_NOTIFY"}]}"#,
                "not supported",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#,
                "unknown operator",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "argument index 6",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#,
                "no syscall names",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],
                    "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
                "both architectures and archMap",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("bad{i}.json"));
            std::fs::write(&path, text).unwrap();
            let m = err(path.to_str().unwrap());
            assert!(
                m.starts_with(&format!("seccomp profile {}: ", path.display())) && m.contains(want),
                "{m}"
            );
        }
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_version("6.18.44-fc-v595"), Ok((6, 18)));
        assert_eq!(parse_version("4.8"), Ok((4, 8)));
        assert!(parse_version("six").is_err());
        assert!(running_kernel().is_ok());
        assert!((4, 8) < (4, 10) && (4, 10) < (5, 0));
    }
}
