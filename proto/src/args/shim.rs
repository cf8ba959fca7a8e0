//! `berth-shim [--stdin open|once] --id ID --bundle DIR --socket PATH --log PATH --exit-file
//! PATH`: the per-container shim.

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
    ],
    may_be_empty: &[],
    command: false,
};

impl ShimArgs {
    pub const USAGE: &str = "usage: berth-shim --id ID --bundle DIR --socket PATH --log PATH --exit-file PATH [--stdin open|once]";

    /// The argv after the program name.
    pub fn to_args(&self) -> Vec<OsString> {
        Argv::new(Mode::Shim)
            .flag_if("--stdin", self.stdin.map(StdinMode::word))
            .flag("--id", &self.id)
            .flag("--bundle", &self.bundle)
            .flag("--socket", &self.socket)
            .flag("--log", &self.log)
            .flag("--exit-file", &self.exit_file)
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
        };
        for stdin in [None, Some(StdinMode::Open), Some(StdinMode::Once)] {
            a.stdin = stdin;
            assert_eq!(ShimArgs::parse(a.to_args(), Path::new("/x")).unwrap(), a);
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
