//! The one flag reader and writer behind every mode's command line: `--flag VALUE` and
//! `--flag=VALUE` pairs after the mode word, then, where a mode takes one, `--` and a command.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::mode::{ArgsError, Mode};

/// What a mode's command line may hold.
pub(super) struct Spec {
    pub mode: Mode,
    pub flags: &'static [&'static str],
    /// Flags whose value may be the empty string.
    pub may_be_empty: &'static [&'static str],
    /// Whether `--` and a command may follow the flags.
    pub command: bool,
}

/// The values read: the last of a repeated flag wins.
pub(super) struct Flags {
    values: Vec<(&'static str, Option<String>)>,
    /// The words after `--`.
    pub command: Vec<String>,
}

fn utf8(arg: OsString) -> Result<String, ArgsError> {
    arg.into_string().map_err(ArgsError::NotUtf8)
}

impl Flags {
    /// Read `args` (the program name excluded, the mode word included) as `spec` describes.
    pub fn parse<I: IntoIterator<Item = OsString>>(
        args: I,
        spec: &Spec,
    ) -> Result<Flags, ArgsError> {
        let mut it = args.into_iter();
        if let Some(word) = spec.mode.word()
            && it.next().as_deref() != Some(OsStr::new(word))
        {
            return Err(ArgsError::Mode(word));
        }
        let mut flags = Flags {
            values: spec.flags.iter().map(|f| (*f, None)).collect(),
            command: Vec::new(),
        };
        while let Some(arg) = it.next() {
            let arg = utf8(arg)?;
            if spec.command && arg == "--" {
                flags.command = it.by_ref().map(utf8).collect::<Result<_, _>>()?;
                break;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let Some((flag, slot)) = flags.values.iter_mut().find(|(f, _)| *f == name) else {
                return Err(ArgsError::Unknown(arg));
            };
            let flag = *flag;
            let value = match inline {
                Some(v) => v,
                None => utf8(it.next().ok_or(ArgsError::NoValue(flag))?)?,
            };
            if value.is_empty() && !spec.may_be_empty.contains(&flag) {
                return Err(ArgsError::Empty(flag));
            }
            *slot = Some(value);
        }
        Ok(flags)
    }

    /// The value of `flag`, if given.
    pub fn take(&mut self, flag: &'static str) -> Option<String> {
        self.values
            .iter_mut()
            .find(|(f, _)| *f == flag)
            .and_then(|(_, v)| v.take())
    }

    /// The value of `flag`, which must be given.
    pub fn required(&mut self, flag: &'static str) -> Result<String, ArgsError> {
        self.take(flag).ok_or(ArgsError::Missing(flag))
    }

    /// The path `flag` names, resolved against `cwd`, which must be given.
    pub fn path(&mut self, flag: &'static str, cwd: &Path) -> Result<PathBuf, ArgsError> {
        self.required(flag).map(|p| cwd.join(p))
    }
}

/// A command line being written, mode word first.
pub(super) struct Argv(Vec<OsString>);

impl Argv {
    pub fn new(mode: Mode) -> Argv {
        Argv(mode.word().map(OsString::from).into_iter().collect())
    }

    /// `flag VALUE`.
    pub fn flag(mut self, flag: &str, value: impl AsRef<OsStr>) -> Argv {
        self.0.push(flag.into());
        self.0.push(value.as_ref().to_owned());
        self
    }

    /// `flag VALUE` when there is a value.
    pub fn flag_if<V: AsRef<OsStr>>(self, flag: &str, value: Option<V>) -> Argv {
        match value {
            Some(v) => self.flag(flag, v),
            None => self,
        }
    }

    /// `-- COMMAND...`, last.
    pub fn command(mut self, words: &[String]) -> Vec<OsString> {
        self.0.push("--".into());
        self.0.extend(words.iter().map(OsString::from));
        self.0
    }

    pub fn done(self) -> Vec<OsString> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        mode: Mode::Exec,
        flags: &["--a", "--b"],
        may_be_empty: &["--b"],
        command: true,
    };

    fn parse(a: &[&str]) -> Result<Flags, ArgsError> {
        Flags::parse(a.iter().map(OsString::from), &SPEC)
    }

    #[test]
    fn reads_pairs_and_a_command() {
        let mut f = parse(&["exec", "--a", "1", "--a=2", "--b=", "--", "x", "--a"]).unwrap();
        assert_eq!(f.take("--a").as_deref(), Some("2"));
        assert_eq!(f.take("--b").as_deref(), Some(""));
        assert_eq!(f.command, vec!["x", "--a"]);
        assert_eq!(f.required("--a"), Err(ArgsError::Missing("--a")));
    }

    #[test]
    fn refuses() {
        let err = |a: &[&str]| parse(a).err().unwrap();
        assert_eq!(err(&["--a", "1"]), ArgsError::Mode("exec"));
        assert_eq!(err(&["exec", "--c", "1"]), ArgsError::Unknown("--c".into()));
        assert_eq!(err(&["exec", "--a"]), ArgsError::NoValue("--a"));
        assert_eq!(err(&["exec", "--a", ""]), ArgsError::Empty("--a"));
        let bad = std::os::unix::ffi::OsStringExt::from_vec(vec![0xff]);
        assert!(matches!(
            Flags::parse(["exec".into(), "--a".into(), bad], &SPEC),
            Err(ArgsError::NotUtf8(_))
        ));
        let no_command = Spec {
            command: false,
            ..SPEC
        };
        assert!(matches!(
            Flags::parse(["exec", "--"].map(OsString::from), &no_command),
            Err(ArgsError::Unknown(a)) if a == "--"
        ));
    }

    #[test]
    fn writes() {
        let argv = Argv::new(Mode::Exec)
            .flag("--a", "1")
            .flag_if("--b", None::<&str>)
            .command(&["x".into()]);
        assert_eq!(argv, ["exec", "--a", "1", "--", "x"].map(OsString::from));
        assert_eq!(
            Argv::new(Mode::Shim).flag_if("--b", Some("")).done(),
            ["--b", ""].map(OsString::from)
        );
    }
}
