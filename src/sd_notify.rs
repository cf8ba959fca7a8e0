//! systemd's service notification protocol (`sd_notify(3)`), for `Type=notify` units.
//!
//! The service manager passes `NOTIFY_SOCKET`: a unix datagram socket path, or an abstract socket
//! name written with a leading `@`. Each notification is one datagram of `KEY=VALUE` lines.
//! berthd sends `READY=1` once recovery is done and the CRI socket is bound, and `STOPPING=1`
//! when it begins to shut down. Without `NOTIFY_SOCKET` (not run by systemd, or not
//! `Type=notify`) every call is a no-op.

use std::ffi::{OsStr, OsString};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for notify services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Errors sending a notification.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{NOTIFY_SOCKET} {0:?} is neither an absolute path nor an abstract name (@...)")]
    BadAddress(OsString),
    #[error("sending to {NOTIFY_SOCKET} {socket:?}: {source}")]
    Send {
        socket: OsString,
        source: std::io::Error,
    },
}

/// Where notifications go: the socket named by `NOTIFY_SOCKET`, read once.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: Option<OsString>,
}

impl Notifier {
    /// The notifier of this process: `NOTIFY_SOCKET` from the environment, if set and not empty.
    pub fn from_env() -> Self {
        Notifier::new(std::env::var_os(NOTIFY_SOCKET))
    }

    /// A notifier for an explicit socket (`None` or empty: notifications are dropped).
    pub fn new(socket: Option<OsString>) -> Self {
        Notifier {
            socket: socket.filter(|s| !s.is_empty()),
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The service is ready (`READY=1`), with a status line.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[("READY", "1"), ("STATUS", status)])
    }

    /// The service is shutting down (`STOPPING=1`), with a status line.
    pub fn stopping(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[("STOPPING", "1"), ("STATUS", status)])
    }

    /// Send one datagram of `KEY=VALUE` lines. Newlines in values are replaced with spaces
    /// (a value cannot span lines).
    pub fn notify(&self, fields: &[(&str, &str)]) -> Result<(), NotifyError> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let mut message = String::new();
        for (key, value) in fields {
            message.push_str(key);
            message.push('=');
            message.push_str(&value.replace('\n', " "));
            message.push('\n');
        }
        let addr = address(socket)?;
        let send = || -> std::io::Result<()> {
            let sock = UnixDatagram::unbound()?;
            let sent = sock.send_to_addr(message.as_bytes(), &addr)?;
            if sent != message.len() {
                return Err(std::io::Error::other("short datagram"));
            }
            Ok(())
        };
        send().map_err(|source| NotifyError::Send {
            socket: socket.clone(),
            source,
        })
    }
}

/// `NOTIFY_SOCKET` as a socket address: `@name` is the abstract name `name`, `/path` a path.
fn address(socket: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bytes = socket.as_bytes();
    let bad = || NotifyError::BadAddress(socket.to_os_string());
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]).map_err(|_| bad()),
        Some(b'/') => SocketAddr::from_pathname(socket).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_and_stopping_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Some(path.clone().into_os_string()));
        assert!(n.enabled());
        n.ready("serving CRI").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=serving CRI\n");
        n.stopping("shutting\ndown").unwrap();
        assert_eq!(recv(&sock), "STOPPING=1\nSTATUS=shutting down\n");
    }

    #[test]
    fn abstract_names_start_with_at() {
        let name = format!("berth-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(Some(OsString::from(format!("@{name}"))));
        n.ready("up").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=up\n");
    }

    #[test]
    fn unset_or_empty_is_a_no_op_and_bad_addresses_fail() {
        assert!(!Notifier::new(None).enabled());
        Notifier::new(None).ready("x").unwrap();
        Notifier::new(Some(OsString::new())).ready("x").unwrap();
        let err = Notifier::new(Some("relative.sock".into()))
            .ready("x")
            .unwrap_err();
        assert!(matches!(err, NotifyError::BadAddress(_)), "{err}");
        // Nobody listens on this path: the send fails, it does not hang.
        let dir = tempfile::tempdir().unwrap();
        let err = Notifier::new(Some(dir.path().join("none").into_os_string()))
            .ready("x")
            .unwrap_err();
        assert!(matches!(err, NotifyError::Send { .. }), "{err}");
    }
}
