//! Resolve the container's user the way runc and containerd do: names and numbers against the
//! image's own /etc/passwd and /etc/group, read through the rootfs without following any symlink
//! out of it.

use std::io::Read;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// Errors resolving a user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("user {0:?} not found in the image's /etc/passwd")]
    NoSuchUser(String),
    #[error("group {0:?} not found in the image's /etc/group")]
    NoSuchGroup(String),
    #[error("invalid user {0:?}")]
    Invalid(String),
    #[error("reading {path} in the rootfs: {reason}")]
    Read { path: String, reason: String },
}

/// The process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Primary gid first, then group memberships from /etc/group, then requested groups.
    pub additional_gids: Vec<u32>,
    /// The user's home directory in the image's /etc/passwd, if it has an entry with one.
    pub home: Option<String>,
}

/// What was asked for: an image `User` string and/or the CRI security context fields.
#[derive(Debug, Clone, Default)]
pub struct UserRequest {
    /// The image config's `User` (`name`, `uid`, `name:group`, `uid:gid`).
    pub image_user: String,
    pub run_as_user: Option<i64>,
    pub run_as_username: String,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    /// SupplementalGroupsPolicy Strict: the image's /etc/group memberships are not added (only
    /// the primary gid and `supplemental_groups`). Merge (false) adds them, Kubernetes' default.
    pub strict_groups: bool,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Read a file inside `rootfs`, resolving every symlink as if `rootfs` were `/`. Missing → None.
fn read_in_root(rootfs: &Path, rel: &str) -> Result<Option<String>, UserError> {
    let err = |reason: String| UserError::Read {
        path: rel.to_string(),
        reason,
    };
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.to_string()))?;
    // O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; only a regular
    // file is read. Symlinks still resolve, inside the root only, as containerd's securejoin.
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(&root, rel, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let mut f = std::fs::File::from(fd);
    let kind = f.metadata().map_err(|e| err(e.to_string()))?.file_type();
    if !kind.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mut s = String::new();
    // /etc/passwd is small; a huge one is hostile.
    (&mut f)
        .take(4 << 20)
        .read_to_string(&mut s)
        .map_err(|e| err(e.to_string()))?;
    Ok(Some(s))
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map_or_else(String::new, |h| h.to_string()),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn id_from(v: i64, what: &str) -> Result<u32, UserError> {
    u32::try_from(v).map_err(|_| UserError::Invalid(format!("{what} {v}")))
}

/// Resolve the identity for `req` against the image at `rootfs`.
pub fn resolve(rootfs: &Path, req: &UserRequest) -> Result<Identity, UserError> {
    let passwd = read_in_root(rootfs, "etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let groups = read_in_root(rootfs, "etc/group")?
        .map(|t| parse_group(&t))
        .unwrap_or_default();

    // A group needs a user to go with it (containerd: "user group is specified without
    // user"); the image's user does not count.
    if let Some(g) = req.run_as_group
        && req.run_as_user.is_none()
        && req.run_as_username.is_empty()
    {
        return Err(UserError::Invalid(format!(
            "run_as_group {g} is set without run_as_user or run_as_username"
        )));
    }
    // The security context wins over the image; a user name needs the passwd file.
    let (user_part, group_part) = if let Some(uid) = req.run_as_user {
        (id_from(uid, "uid")?.to_string(), None)
    } else if !req.run_as_username.is_empty() {
        (req.run_as_username.clone(), None)
    } else {
        match req.image_user.split_once(':') {
            Some((u, g)) => (u.to_string(), Some(g.to_string())),
            None => (req.image_user.clone(), None),
        }
    };
    let entry = if user_part.is_empty() {
        passwd.iter().find(|p| p.uid == 0)
    } else if let Ok(uid) = user_part.parse::<u32>() {
        passwd.iter().find(|p| p.uid == uid)
    } else {
        Some(
            passwd
                .iter()
                .find(|p| p.name == user_part)
                .ok_or_else(|| UserError::NoSuchUser(user_part.clone()))?,
        )
    };
    let uid = match (user_part.parse::<u32>(), entry) {
        (Ok(uid), _) => uid,
        (Err(_), Some(e)) => e.uid,
        (Err(_), None) => 0,
    };
    let mut gid = entry.map_or(0, |p| p.gid);
    let name = entry.map(|p| p.name.clone());
    let home = entry.map(|p| p.home.clone()).filter(|h| !h.is_empty());
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or(UserError::NoSuchGroup(g))?,
        };
    }
    if let Some(g) = req.run_as_group {
        gid = id_from(g, "gid")?;
    }
    let mut additional = vec![gid];
    if let Some(name) = name.as_ref().filter(|_| !req.strict_groups) {
        for g in &groups {
            if g.members.iter().any(|m| m == name) && !additional.contains(&g.gid) {
                additional.push(g.gid);
            }
        }
    }
    for g in &req.supplemental_groups {
        let g = id_from(*g, "supplemental group")?;
        if !additional.contains(&g) {
            additional.push(g);
        }
    }
    Ok(Identity {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

/// The identity a process really has, from `/proc/<pid>/status`: real uid, real gid and its
/// supplementary groups.
pub fn of_process(pid: u32) -> Option<Identity> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_status(status: &str) -> Option<Identity> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|v| v.parse::<u32>().ok())
            })
    };
    Some(Identity {
        uid: field("Uid:")?.next()?,
        gid: field("Gid:")?.next()?,
        additional_gids: field("Groups:")?.collect(),
        home: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_or_device_for_etc_passwd_is_refused_at_once() {
        // A FIFO nobody writes would block the reader for ever (issue 12, item 5).
        let d = rootfs();
        std::fs::remove_file(d.path().join("etc/passwd")).unwrap();
        nix::unistd::mkfifo(
            &d.path().join("etc/passwd"),
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let root = d.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let req = UserRequest {
                image_user: "app".into(),
                ..Default::default()
            };
            let _ = tx.send(resolve(&root, &req));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO /etc/passwd blocked");
        let e = got.unwrap_err().to_string();
        assert!(
            e.contains("etc/passwd") && e.contains("not a regular file"),
            "{e}"
        );
    }

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n# c\nbroken\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nextra:x:2000:app,other\nwheel:x:10:root\n",
        )
        .unwrap();
        d
    }

    fn req(image_user: &str) -> UserRequest {
        UserRequest {
            image_user: image_user.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_numbers_and_groups() {
        let r = rootfs();
        let id = resolve(r.path(), &req("app")).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 1000));
        assert_eq!(id.additional_gids, vec![1000, 2000]);
        let id = resolve(r.path(), &req("")).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.additional_gids.clone()),
            (0, 0, vec![0, 10])
        );
        let id = resolve(r.path(), &req("1000:extra")).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 2000));
        let id = resolve(r.path(), &req("4242")).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.additional_gids.clone()),
            (4242, 0, vec![0])
        );
        let id = resolve(r.path(), &req("app:7")).unwrap();
        assert_eq!(id.gid, 7);
        assert_eq!(
            resolve(r.path(), &req("nobody")),
            Err(UserError::NoSuchUser("nobody".into()))
        );
        assert_eq!(
            resolve(r.path(), &req("app:nogroup")),
            Err(UserError::NoSuchGroup("nogroup".into()))
        );
    }

    #[test]
    fn identity_from_proc_status() {
        let status = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGid:\t50000\t50000\t50000\t50000\nGroups:\t50000 60000 \nNgid:\t0\n";
        assert_eq!(
            parse_status(status),
            Some(Identity {
                uid: 1000,
                gid: 50000,
                additional_gids: vec![50000, 60000],
                home: None,
            })
        );
        let id = of_process(std::process::id()).unwrap();
        assert_eq!(id.uid, nix::unistd::getuid().as_raw());
        assert_eq!(parse_status("Name: x\n"), None);
    }

    #[test]
    fn home_directories() {
        let r = rootfs();
        let home = |u: &str| resolve(r.path(), &req(u)).unwrap().home;
        assert_eq!(home("app").as_deref(), Some("/home/app"));
        assert_eq!(home("").as_deref(), Some("/root"));
        assert_eq!(home("4242"), None);
    }

    #[test]
    fn strict_policy_leaves_out_the_image_groups() {
        let r = rootfs();
        let mut q = req("app");
        q.supplemental_groups = vec![3000];
        assert_eq!(
            resolve(r.path(), &q).unwrap().additional_gids,
            vec![1000, 2000, 3000]
        );
        q.strict_groups = true;
        assert_eq!(
            resolve(r.path(), &q).unwrap().additional_gids,
            vec![1000, 3000]
        );
    }

    #[test]
    fn security_context_wins() {
        let r = rootfs();
        let id = resolve(
            r.path(),
            &UserRequest {
                image_user: "root".into(),
                run_as_user: Some(1000),
                run_as_group: Some(3000),
                supplemental_groups: vec![4000, 1000],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((id.uid, id.gid), (1000, 3000));
        assert_eq!(id.additional_gids, vec![3000, 2000, 4000, 1000]);
        let id = resolve(
            r.path(),
            &UserRequest {
                run_as_username: "app".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(id.uid, 1000);
        assert!(
            resolve(
                r.path(),
                &UserRequest {
                    run_as_user: Some(-1),
                    ..Default::default()
                }
            )
            .is_err()
        );
        // A group alone is refused, even when the image names a user; with a name it is fine.
        let e = resolve(
            r.path(),
            &UserRequest {
                image_user: "app".into(),
                run_as_group: Some(1002),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("without run_as_user"), "{e}");
        let id = resolve(
            r.path(),
            &UserRequest {
                run_as_username: "app".into(),
                run_as_group: Some(1002),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((id.uid, id.gid), (1000, 1002));
    }

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir(r.path().join("etc")).unwrap();
        // An absolute link must resolve inside the rootfs, never to the host's /etc/passwd.
        std::os::unix::fs::symlink("/elsewhere/passwd", r.path().join("etc/passwd")).unwrap();
        std::fs::create_dir(r.path().join("elsewhere")).unwrap();
        std::fs::write(
            r.path().join("elsewhere/passwd"),
            "svc:x:77:88::/:/bin/sh\n",
        )
        .unwrap();
        let id = resolve(r.path(), &req("svc")).unwrap();
        assert_eq!((id.uid, id.gid), (77, 88));
        std::os::unix::fs::symlink("../../../../../../etc/shadow", r.path().join("etc/group"))
            .unwrap();
        // The escape resolves to <rootfs>/etc/shadow, which does not exist: no groups.
        assert_eq!(
            resolve(r.path(), &req("svc")).unwrap().additional_gids,
            vec![88]
        );
        // No passwd at all: numeric users still work, names do not.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(resolve(empty.path(), &req("5")).unwrap().uid, 5);
        assert!(resolve(empty.path(), &req("app")).is_err());
    }
}
