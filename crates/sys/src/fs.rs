//! State files are replaced, never rewritten in place: a crash leaves the old file or the new
//! one, not half of either.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Write `data` to `path` through a temp file in the same directory: write, fsync, rename,
/// fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// The (UTF-8) names in `dir`; none when it does not exist.
pub fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Remove the temporary files [`write_atomic`] left in `dir` when its writer died between
/// create and rename (`.<name>.tmp`). Only for a directory no one writes to meanwhile (start-up).
/// Returns how many went.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let name = name.as_encoded_bytes();
            name.starts_with(b".") && name.ends_with(b".tmp") && name.len() > 5
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files() {
        let d = std::env::temp_dir().join(format!("berth-sys-fs-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        assert!(write_atomic(&d.join("missing/x"), b"").is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_temps_of_a_dead_writer_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(&dir.path().join("a.json"), b"{}").unwrap();
        std::fs::write(dir.path().join(".b.json.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join(".tmp"), b"not ours").unwrap();
        assert_eq!(remove_stale_temps(dir.path()), 1);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".tmp", "a.json"]);
    }
}
