//! The one error of the spec builder, in its own file so that every step can return it
//! without importing the module that composes the steps.

use crate::container::user::UserError;

/// Errors turning a request into a spec; all are the client's to fix.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("the generated spec is not valid: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}
