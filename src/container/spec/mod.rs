//! `spec::build`: a CRI `ContainerConfig`, the image config and the pod sandbox become one OCI
//! runtime spec (config.json), merged the way Docker and containerd merge them and with
//! containerd's defaults where the client says nothing.
//!
//! As containerd composes `SpecOpts` (`WithProcessArgs`, `WithMounts`, `WithDevices`, ...),
//! the spec is a list of small steps ([`STEPS`]), one concern each, one file per concern;
//! each step reads the [`Request`] and sets its part of the [`Draft`] with oci-spec's typed
//! builders. The steps run in order and the first error stops the build; a step that makes
//! something on the host (a missing bind source) runs after the checks before it.

mod annotations;
mod apparmor;
mod capabilities;
mod devices;
mod draft;
mod error;
mod linux;
mod mounts;
mod namespaces;
mod process;
mod request;
mod resources;
mod seccomp;
mod userns;

use oci_spec::runtime::Spec;

use draft::Draft;
pub use error::SpecError;
use request::Request;
pub use request::SpecInput;
pub use resources::linux_resources;

/// One step: containerd's `SpecOpts`.
type Step = fn(&Request<'_>, &mut Draft) -> Result<(), SpecError>;

/// The steps, in the order their checks run.
const STEPS: &[Step] = &[
    process::with_args,
    process::with_env,
    process::with_cwd,
    process::with_user,
    process::with_terminal,
    capabilities::with_capabilities,
    process::with_no_new_privileges,
    mounts::with_mounts,
    devices::with_devices,
    linux::with_masked_paths,
    namespaces::with_namespaces,
    linux::with_sysctls,
    linux::with_cgroups_path,
    seccomp::with_seccomp,
    userns::with_user_namespace,
    apparmor::with_apparmor,
    annotations::with_annotations,
    namespaces::with_hostname,
    // Numbers out of OCI's range are refused after every other check.
    process::with_oom_score_adj,
    resources::with_resources,
];

/// Build the OCI spec. Missing host paths of bind mounts are created as directories
/// (containerd does the same), so this is the create step, not a pure function.
pub fn build(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let req = Request::new(input)?;
    let mut draft = Draft::new(req.sec.readonly_rootfs)?;
    for step in STEPS {
        step(&req, &mut draft)?;
    }
    draft.into_spec()
}

#[cfg(test)]
mod tests;
