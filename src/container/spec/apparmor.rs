//! The container's AppArmor profile (OCI `process.apparmorProfile`), from the CRI security
//! context: the `apparmor` field, else the deprecated `apparmor_profile` string
//! (`runtime/default`, `unconfined`, `localhost/<name>`).
//!
//! - `Localhost`: the profile must be loaded in the kernel (checked here, so CreateContainer
//!   fails precisely instead of the container failing to exec); the shim confines the
//!   container's process with it, as runc does. On a host without AppArmor it is refused
//!   (containerd: "apparmor is not supported").
//! - `Unconfined`: no profile.
//! - `RuntimeDefault` / unset: berth ships no default AppArmor profile yet (containerd loads
//!   its own through apparmor_parser); the container runs without one, as on hosts without
//!   AppArmor.

use k8s_cri::v1::LinuxContainerSecurityContext;
use k8s_cri::v1::security_profile::ProfileType;

use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;

const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// What the request asks for: None (no profile to apply) or a Localhost profile name.
fn requested(sec: &LinuxContainerSecurityContext) -> Result<Option<String>, SpecError> {
    #[allow(deprecated)]
    let legacy = sec.apparmor_profile.as_str();
    let (kind, name) = match &sec.apparmor {
        Some(p) => {
            let kind = ProfileType::try_from(p.profile_type).map_err(|_| {
                SpecError::Invalid(format!("unknown apparmor profile type {}", p.profile_type))
            })?;
            if kind != ProfileType::Localhost && !p.localhost_ref.is_empty() {
                return Err(SpecError::Invalid(
                    "apparmor localhost_ref must only be set when the profile type is Localhost"
                        .into(),
                ));
            }
            (kind, p.localhost_ref.clone())
        }
        None => match legacy {
            "" | "runtime/default" => (ProfileType::RuntimeDefault, String::new()),
            "unconfined" => (ProfileType::Unconfined, String::new()),
            other => match other.strip_prefix("localhost/") {
                Some(name) => (ProfileType::Localhost, name.to_string()),
                None => {
                    return Err(SpecError::Invalid(format!(
                        "invalid apparmor profile {other:?}: expected runtime/default, \
                         unconfined or localhost/<name>"
                    )));
                }
            },
        },
    };
    match kind {
        ProfileType::Localhost => {
            let name = name.strip_prefix("localhost/").unwrap_or(&name).to_string();
            if name.is_empty() {
                return Err(SpecError::Invalid(
                    "apparmor profile type Localhost needs a profile name".into(),
                ));
            }
            Ok(Some(name))
        }
        _ => Ok(None),
    }
}

/// Whether the kernel enforces AppArmor.
fn host_enabled() -> bool {
    std::fs::read_to_string(ENABLED).is_ok_and(|s| s.trim_start().starts_with('Y'))
}

/// Whether `name` is among the loaded profiles (`name (mode)` per line).
fn loaded(profiles: &str, name: &str) -> bool {
    profiles
        .lines()
        .filter_map(|l| l.rsplit_once(" ("))
        .any(|(n, _)| n == name)
}

/// `process.apparmorProfile`, when the request names a profile.
pub fn with_apparmor(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    if let Some(profile) = profile(&req.sec)? {
        draft.process.set_apparmor_profile(Some(profile));
    }
    Ok(())
}

/// The profile for `process.apparmorProfile`, or None.
pub fn profile(sec: &LinuxContainerSecurityContext) -> Result<Option<String>, SpecError> {
    let wanted = requested(sec)?;
    resolve(wanted, host_enabled(), || {
        std::fs::read_to_string(PROFILES).unwrap_or_default()
    })
}

fn resolve(
    wanted: Option<String>,
    enabled: bool,
    profiles: impl FnOnce() -> String,
) -> Result<Option<String>, SpecError> {
    let Some(name) = wanted else {
        return Ok(None);
    };
    if !enabled {
        return Err(SpecError::Invalid(format!(
            "apparmor profile {name:?} requested, but AppArmor is not enabled on this host"
        )));
    }
    if !loaded(&profiles(), &name) {
        return Err(SpecError::Invalid(format!(
            "apparmor profile not found: {name} (it must be loaded on the node)"
        )));
    }
    // An explicit profile applies to privileged containers too, as in containerd.
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::SecurityProfile;

    fn sec(legacy: &str, field: Option<(ProfileType, &str)>) -> LinuxContainerSecurityContext {
        #[allow(deprecated)]
        LinuxContainerSecurityContext {
            apparmor_profile: legacy.into(),
            apparmor: field.map(|(t, r)| SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn what_is_asked() {
        assert_eq!(requested(&sec("", None)).unwrap(), None);
        assert_eq!(requested(&sec("runtime/default", None)).unwrap(), None);
        assert_eq!(requested(&sec("unconfined", None)).unwrap(), None);
        assert_eq!(
            requested(&sec("localhost/deny-write", None)).unwrap(),
            Some("deny-write".into())
        );
        assert!(requested(&sec("bogus", None)).is_err());
        // The field wins over the deprecated string.
        assert_eq!(
            requested(&sec(
                "localhost/old",
                Some((ProfileType::Localhost, "localhost/new"))
            ))
            .unwrap(),
            Some("new".into())
        );
        assert_eq!(
            requested(&sec("localhost/old", Some((ProfileType::Unconfined, "")))).unwrap(),
            None
        );
        assert!(requested(&sec("", Some((ProfileType::RuntimeDefault, "x")))).is_err());
        assert!(requested(&sec("", Some((ProfileType::Localhost, "")))).is_err());
    }

    #[test]
    fn loaded_profiles_and_hosts() {
        let list = "docker-default (enforce)\ncri-tools-deny-write (enforce)\nx y (complain)\n";
        assert!(loaded(list, "cri-tools-deny-write"));
        assert!(loaded(list, "x y"));
        assert!(!loaded(list, "deny"));
        let ok = resolve(Some("x y".into()), true, || list.into()).unwrap();
        assert_eq!(ok.as_deref(), Some("x y"));
        let e = resolve(Some("absent".into()), true, || list.into()).unwrap_err();
        assert!(e.to_string().contains("apparmor profile not found"), "{e}");
        let e = resolve(Some("x y".into()), false, || list.into()).unwrap_err();
        assert!(e.to_string().contains("not enabled"), "{e}");
        assert_eq!(resolve(None, false, String::new).unwrap(), None);
    }
}
