//! How `berth-shim exec` says its command could not start: it exits with a shell's status for a
//! command that cannot run ([`NOT_FOUND`] 127, [`NOT_EXECUTABLE`] 126: the client's to fix; any
//! other status is berth's own failure) and writes the reason, as text, to its `--error-file`,
//! which exists only then. The container's init reports the same two statuses.

use std::path::Path;

/// No such command (not in `$PATH`, no such file).
pub const NOT_FOUND: i32 = 127;
/// The command exists but cannot be executed (permissions, format).
pub const NOT_EXECUTABLE: i32 = 126;

/// Whether an exit status says the command itself cannot run (rather than berth failing).
pub fn is_command_error(status: Option<i32>) -> bool {
    matches!(status, Some(NOT_FOUND | NOT_EXECUTABLE))
}

/// Write the reason (the helper does this only when the command did not start).
pub fn write(path: &Path, message: &str) -> std::io::Result<()> {
    std::fs::write(path, message.as_bytes())
}

/// The reason, if the helper left one.
pub fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_statuses() {
        let d = std::env::temp_dir().join(format!("berth-proto-exec-error-{}", std::process::id()));
        assert_eq!(read(&d), None);
        write(&d, "exec: \"nope\": executable file not found in $PATH").unwrap();
        assert_eq!(
            read(&d).as_deref(),
            Some("exec: \"nope\": executable file not found in $PATH")
        );
        std::fs::remove_file(&d).unwrap();
        assert!(is_command_error(Some(127)) && is_command_error(Some(126)));
        assert!(!is_command_error(Some(1)) && !is_command_error(None));
    }
}
