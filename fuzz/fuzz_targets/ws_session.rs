//! An exec session's WebSocket connection as a client may write it (raw frames after the
//! upgrade): berth's channel framing, resize messages and close signal on top of
//! tokio-tungstenite's frame parser. Never a panic or a hang.
#![no_main]

use std::time::Duration;

use berth::streaming::Expected;
use berth::streaming::ws::channel::Protocol;
use berth::streaming::ws::session::accept_command;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROTOCOLS: [Protocol; 5] = [
    Protocol::V5,
    Protocol::V4,
    Protocol::V4Base64,
    Protocol::V1,
    Protocol::V1Base64,
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, frames)) = data.split_first() else {
        return;
    };
    // Paused time: the session's linger and drain timers pass as soon as everything is idle.
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let expected = Expected {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: first & 0x80 != 0,
        };
        let protocol = PROTOCOLS[first as usize % PROTOCOLS.len()];
        let s = accept_command(server, protocol, expected).await;
        let _ = client.write_all(frames).await;
        let _ = client.shutdown().await;
        // The command "ended" at once: the session sends its status and closes.
        let berth::streaming::CommandStreams {
            mut stdin,
            mut resize,
            error,
            ..
        } = s;
        let _ = error.send(br#"{"status":"Success"}"#.to_vec().into());
        let mut sink = [0u8; 4096];
        let drain = async {
            loop {
                tokio::select! {
                    Some(_) = async { stdin.as_mut()?.recv().await } => {}
                    Some(_) = async { resize.as_mut()?.recv().await } => {}
                    r = client.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { break },
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    });
});
