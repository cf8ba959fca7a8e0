//! Where a container's shim keeps its files, known to berthd without asking the shim (which may
//! have outlived the berthd that started it).

use std::path::{Path, PathBuf};

/// Where one container's shim keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimPaths {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub exit_file: PathBuf,
    /// The daemonized shim's pid, written before it builds the container: what berthd kills
    /// when the shim never finishes its handshake.
    pub pid_file: PathBuf,
}

/// The pid file of the shim serving `socket` (beside it).
pub fn pid_file_beside(socket: &Path) -> PathBuf {
    socket.with_file_name("shim.pid")
}

impl ShimPaths {
    /// `<state>/shims/<id prefix>/{shim.sock,exit}`: a 16-character prefix keeps the socket
    /// path well under the 108 bytes a unix socket address allows.
    pub fn new(state_dir: &Path, id: &str) -> ShimPaths {
        let dir = state_dir.join("shims").join(&id[..id.len().min(16)]);
        ShimPaths {
            socket: dir.join("shim.sock"),
            exit_file: dir.join("exit"),
            pid_file: dir.join("shim.pid"),
            dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_prefix_of_the_id() {
        let p = ShimPaths::new(Path::new("/run/berth"), &"ab".repeat(32));
        assert_eq!(p.dir, Path::new("/run/berth/shims/abababababababab"));
        assert_eq!(p.socket, p.dir.join("shim.sock"));
        assert_eq!(p.exit_file, p.dir.join("exit"));
        assert_eq!(p.pid_file, pid_file_beside(&p.socket));
        assert_eq!(
            ShimPaths::new(Path::new("/s"), "c1").socket,
            Path::new("/s/shims/c1/shim.sock")
        );
    }
}
