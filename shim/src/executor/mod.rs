//! berth's built-in OCI executor: turns a bundle's `config.json` into a container init process
//! in the CREATED state, then lets it exec the container's command on [`InitProcess::start`].
//!
//! - [`Container::load`] reads and validates the bundle (no side effects);
//! - [`process::create`] forks the init into its namespaces; the child prepares the rootfs
//!   ([`rootfs`]), takes its identity and privileges (`privileges.rs`, one sequence shared with
//!   [`exec`], made of [`security`]'s steps), reports `ready` (or the first error) to the shim
//!   and blocks until released;
//! - the shim releases it with [`process::release`] and learns whether the exec worked.
//!
//! Everything that can fail happens before the child blocks, so it surfaces at create time;
//! only the exec itself (executable lookup) is reported at start.
//!
//! [`exec`] runs another process in a running container (`berth-shim exec`).
//!

mod bundle;
mod error;
pub mod exec;
pub(crate) mod privileges;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod security;

pub use bundle::Container;
pub use error::{Error, Result};
pub use process::{InitProcess, PidNamespace, create};
