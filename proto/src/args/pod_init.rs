//! `berth-shim pod-init --pin PATH`: start PID 1 of a pod's shared PID namespace, pinned at
//! PATH.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::flags::{Argv, Flags, Spec};
use super::mode::{ArgsError, Mode};

/// The pod init's command line; once parsed, the pin is absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInitArgs {
    /// Where the PID namespace is bind-mounted (a file created there).
    pub pin: PathBuf,
}

const SPEC: Spec = Spec {
    mode: Mode::PodInit,
    flags: &["--pin"],
    may_be_empty: &[],
    command: false,
};

impl PodInitArgs {
    pub const USAGE: &str = "usage: berth-shim pod-init --pin ABSOLUTE-PATH";

    /// The argv after the program name, `pod-init` first.
    pub fn to_args(&self) -> Vec<OsString> {
        Argv::new(Mode::PodInit).flag("--pin", &self.pin).done()
    }

    /// Parse the argv after the program name (`pod-init` first), resolving a relative pin
    /// against `cwd`.
    pub fn parse<I: IntoIterator<Item = OsString>>(
        args: I,
        cwd: &Path,
    ) -> Result<PodInitArgs, ArgsError> {
        let mut f = Flags::parse(args, &SPEC)?;
        Ok(PodInitArgs {
            pin: f.path("--pin", cwd)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let a = PodInitArgs {
            pin: "/run/berth/pods/p1/ns/pid".into(),
        };
        assert_eq!(
            a.to_args(),
            ["pod-init", "--pin", "/run/berth/pods/p1/ns/pid"].map(OsString::from)
        );
        assert_eq!(PodInitArgs::parse(a.to_args(), Path::new("/")).unwrap(), a);
        let parse = |v: &[&str]| PodInitArgs::parse(v.iter().map(OsString::from), Path::new("/c"));
        assert_eq!(
            parse(&["pod-init", "--pin", "p"]).unwrap().pin,
            PathBuf::from("/c/p")
        );
        assert_eq!(parse(&["pod-init"]), Err(ArgsError::Missing("--pin")));
        assert!(parse(&["pod-init", "--pin", "/p", "x"]).is_err());
        assert_eq!(parse(&["--pin", "/p"]), Err(ArgsError::Mode("pod-init")));
    }
}
