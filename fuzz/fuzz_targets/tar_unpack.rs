//! A layer (decompressed tar) unpacked into a fresh directory: never a panic, never a file
//! outside it.
#![no_main]

use berth::snapshot::unpack::{Limits, unpack_layer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let root = dir.path().join("fs");
    if std::fs::create_dir(&root).is_err() {
        return;
    }
    let limits = Limits {
        max_bytes: 64 << 20,
        max_inodes: 10_000,
    };
    let _ = unpack_layer(data, &root, limits);
    // Nothing beside the layer's own directory.
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        beside,
        vec![std::ffi::OsString::from("fs")],
        "written outside the layer"
    );
});
