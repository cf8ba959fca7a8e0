//! Image references, normalised the way the ecosystem (Docker, containerd) does it:
//! `busybox` → `docker.io/library/busybox:latest`; a reference with both a tag and a digest
//! keeps only the digest.

use oci_client::Reference;

use super::error::ImageError;

/// A normalised, fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    inner: Reference,
}

impl ImageRef {
    /// Parse and normalise a user-supplied reference.
    pub fn parse(input: &str) -> Result<ImageRef, ImageError> {
        let invalid = |reason: String| ImageError::InvalidReference {
            reference: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(invalid("the reference is empty".into()));
        }
        if input.trim() != input {
            return Err(invalid("the reference has surrounding whitespace".into()));
        }
        let parsed = Reference::try_from(input).map_err(|e| invalid(e.to_string()))?;
        if let Some(d) = parsed.digest() {
            validate_digest(d).map_err(invalid)?;
        }
        let inner = match (parsed.tag(), parsed.digest()) {
            // As containerd's ParseDockerRef: the digest names the content, the tag is dropped.
            (Some(_), Some(d)) => Reference::with_digest(
                parsed.registry().to_string(),
                parsed.repository().to_string(),
                d.to_string(),
            ),
            (None, None) => Reference::with_tag(
                parsed.registry().to_string(),
                parsed.repository().to_string(),
                "latest".to_string(),
            ),
            _ => parsed,
        };
        Ok(ImageRef { inner })
    }

    /// The registry host as named (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The tag, when the reference has no digest.
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    /// The manifest digest, when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// The oci-client reference for registry calls.
    pub fn oci(&self) -> &Reference {
        &self.inner
    }

    /// `name@digest` for this repository and a manifest digest.
    pub fn repo_digest(&self, digest: &str) -> String {
        format!("{}@{}", self.name(), digest)
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

/// `sha256:<64 lowercase hex>`; other algorithms are refused (no registry serves them).
pub fn validate_digest(d: &str) -> Result<(), String> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(())
        }
        Some(("sha256", _)) => Err(format!("digest {d} is not 64 lowercase hex characters")),
        _ => Err(format!("digest {d} is not a sha256 digest")),
    }
}

/// True for a full image id (`sha256:<hex>`) or its bare hex form.
pub fn looks_like_id(s: &str) -> bool {
    validate_digest(s).is_ok()
        || (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        let r = ImageRef::parse("foo/bar:1.0").unwrap();
        assert_eq!(r.to_string(), "docker.io/foo/bar:1.0");
        let r = ImageRef::parse("localhost:5000/x/y").unwrap();
        assert_eq!(r.to_string(), "localhost:5000/x/y:latest");
        assert_eq!(r.registry(), "localhost:5000");
        let r = ImageRef::parse("127.0.0.1:5000/busybox:v1").unwrap();
        assert_eq!(r.name(), "127.0.0.1:5000/busybox");
    }

    #[test]
    fn digests_win_over_tags() {
        let r = ImageRef::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = ImageRef::parse(&format!("busybox:1.36@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.repo_digest(D), format!("docker.io/library/busybox@{D}"));
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            " busybox",
            "library/UPPER",
            "busybox:",
            "busybox@sha256:abc",
            "busybox@md5:0123456789abcdef0123456789abcdef",
            "a//b",
            "busybox:tag with space",
        ] {
            assert!(
                matches!(
                    ImageRef::parse(bad),
                    Err(ImageError::InvalidReference { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn ids() {
        assert!(looks_like_id(D));
        assert!(looks_like_id(&D[7..]));
        assert!(!looks_like_id("busybox"));
    }
}
