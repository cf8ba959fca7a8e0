//! `berth-shim exec --bundle DIR --pid PID --error-file PATH [--console-socket PATH
//! [--console-size WxH]] -- COMMAND [ARG...]`: run COMMAND in the running container of bundle
//! DIR whose init is PID.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::flags::{Argv, Flags, Spec};
use super::mode::{ArgsError, Mode};

/// The exec helper's command line; once parsed, every path is absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    pub bundle: PathBuf,
    /// The container init's host pid (at most `i32::MAX` once parsed).
    pub pid: u32,
    /// Where to write why the command could not be started (created only then).
    pub error_file: PathBuf,
    /// Run on a pty whose master goes to this socket.
    pub console_socket: Option<PathBuf>,
    /// Initial terminal size (columns, rows).
    pub console_size: Option<(u16, u16)>,
    pub command: Vec<String>,
}

const SPEC: Spec = Spec {
    mode: Mode::Exec,
    flags: &[
        "--bundle",
        "--pid",
        "--error-file",
        "--console-socket",
        "--console-size",
    ],
    may_be_empty: &[],
    command: true,
};

impl ExecArgs {
    pub const USAGE: &str = "usage: berth-shim exec --bundle DIR --pid PID --error-file PATH [--console-socket PATH [--console-size WxH]] -- COMMAND [ARG...]";

    /// The argv after the program name, `exec` first.
    pub fn to_args(&self) -> Vec<OsString> {
        Argv::new(Mode::Exec)
            .flag("--bundle", &self.bundle)
            .flag("--pid", self.pid.to_string())
            .flag("--error-file", &self.error_file)
            .flag_if("--console-socket", self.console_socket.as_ref())
            .flag_if(
                "--console-size",
                self.console_size.map(|(w, h)| format!("{w}x{h}")),
            )
            .command(&self.command)
    }

    /// Parse the argv after the program name (`exec` first), resolving relative paths against
    /// `cwd`.
    pub fn parse<I: IntoIterator<Item = OsString>>(
        args: I,
        cwd: &Path,
    ) -> Result<ExecArgs, ArgsError> {
        let mut f = Flags::parse(args, &SPEC)?;
        let pid = f.required("--pid")?;
        let pid = pid
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(ArgsError::Invalid {
                flag: "--pid",
                value: pid,
                expected: "a pid",
            })?;
        if f.command.first().is_none_or(String::is_empty) {
            return Err(ArgsError::NoCommand);
        }
        let console_size = match f.take("--console-size") {
            None => None,
            Some(s) => Some(
                s.split_once('x')
                    .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                    .ok_or(ArgsError::Invalid {
                        flag: "--console-size",
                        value: s,
                        expected: "WIDTHxHEIGHT",
                    })?,
            ),
        };
        Ok(ExecArgs {
            bundle: f.path("--bundle", cwd)?,
            pid,
            error_file: f.path("--error-file", cwd)?,
            console_socket: f.take("--console-socket").map(|p| cwd.join(p)),
            console_size,
            command: std::mem::take(&mut f.command),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exec_command_lines() {
        let a = ExecArgs::parse(
            [
                "exec",
                "--bundle",
                "/b",
                "--pid=42",
                "--error-file",
                "e",
                "--",
                "sh",
                "-c",
                "--x",
            ]
            .iter()
            .map(OsString::from),
            Path::new("/cwd"),
        )
        .unwrap();
        assert_eq!(a.pid, 42);
        assert_eq!(a.error_file, PathBuf::from("/cwd/e"));
        assert_eq!(a.command, vec!["sh", "-c", "--x"]);
        let bad = |v: &[&str]| {
            ExecArgs::parse(
                std::iter::once("exec")
                    .chain(v.iter().copied())
                    .map(OsString::from),
                Path::new("/"),
            )
            .unwrap_err()
            .to_string()
        };
        assert!(
            bad(&[
                "--bundle",
                "/b",
                "--pid",
                "0",
                "--error-file",
                "e",
                "--",
                "x"
            ])
            .contains("not a pid")
        );
        assert!(bad(&["--bundle", "/b", "--pid", "1", "--error-file", "e"]).contains("no command"));
        assert!(
            bad(&[
                "--bundle",
                "/b",
                "--pid",
                "4294967295",
                "--error-file",
                "e",
                "--",
                "x"
            ])
            .contains("not a pid")
        );
        assert!(
            bad(&[
                "--bundle",
                "/b",
                "--pid",
                "1",
                "--error-file",
                "e",
                "--console-size",
                "80",
                "--",
                "x"
            ])
            .contains("WIDTHxHEIGHT")
        );
    }

    #[test]
    fn round_trips() {
        let mut a = ExecArgs {
            bundle: "/run/berth/bundles/c1".into(),
            pid: 4242,
            error_file: "/run/berth/exec/ab.err".into(),
            console_socket: None,
            console_size: None,
            command: vec!["sh".into(), "-c".into(), "--x".into(), String::new()],
        };
        // The argv berthd has always written for ExecSync.
        assert_eq!(
            a.to_args(),
            [
                "exec",
                "--bundle",
                "/run/berth/bundles/c1",
                "--pid",
                "4242",
                "--error-file",
                "/run/berth/exec/ab.err",
                "--",
                "sh",
                "-c",
                "--x",
                ""
            ]
            .map(OsString::from)
        );
        assert_eq!(ExecArgs::parse(a.to_args(), Path::new("/")).unwrap(), a);
        a.console_socket = Some("/run/berth/exec/ab.sock".into());
        a.console_size = Some((80, 24));
        assert_eq!(ExecArgs::parse(a.to_args(), Path::new("/")).unwrap(), a);
    }
}
