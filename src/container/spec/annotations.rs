//! The container's annotations: the request's, and the `io.kubernetes.cri.*` ones containerd
//! sets for runtimes and monitors (container type, sandbox, names, image).

use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;

/// The request's annotations with CRI's own over them.
pub fn with_annotations(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let c = req.config;
    let pod = req.sandbox.config.metadata.clone().unwrap_or_default();
    draft.annotations = c.annotations.clone().into_iter().collect();
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container".to_string()),
        ("io.kubernetes.cri.sandbox-id", req.sandbox.id.clone()),
        (
            "io.kubernetes.cri.container-name",
            c.metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
        ),
        (
            "io.kubernetes.cri.image-name",
            req.input.image_name.to_string(),
        ),
        ("io.kubernetes.cri.sandbox-name", pod.name),
        ("io.kubernetes.cri.sandbox-namespace", pod.namespace),
        ("io.kubernetes.cri.sandbox-uid", pod.uid),
    ] {
        draft.annotations.insert(k.to_string(), v);
    }
    Ok(())
}
