//! `berth-shim [--stdin open|once] --id ID --bundle DIR --socket PATH --log PATH --exit-file
//! PATH [--log-format text|json] [--shim-log PATH]`: the per-container shim.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::flags::{Argv, Flags, Spec};
use super::mode::{ArgsError, Mode};

/// CRI `stdin` / `stdin_once`: the container's stdin stays open for attachers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// Open until the container exits.
    Open,
    /// Closed when the first attacher closes its stdin.
    Once,
}

impl StdinMode {
    fn word(self) -> &'static str {
        match self {
            StdinMode::Open => "open",
            StdinMode::Once => "once",
        }
    }
}

/// How the shim writes its own log lines: berthd's `log_format`, so that the shim's lines read
/// as berthd's in the stream they share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing's human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

impl LogFormat {
    pub fn word(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The shim's command line; once parsed, every path is absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub socket: PathBuf,
    /// The container's CRI log file.
    pub log: PathBuf,
    pub exit_file: PathBuf,
    pub stdin: Option<StdinMode>,
    /// The format of the shim's own log lines (text when not given).
    pub log_format: Option<LogFormat>,
    /// The persistent copy of the shim's own log (rotated by the shim; it outlives the
    /// container). Without it the shim keeps its log only in the stream it inherited on stderr.
    pub shim_log: Option<PathBuf>,
}

const SPEC: Spec = Spec {
    mode: Mode::Shim,
    flags: &[
        "--id",
        "--bundle",
        "--socket",
        "--log",
        "--exit-file",
        "--stdin",
        "--log-format",
        "--shim-log",
    ],
    may_be_empty: &[],
    command: false,
};

impl ShimArgs {
    pub const USAGE: &str = "usage: berth-shim --id ID --bundle DIR --socket PATH --log PATH --exit-file PATH [--stdin open|once] [--log-format text|json] [--shim-log PATH]";

    /// The argv after the program name.
    pub fn to_args(&self) -> Vec<OsString> {
        Argv::new(Mode::Shim)
            .flag_if("--stdin", self.stdin.map(StdinMode::word))
            .flag("--id", &self.id)
            .flag("--bundle", &self.bundle)
            .flag("--socket", &self.socket)
            .flag("--log", &self.log)
            .flag("--exit-file", &self.exit_file)
            .flag_if("--log-format", self.log_format.map(LogFormat::word))
            .flag_if("--shim-log", self.shim_log.as_ref())
            .done()
    }

    /// Parse the argv after the program name, resolving relative paths against `cwd`.
    pub fn parse<I: IntoIterator<Item = OsString>>(
        args: I,
        cwd: &Path,
    ) -> Result<ShimArgs, ArgsError> {
        let mut f = Flags::parse(args, &SPEC)?;
        Ok(ShimArgs {
            id: f.required("--id")?,
            bundle: f.path("--bundle", cwd)?,
            socket: f.path("--socket", cwd)?,
            log: f.path("--log", cwd)?,
            exit_file: f.path("--exit-file", cwd)?,
            stdin: match f.take("--stdin").as_deref() {
                None => None,
                Some("open") => Some(StdinMode::Open),
                Some("once") => Some(StdinMode::Once),
                Some(v) => {
                    return Err(ArgsError::Invalid {
                        flag: "--stdin",
                        value: v.to_string(),
                        expected: "open or once",
                    });
                }
            },
            log_format: match f.take("--log-format").as_deref() {
                None => None,
                Some("text") => Some(LogFormat::Text),
                Some("json") => Some(LogFormat::Json),
                Some(v) => {
                    return Err(ArgsError::Invalid {
                        flag: "--log-format",
                        value: v.to_string(),
                        expected: "text or json",
                    });
                }
            },
            shim_log: f.take("--shim-log").map(|p| cwd.join(p)),
        })
    }

    /// The directory of the socket (the shim's pid file is there).
    pub fn state_dir(&self) -> PathBuf {
        self.socket
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<ShimArgs, String> {
        ShimArgs::parse(a.iter().map(OsString::from), Path::new("/cwd")).map_err(|e| e.to_string())
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
        let mut full = vec![
            "--id", "c", "--bundle", "/b", "--socket", "/s", "--log", "/l",
        ];
        full.extend(["--exit-file", "/e", "--stdin", "always"]);
        assert!(parse(&full).unwrap_err().contains("open or once"));
        let mut full = vec![
            "--id", "c", "--bundle", "/b", "--socket", "/s", "--log", "/l",
        ];
        full.extend(["--exit-file", "/e", "--log-format", "xml"]);
        assert!(parse(&full).unwrap_err().contains("text or json"));
    }

    #[test]
    fn round_trips() {
        let mut a = ShimArgs {
            id: "c1".into(),
            bundle: "/b".into(),
            socket: "/run/s/shim.sock".into(),
            log: "/var/log/pods/0.log".into(),
            exit_file: "/run/s/exit".into(),
            stdin: None,
            log_format: None,
            shim_log: None,
        };
        for stdin in [None, Some(StdinMode::Open), Some(StdinMode::Once)] {
            a.stdin = stdin;
            assert_eq!(ShimArgs::parse(a.to_args(), Path::new("/x")).unwrap(), a);
        }
        let mut logged = a.clone();
        logged.shim_log = Some("/var/lib/berth/shim-logs/c1.log".into());
        for format in [None, Some(LogFormat::Text), Some(LogFormat::Json)] {
            logged.log_format = format;
            assert_eq!(
                ShimArgs::parse(logged.to_args(), Path::new("/x")).unwrap(),
                logged
            );
        }
        // The argv berthd has always written (a shim of any version reads it).
        a.stdin = Some(StdinMode::Once);
        assert_eq!(
            a.to_args(),
            [
                "--stdin",
                "once",
                "--id",
                "c1",
                "--bundle",
                "/b",
                "--socket",
                "/run/s/shim.sock",
                "--log",
                "/var/log/pods/0.log",
                "--exit-file",
                "/run/s/exit"
            ]
            .map(OsString::from)
        );
    }
}
