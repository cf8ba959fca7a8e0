//! The spec while the steps build it: a [`Spec`] whose parts are not optional, assembled into
//! one at the end.
//!
//! oci-spec's builders take every field they are not given from its own runc-like `Default`s
//! (hostname `youki`, `sh`, `TERM=xterm`, RLIMIT_NOFILE 1024, three capabilities, six
//! namespaces, ...). berth's spec holds only what its steps set, so the draft starts with those
//! cleared.

use std::collections::HashMap;

use oci_spec::runtime::{
    Linux, LinuxBuilder, LinuxResources, Mount, Process, ProcessBuilder, Root, RootBuilder, Spec,
    SpecBuilder,
};

use super::error::SpecError;

/// The OCI runtime spec version berth writes.
const OCI_VERSION: &str = "1.1.0";

/// The parts of the spec the steps set.
pub struct Draft {
    pub root: Root,
    pub process: Process,
    pub mounts: Vec<Mount>,
    /// `linux` without its resources (those are [`Draft::resources`]).
    pub linux: Linux,
    pub resources: LinuxResources,
    pub annotations: HashMap<String, String>,
    pub hostname: Option<String>,
}

impl Draft {
    /// The root `rootfs` (read-only or not), and nothing else.
    pub fn new(readonly_root: bool) -> Result<Self, SpecError> {
        let mut process = ProcessBuilder::default().build()?;
        process.set_args(None);
        process.set_env(None);
        process.set_capabilities(None);
        process.set_rlimits(None);
        process.set_no_new_privileges(None);
        process.set_terminal(None);
        let mut linux = LinuxBuilder::default().build()?;
        linux.set_resources(None);
        linux.set_namespaces(None);
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
        Ok(Draft {
            root: RootBuilder::default()
                .path("rootfs")
                .readonly(readonly_root)
                .build()?,
            process,
            mounts: Vec::new(),
            linux,
            resources: LinuxResources::default(),
            annotations: HashMap::new(),
            hostname: None,
        })
    }

    /// The finished spec.
    pub fn into_spec(self) -> Result<Spec, SpecError> {
        let mut linux = self.linux;
        linux.set_resources(Some(self.resources));
        let mut spec = SpecBuilder::default()
            .version(OCI_VERSION)
            .root(self.root)
            .process(self.process)
            .mounts(self.mounts)
            .annotations(self.annotations)
            .linux(linux)
            .build()?;
        // The builder's default is `youki`; berth sets one only with the pod's own UTS namespace.
        spec.set_hostname(self.hostname);
        Ok(spec)
    }
}
