//! Containers: the CRI container config turned into an OCI runtime spec, and the user it runs as.

pub mod spec;
pub mod user;
