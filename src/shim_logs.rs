//! The persistent copies of shims' own logs, `<root>/shim-logs/<container-id>.log` (and the
//! `.log.1` the shim rotated out, see `berth_shim::log`), kept after their container is removed
//! for post-mortems. berthd bounds them: the logs of removed containers beyond
//! `[shim_logs] keep_removed` logs or `max_removed_bytes` bytes go, the least recently written
//! first, at start-up and whenever a container is removed. A live container's log is never
//! pruned.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::ShimLogsConfig;
use crate::error::{IoContext, IoError};

/// The shim logs directory of a berth root.
pub struct ShimLogs {
    dir: PathBuf,
    keep_removed: usize,
    max_removed_bytes: u64,
}

/// One container's log files, as found.
#[derive(Debug)]
struct Entry {
    id: String,
    bytes: u64,
    /// The last write to any of its files.
    modified: SystemTime,
}

const SUFFIX: &str = ".log";
const ROTATED_SUFFIX: &str = ".log.1";

impl ShimLogs {
    /// `<root>/shim-logs`, created (0700) if missing.
    pub fn open(root: &Path, config: &ShimLogsConfig) -> Result<ShimLogs, IoError> {
        let dir = root.join("shim-logs");
        std::fs::create_dir_all(&dir).context(format!("creating {}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .context(format!("chmod {}", dir.display()))?;
        Ok(ShimLogs {
            dir,
            keep_removed: config.keep_removed,
            max_removed_bytes: config.max_removed_bytes,
        })
    }

    /// The log the shim of container `id` writes.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    /// Mark the log of `id` as just written (its container is being removed): logs are pruned
    /// in the order their containers went, not the order their shims last spoke.
    pub fn touch(&self, id: &str) {
        let now = SystemTime::now();
        for p in [
            self.path(id),
            self.dir.join(format!("{id}{ROTATED_SUFFIX}")),
        ] {
            if let Ok(f) = std::fs::File::options().append(true).open(&p) {
                let _ = f.set_modified(now);
            }
        }
    }

    /// The logs found, one entry per container id.
    fn entries(&self) -> Vec<Entry> {
        let mut by_id: std::collections::BTreeMap<String, Entry> = Default::default();
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(id) = name
                .strip_suffix(ROTATED_SUFFIX)
                .or_else(|| name.strip_suffix(SUFFIX))
            else {
                continue;
            };
            let Ok(meta) = e.metadata() else { continue };
            // Container ids are ASCII (hex); anything else here is not a shim's.
            let id_like = !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !meta.is_file() || !id_like {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let entry = by_id.entry(id.to_string()).or_insert(Entry {
                id: id.to_string(),
                bytes: 0,
                modified,
            });
            entry.bytes += meta.len();
            entry.modified = entry.modified.max(modified);
        }
        by_id.into_values().collect()
    }

    /// Remove the logs of removed containers (`live` says which ids are not) beyond the bounds,
    /// the least recently written first. Returns the ids whose logs were removed.
    pub fn prune(&self, live: impl Fn(&str) -> bool) -> Vec<String> {
        let mut removed: Vec<Entry> = self
            .entries()
            .into_iter()
            .filter(|e| !live(&e.id))
            .collect();
        // Newest first: the ones kept.
        removed.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.id.cmp(&b.id)));
        let mut kept_bytes = 0u64;
        let mut pruned = Vec::new();
        let mut full = false;
        for (i, e) in removed.into_iter().enumerate() {
            // Once one is pruned, every older one goes too.
            full = full
                || i >= self.keep_removed
                || kept_bytes.saturating_add(e.bytes) > self.max_removed_bytes;
            if !full {
                kept_bytes += e.bytes;
                continue;
            }
            for suffix in [SUFFIX, ROTATED_SUFFIX] {
                let p = self.dir.join(format!("{}{suffix}", e.id));
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        tracing::warn!(path = %p.display(), error = %err, "pruning a shim log");
                    }
                }
            }
            pruned.push(e.id);
        }
        pruned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn logs(dir: &Path, keep_removed: usize, max_removed_bytes: u64) -> ShimLogs {
        ShimLogs::open(
            dir,
            &ShimLogsConfig {
                keep_removed,
                max_removed_bytes,
            },
        )
        .unwrap()
    }

    /// A log of `bytes` bytes for `id`, last written `age` seconds before `t0`.
    fn write(l: &ShimLogs, name: &str, bytes: usize, t0: SystemTime, age: u64) {
        let p = l.dir.join(name);
        std::fs::write(&p, vec![b'x'; bytes]).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(t0 - Duration::from_secs(age)).unwrap();
    }

    fn names(l: &ShimLogs) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&l.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_the_newest_removed_within_count_and_never_a_live_one() {
        let root = tempfile::tempdir().unwrap();
        let l = logs(root.path(), 2, u64::MAX);
        assert_eq!(l.path("abc"), root.path().join("shim-logs/abc.log"));
        let t0 = SystemTime::now();
        write(&l, "live.log", 10, t0, 500);
        write(&l, "old.log", 10, t0, 400);
        write(&l, "old.log.1", 10, t0, 450);
        write(&l, "mid.log", 10, t0, 300);
        // The rotated file is the newer here: it counts for its container.
        write(&l, "new.log", 10, t0, 250);
        write(&l, "new.log.1", 10, t0, 10);
        write(&l, "notalog.txt", 10, t0, 1000);
        write(&l, "été.log", 10, t0, 1000);
        let pruned = l.prune(|id| id == "live");
        assert_eq!(pruned, ["old"]);
        assert_eq!(
            names(&l),
            [
                "live.log",
                "mid.log",
                "new.log",
                "new.log.1",
                "notalog.txt",
                "été.log"
            ]
        );
        // Nothing more to do.
        assert!(l.prune(|id| id == "live").is_empty());
        // mid's container is removed now: it is the newest, new goes.
        l.touch("mid");
        assert_eq!(
            logs(root.path(), 1, u64::MAX).prune(|id| id == "live"),
            ["new"]
        );
        // keep_removed = 0: only live logs stay.
        let none = logs(root.path(), 0, u64::MAX);
        assert_eq!(none.prune(|id| id == "live"), ["mid"]);
        assert_eq!(names(&l), ["live.log", "notalog.txt", "été.log"]);
    }

    #[test]
    fn keeps_the_newest_removed_within_bytes() {
        let root = tempfile::tempdir().unwrap();
        let l = logs(root.path(), 100, 250);
        let t0 = SystemTime::now();
        write(&l, "a.log", 100, t0, 1);
        write(&l, "b.log", 100, t0, 2);
        write(&l, "b.log.1", 40, t0, 3);
        write(&l, "c.log", 100, t0, 3);
        write(&l, "d.log", 5, t0, 9);
        write(&l, "live.log", 5000, t0, 4);
        // a (100) fits, b (140) fits: 240; c would make 340; d, older, goes with it.
        let mut pruned = l.prune(|id| id == "live");
        pruned.sort();
        assert_eq!(pruned, ["c", "d"]);
        assert_eq!(names(&l), ["a.log", "b.log", "b.log.1", "live.log"]);
    }
}
