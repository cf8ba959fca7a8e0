//! The executor's side of the container's cgroup (the cgroup itself is [`berth_cgroups`]):
//! [`setup`] creates the cgroup `linux.cgroupsPath` names, and the [`CreatedCgroup`] guard
//! removes it again if the container is not created after all.
//!
//! The container's init joins its cgroup itself, first thing after the fork (see `process.rs`),
//! before it creates namespaces or runs anything of the container; the resources are applied by
//! the shim once the init reports it is set up and before it may exec (runc's order: the rootfs
//! setup may mknod and open devices the device rules would refuse).

pub use berth_cgroups::Cgroup;
use berth_cgroups::DESTROY_TIMEOUT;

use super::Container;

impl From<berth_cgroups::Error> for super::Error {
    fn from(e: berth_cgroups::Error) -> super::Error {
        use berth_cgroups::Error;
        match e {
            Error::InvalidSpec(m) => super::Error::InvalidSpec(m),
            Error::Unsupported(m) => super::Error::Unsupported(m),
            Error::Io { context, source } => super::Error::Io {
                context: format!("cgroup: {context}"),
                source,
            },
            e @ Error::Busy(_) => super::Error::Init(format!("cgroup: {e}")),
        }
    }
}

/// The container's cgroup while the container is being created: removed on drop unless kept.
#[derive(Debug)]
pub struct CreatedCgroup {
    cgroup: Option<Cgroup>,
}

impl CreatedCgroup {
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Apply the container's `linux.resources`.
    pub fn apply(&self, c: &Container) -> super::Result<()> {
        if let (Some(cg), Some(r)) = (
            &self.cgroup,
            c.spec.linux().as_ref().and_then(|l| l.resources().as_ref()),
        ) {
            cg.apply(r)
                .map_err(|e| e.context("applying linux.resources"))?;
        }
        Ok(())
    }

    /// The container exists: its cgroup outlives this guard (the shim removes it at the end).
    pub fn keep(mut self) -> Option<Cgroup> {
        self.cgroup.take()
    }
}

impl Drop for CreatedCgroup {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.destroy(DESTROY_TIMEOUT)
        {
            tracing::warn!("removing the cgroup of a container not created: {e}");
        }
    }
}

/// Create the cgroup `linux.cgroupsPath` names (None: the spec names none, the container runs
/// in the shim's cgroups).
pub fn setup(c: &Container) -> super::Result<CreatedCgroup> {
    let Some(path) = c
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
    else {
        tracing::info!("no linux.cgroupsPath: the container gets no cgroup of its own");
        return Ok(CreatedCgroup { cgroup: None });
    };
    let mut cg = Cgroup::for_host(path)?;
    if let Err(e) = cg.create() {
        // Whatever part was made goes again (the leaves only: parents may be shared).
        let _ = cg.remove();
        return Err(e.into());
    }
    Ok(CreatedCgroup { cgroup: Some(cg) })
}
