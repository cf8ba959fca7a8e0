//! `berth-shim pod-userns --uid-map C:H:L --gid-map C:H:L --dir DIR [--ns net,ipc,uts]
//! [--hostname NAME]`: pin a pod's user namespace at DIR/user and, owned by it, each of the
//! listed namespaces at DIR/<name>.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use super::flags::{Argv, Flags, Spec};
use super::mode::{ArgsError, Mode};

/// One `containerID:hostID:size` line of a uid or gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl IdMap {
    /// `C:H:L` with L > 0.
    pub fn parse(s: &str) -> Option<IdMap> {
        let mut it = s.split(':').map(|v| v.parse::<u32>().ok());
        let m = IdMap {
            container: it.next()??,
            host: it.next()??,
            size: it.next()??,
        };
        (it.next().is_none() && m.size > 0).then_some(m)
    }
}

impl fmt::Display for IdMap {
    /// `C:H:L`, as the command line carries it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.container, self.host, self.size)
    }
}

/// The pod user namespace helper's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsernsArgs {
    pub uid_map: IdMap,
    pub gid_map: IdMap,
    /// Where the namespaces are pinned (absolute once parsed).
    pub dir: PathBuf,
    /// Which of `net`, `ipc`, `uts` to create in the user namespace.
    pub namespaces: Vec<String>,
    pub hostname: Option<String>,
}

/// The namespaces a pod's user namespace may own.
const NAMESPACES: [&str; 3] = ["net", "ipc", "uts"];

const SPEC: Spec = Spec {
    mode: Mode::PodUserns,
    flags: &["--uid-map", "--gid-map", "--dir", "--ns", "--hostname"],
    may_be_empty: &["--ns", "--hostname"],
    command: false,
};

impl PodUsernsArgs {
    pub const USAGE: &str = "usage: berth-shim pod-userns --uid-map C:H:L --gid-map C:H:L --dir DIR \
                             [--ns net,ipc,uts] [--hostname NAME]";

    /// The argv after the program name, `pod-userns` first.
    pub fn to_args(&self) -> Vec<OsString> {
        Argv::new(Mode::PodUserns)
            .flag("--uid-map", self.uid_map.to_string())
            .flag("--gid-map", self.gid_map.to_string())
            .flag("--dir", &self.dir)
            .flag("--ns", self.namespaces.join(","))
            .flag_if("--hostname", self.hostname.as_ref())
            .done()
    }

    /// Parse the argv after the program name (`pod-userns` first), resolving a relative
    /// directory against `cwd`.
    pub fn parse<I: IntoIterator<Item = OsString>>(
        args: I,
        cwd: &Path,
    ) -> Result<PodUsernsArgs, ArgsError> {
        let mut f = Flags::parse(args, &SPEC)?;
        let mut map = |flag: &'static str| {
            let v = f.required(flag)?;
            IdMap::parse(&v).ok_or(ArgsError::Invalid {
                flag,
                value: v,
                expected: "C:H:L with L > 0",
            })
        };
        let (uid_map, gid_map) = (map("--uid-map")?, map("--gid-map")?);
        let namespaces: Vec<String> = f
            .take("--ns")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = namespaces
            .iter()
            .find(|n| !NAMESPACES.contains(&n.as_str()))
        {
            return Err(ArgsError::Invalid {
                flag: "--ns",
                value: bad.clone(),
                expected: "one of net, ipc, uts",
            });
        }
        Ok(PodUsernsArgs {
            uid_map,
            gid_map,
            dir: f.path("--dir", cwd)?,
            namespaces,
            hostname: f.take("--hostname"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a>(a: impl IntoIterator<Item = &'a str>) -> Result<PodUsernsArgs, ArgsError> {
        PodUsernsArgs::parse(
            std::iter::once("pod-userns").chain(a).map(OsString::from),
            Path::new("/"),
        )
    }

    #[test]
    fn arguments() {
        let a = parse([
            "--uid-map",
            "0:100000:65536",
            "--gid-map",
            "0:200000:65536",
            "--dir",
            "/d",
            "--ns",
            "net,uts",
            "--hostname",
            "h",
        ])
        .unwrap();
        assert_eq!(
            a.uid_map,
            IdMap {
                container: 0,
                host: 100000,
                size: 65536
            }
        );
        assert_eq!(a.gid_map.host, 200000);
        assert_eq!(a.namespaces, vec!["net", "uts"]);
        assert_eq!(a.hostname.as_deref(), Some("h"));
        for bad in [
            vec!["--uid-map", "0:1", "--gid-map", "0:1:1", "--dir", "/d"],
            vec!["--uid-map", "0:1:0", "--gid-map", "0:1:1", "--dir", "/d"],
            vec!["--uid-map", "0:1:1", "--gid-map", "0:1:1"],
            vec![
                "--uid-map",
                "0:1:1",
                "--gid-map",
                "0:1:1",
                "--dir",
                "/d",
                "--ns",
                "pid",
            ],
        ] {
            assert!(parse(bad).is_err());
        }
    }

    #[test]
    fn round_trips() {
        let mut a = PodUsernsArgs {
            uid_map: IdMap {
                container: 0,
                host: 100000,
                size: 65536,
            },
            gid_map: IdMap {
                container: 0,
                host: 200000,
                size: 65536,
            },
            dir: "/run/berth/pods/p1/ns".into(),
            namespaces: vec!["net".into(), "ipc".into(), "uts".into()],
            hostname: Some("web-0".into()),
        };
        assert_eq!(
            a.to_args(),
            [
                "pod-userns",
                "--uid-map",
                "0:100000:65536",
                "--gid-map",
                "0:200000:65536",
                "--dir",
                "/run/berth/pods/p1/ns",
                "--ns",
                "net,ipc,uts",
                "--hostname",
                "web-0"
            ]
            .map(OsString::from)
        );
        assert_eq!(
            PodUsernsArgs::parse(a.to_args(), Path::new("/")).unwrap(),
            a
        );
        // No namespaces besides the user namespace: `--ns ""`, as the node probe runs it.
        a.namespaces.clear();
        a.hostname = None;
        assert!(a.to_args().contains(&OsString::new()));
        assert_eq!(
            PodUsernsArgs::parse(a.to_args(), Path::new("/")).unwrap(),
            a
        );
    }
}
