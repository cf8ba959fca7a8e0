//! Image references as clients write them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = berth::image::reference::ImageRef::parse(s) {
        let _ = (r.registry(), r.repository(), r.name(), r.tag(), r.digest());
        let _ = r
            .repo_digest("sha256:0000000000000000000000000000000000000000000000000000000000000000");
    }
    let _ = berth::image::reference::validate_digest(s);
    let _ = berth::image::reference::looks_like_id(s);
});
