//! A TCP proxy on loopback that forwards to a target (a test registry) and sends the answers
//! back at a bounded rate per connection: a slow registry, for tests that must watch a pull
//! while it runs (progress, metrics).
//!
//! Each connection is two threads copying bytes; they end when either side closes. `Drop`
//! stops accepting (the accept thread exits on its next wake-up, which `Drop` triggers).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A running throttling proxy.
pub struct SlowProxy {
    /// `127.0.0.1:PORT`: use it as the registry host of an image reference.
    pub addr: String,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    /// Forward every connection to `target` (`IP:PORT`), answers at `bytes_per_sec` at most.
    pub fn start(target: &str, bytes_per_sec: u64) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the slow proxy");
        let addr = listener
            .local_addr()
            .expect("the slow proxy's address")
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (target, flag) = (target.to_string(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let target = target.clone();
                std::thread::spawn(move || {
                    let _ = forward(client, &target, bytes_per_sec);
                });
            }
        });
        SlowProxy { addr, stop }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn forward(client: TcpStream, target: &str, bytes_per_sec: u64) -> io::Result<()> {
    let server = TcpStream::connect(target)?;
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    // When the bytes sent so far are due; idle time earns no credit (kept-alive connections).
    let mut due = Instant::now();
    let mut buf = [0u8; 8192];
    loop {
        let n = match s_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if c_write.write_all(&buf[..n]).is_err() {
            break;
        }
        due = due.max(Instant::now()) + Duration::from_secs_f64(n as f64 / bytes_per_sec as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = s_read.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}
