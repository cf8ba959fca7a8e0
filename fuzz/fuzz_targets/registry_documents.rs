//! Manifests, indexes and image configs as a registry may send them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mid = data.len() / 2;
    let _ = berth::image::pull::parse_documents(&data[..mid], &data[mid..]);
    let _ = berth::image::pull::parse_documents(data, data);
});
