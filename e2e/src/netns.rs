//! Put the whole test process (and so every registry and berthd it starts) into a fresh
//! network namespace with only loopback up: nothing a test starts is reachable from the host,
//! and the namespace vanishes with the process.

use std::process::Command;

use nix::sched::{CloneFlags, unshare};

/// Must run before any thread is started (namespaces are per thread until then).
pub fn enter_private_netns() {
    if !nix::unistd::geteuid().is_root() {
        panic!("the e2e tests need root (namespaces, overlay mounts, cgroups)");
    }
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("running ip (iproute2)");
    assert!(status.success(), "ip link set lo up failed");
}

/// Add an address to loopback so a test server can listen on a non-loopback IP.
pub fn add_address(cidr: &str) {
    let status = Command::new("ip")
        .args(["addr", "add", cidr, "dev", "lo"])
        .status()
        .expect("running ip (iproute2)");
    assert!(status.success(), "ip addr add {cidr} failed");
}
