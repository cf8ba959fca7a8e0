//! Keys and certificates for the test bed's servers (the registry's TLS, the token service's
//! signing key), made with the openssl CLI.

use std::process::{Command, Stdio};

/// Run `openssl` with `args`; a failure fails the test with its stderr.
pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
