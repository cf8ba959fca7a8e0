//! A SPDY/3.1 connection's bytes as a client may send them: frames read until an error or EOF.
#![no_main]

use berth::streaming::spdy::frame::FrameReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(async {
        let mut reader = FrameReader::new(data);
        for _ in 0..10_000 {
            match reader.read_frame().await {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    });
});
