//! A container's output through the CRI log line splitter and record writer.
#![no_main]

use berth_shim::io::{LineSplitter, Stream, Tag, format_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let max = 1 + data.first().copied().unwrap_or(0) as usize * 16;
    let mut splitter = LineSplitter::new(max);
    let mut out = Vec::new();
    let t = std::time::UNIX_EPOCH;
    let mut emit = |tag: Tag, line: &[u8]| {
        assert!(line.len() <= max, "a record longer than the limit");
        assert!(!line.contains(&b'\n'), "a newline inside a record");
        format_record(&mut out, t, Stream::Stdout, tag, line);
    };
    for chunk in data.chunks(7) {
        splitter.push(chunk, &mut emit);
    }
    splitter.finish(&mut emit);
});
