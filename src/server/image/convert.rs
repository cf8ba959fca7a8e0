//! Images as CRI shows them, where more than one call needs it.

use k8s_cri::v1::{Image, ImageSpec, Int64Value};

use crate::image::ImageRecord;

/// The image a request names (empty when it names none).
pub fn image_name(spec: &Option<ImageSpec>) -> String {
    spec.as_ref().map(|s| s.image.clone()).unwrap_or_default()
}

/// An image record as CRI shows it; uid or username come from the config's `User`.
pub fn to_cri(rec: &ImageRecord) -> Image {
    let user = rec.user.split(':').next().unwrap_or_default();
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(Int64Value { value: n }), String::new()),
        Err(_) => (None, user.to_string()),
    };
    Image {
        id: rec.id.clone(),
        repo_tags: rec.repo_tags.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        uid,
        username,
        spec: None,
        pinned: false,
    }
}
