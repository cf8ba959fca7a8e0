//! The exit record: the shim writes it when the container's init has exited and its output is
//! drained; berthd reads it when the shim is gone (after a node reboot or a shim crash), so the
//! container's end survives the shim.
//!
//! `{"exit_code":N,"finished_at":NANOS,"oom_killed":BOOL}`; `oom_killed` may be missing (older
//! shims).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What the shim records when the container's init exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    /// Nanoseconds since the epoch.
    pub finished_at: i64,
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitRecord {
    /// Write the record at `path` (creating its directory) through a temp file, fsync, rename
    /// and a directory fsync: berthd sees the whole record or none.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let body = serde_json::to_vec(self).map_err(io::Error::other)?;
        berth_sys::fs::write_atomic(path, &body)
    }

    /// The record at `path`; None while the container runs (or if the shim died first).
    pub fn read(path: &Path) -> Option<ExitRecord> {
        let text = std::fs::read(path).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_json() {
        let d = std::env::temp_dir().join(format!("berth-proto-exit-{}", std::process::id()));
        let p = d.join("sub/exit");
        let rec = ExitRecord {
            exit_code: 137,
            finished_at: 42,
            oom_killed: true,
        };
        rec.write(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            r#"{"exit_code":137,"finished_at":42,"oom_killed":true}"#
        );
        assert_eq!(ExitRecord::read(&p), Some(rec));
        ExitRecord {
            exit_code: 0,
            finished_at: 43,
            oom_killed: false,
        }
        .write(&p)
        .unwrap();
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains(r#""finished_at":43"#)
        );
        assert_eq!(std::fs::read_dir(d.join("sub")).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn read_back() {
        let d = std::env::temp_dir().join(format!("berth-proto-read-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("exit");
        assert_eq!(ExitRecord::read(&p), None);
        std::fs::write(
            &p,
            br#"{"exit_code":137,"finished_at":5,"oom_killed":true}"#,
        )
        .unwrap();
        assert_eq!(
            ExitRecord::read(&p),
            Some(ExitRecord {
                exit_code: 137,
                finished_at: 5,
                oom_killed: true
            })
        );
        // An older shim's record, without oom_killed.
        std::fs::write(&p, br#"{"exit_code":1,"finished_at":6}"#).unwrap();
        assert_eq!(
            ExitRecord::read(&p),
            Some(ExitRecord {
                exit_code: 1,
                finished_at: 6,
                oom_killed: false
            })
        );
        std::fs::write(&p, b"{").unwrap();
        assert_eq!(ExitRecord::read(&p), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
