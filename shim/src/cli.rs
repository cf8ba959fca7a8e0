//! The command lines berthd runs:
//! `berth-shim --id ID --bundle DIR --socket PATH --log PATH --exit-file PATH` (the shim) and
//! `berth-shim exec --bundle DIR --pid PID --error-file PATH -- COMMAND...` (an exec helper).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub const USAGE: &str = "usage: berth-shim --id ID --bundle DIR --socket PATH --log PATH --exit-file PATH [--stdin open|once]";

/// CRI `stdin` / `stdin_once`: the container's stdin stays open for attachers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// Open until the container exits.
    Open,
    /// Closed when the first attacher closes its stdin.
    Once,
}

/// Parsed arguments; every path absolute (the daemon later runs from `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub id: String,
    pub bundle: PathBuf,
    pub socket: PathBuf,
    /// The container's CRI log file.
    pub log: PathBuf,
    pub exit_file: PathBuf,
    pub stdin: Option<StdinMode>,
}

impl Args {
    /// Parse `--flag VALUE` or `--flag=VALUE` pairs (program name excluded), resolving relative
    /// paths against `cwd`.
    pub fn parse<I: IntoIterator<Item = OsString>>(args: I, cwd: &Path) -> Result<Args, String> {
        let (mut id, mut bundle, mut socket, mut log, mut exit_file) =
            (None, None, None, None, None);
        let mut stdin = None;
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let arg = arg
                .into_string()
                .map_err(|a| format!("argument {a:?} is not UTF-8"))?;
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let slot = match flag.as_str() {
                "--id" => &mut id,
                "--bundle" => &mut bundle,
                "--socket" => &mut socket,
                "--log" => &mut log,
                "--exit-file" => &mut exit_file,
                "--stdin" => &mut stdin,
                _ => return Err(format!("unknown argument {arg:?}")),
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value"))?
                    .into_string()
                    .map_err(|v| format!("{flag} value {v:?} is not UTF-8"))?,
            };
            if value.is_empty() {
                return Err(format!("{flag} is empty"));
            }
            *slot = Some(value);
        }
        let need = |v: Option<String>, flag: &str| v.ok_or_else(|| format!("{flag} is required"));
        let path = |v: Option<String>, flag: &str| need(v, flag).map(|p| cwd.join(p));
        Ok(Args {
            id: need(id, "--id")?,
            bundle: path(bundle, "--bundle")?,
            socket: path(socket, "--socket")?,
            log: path(log, "--log")?,
            exit_file: path(exit_file, "--exit-file")?,
            stdin: match stdin.as_deref() {
                None => None,
                Some("open") => Some(StdinMode::Open),
                Some("once") => Some(StdinMode::Once),
                Some(v) => return Err(format!("--stdin {v:?}: expected open or once")),
            },
        })
    }

    /// The directory of the socket, where the shim keeps its own log.
    pub fn state_dir(&self) -> PathBuf {
        self.socket
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"))
    }
}

pub const EXEC_USAGE: &str = "usage: berth-shim exec --bundle DIR --pid PID --error-file PATH [--console-socket PATH [--console-size WxH]] -- COMMAND [ARG...]";

/// `berth-shim exec`: run COMMAND in the running container of bundle DIR whose init is PID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    pub bundle: PathBuf,
    pub pid: i32,
    /// Where to write why the command could not be started (created only then).
    pub error_file: PathBuf,
    /// Run on a pty whose master goes to this socket.
    pub console_socket: Option<PathBuf>,
    /// Initial terminal size (columns, rows).
    pub console_size: Option<(u16, u16)>,
    pub command: Vec<String>,
}

impl ExecArgs {
    /// Parse the arguments after `exec`.
    pub fn parse<I: IntoIterator<Item = OsString>>(
        args: I,
        cwd: &Path,
    ) -> Result<ExecArgs, String> {
        let (mut bundle, mut pid, mut error_file) = (None, None, None);
        let (mut console_socket, mut console_size) = (None, None);
        let mut it = args.into_iter();
        let mut command = Vec::new();
        while let Some(arg) = it.next() {
            let arg = arg
                .into_string()
                .map_err(|a| format!("argument {a:?} is not UTF-8"))?;
            if arg == "--" {
                for a in it.by_ref() {
                    command.push(
                        a.into_string()
                            .map_err(|a| format!("argument {a:?} is not UTF-8"))?,
                    );
                }
                break;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let slot = match flag.as_str() {
                "--bundle" => &mut bundle,
                "--pid" => &mut pid,
                "--error-file" => &mut error_file,
                "--console-socket" => &mut console_socket,
                "--console-size" => &mut console_size,
                _ => return Err(format!("unknown argument {arg:?}")),
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value"))?
                    .into_string()
                    .map_err(|v| format!("{flag} value {v:?} is not UTF-8"))?,
            };
            if value.is_empty() {
                return Err(format!("{flag} is empty"));
            }
            *slot = Some(value);
        }
        let need = |v: Option<String>, flag: &str| v.ok_or_else(|| format!("{flag} is required"));
        let pid = need(pid, "--pid")?;
        let pid = pid
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("--pid {pid:?} is not a pid"))?;
        if command.is_empty() || command[0].is_empty() {
            return Err("no command after --".into());
        }
        let console_size = match console_size {
            None => None,
            Some(s) => {
                let parsed = s
                    .split_once('x')
                    .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
                Some(parsed.ok_or_else(|| format!("--console-size {s:?} is not WIDTHxHEIGHT"))?)
            }
        };
        Ok(ExecArgs {
            bundle: cwd.join(need(bundle, "--bundle")?),
            pid,
            error_file: cwd.join(need(error_file, "--error-file")?),
            console_socket: console_socket.map(|p| cwd.join(p)),
            console_size,
            command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<Args, String> {
        Args::parse(a.iter().map(OsString::from), Path::new("/cwd"))
    }

    #[test]
    fn parses_the_berthd_command_line() {
        let a = parse(&[
            "--id",
            "c1",
            "--bundle",
            "/b",
            "--socket",
            "/run/s/shim.sock",
            "--log=rel/0.log",
            "--exit-file",
            "/run/s/exit",
        ])
        .unwrap();
        assert_eq!(a.id, "c1");
        assert_eq!(a.bundle, PathBuf::from("/b"));
        assert_eq!(a.log, PathBuf::from("/cwd/rel/0.log"));
        assert_eq!(a.state_dir(), PathBuf::from("/run/s"));
    }

    #[test]
    fn refuses_bad_command_lines() {
        assert!(
            parse(&["--id", "c1"])
                .unwrap_err()
                .contains("--bundle is required")
        );
        assert!(parse(&["--id"]).unwrap_err().contains("needs a value"));
        assert!(
            parse(&["--nope", "x"])
                .unwrap_err()
                .contains("unknown argument")
        );
        assert!(parse(&["--id="]).unwrap_err().contains("empty"));
    }

    #[test]
    fn parses_exec_command_lines() {
        let a = ExecArgs::parse(
            [
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
        let bad =
            |v: &[&str]| ExecArgs::parse(v.iter().map(OsString::from), Path::new("/")).unwrap_err();
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
    }
}
