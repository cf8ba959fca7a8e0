//! Pod user namespaces (KEP-127, `NamespaceOption.userns_options`).
//!
//! Mode NODE (or none) keeps the node's user namespace. Mode POD gives the pod one user
//! namespace with kubelet's mapping (one uid and one gid range, container id 0 mapped): it is
//! pinned with the network, IPC and UTS namespaces it owns by `berth-shim pod-userns`, the
//! pod's containers join it after their rootfs is built, and their image layers, volumes with
//! mappings and pod files are idmapped mounts, so the pod's root owns its files without any
//! chown copy. The rules and messages are containerd's.

use std::path::Path;

use berth_proto::args::{IdMap, PodUsernsArgs};
use k8s_cri::v1::{IdMapping, NamespaceMode, NamespaceOption, UserNamespace};

/// One mapping range: container ids `container..container+size` are host ids `host..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl From<IdRange> for IdMap {
    fn from(r: IdRange) -> IdMap {
        IdMap {
            container: r.container,
            host: r.host,
            size: r.size,
        }
    }
}

impl IdRange {
    /// The container id of host id `id`, if mapped.
    pub fn container_of(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.host)?;
        (offset < self.size).then(|| self.container + offset)
    }

    /// The host id of container id `id`, if mapped.
    pub fn host_of(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container)?;
        (offset < self.size).then(|| self.host + offset)
    }
}

/// A pod's user namespace mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodUserns {
    pub uid: IdRange,
    pub gid: IdRange,
}

/// The pod's user namespace mapping for mode POD, None for the node's; the request's
/// mistakes as containerd words them.
pub fn from_options(opts: &NamespaceOption) -> Result<Option<PodUserns>, String> {
    let Some(u) = opts.userns_options.as_ref() else {
        return Ok(None);
    };
    from_userns(u)
}

fn from_userns(u: &UserNamespace) -> Result<Option<PodUserns>, String> {
    let mode = NamespaceMode::try_from(u.mode)
        .map_err(|_| format!("unknown user namespace mode {}", u.mode))?;
    match mode {
        NamespaceMode::Node => {
            if !u.uids.is_empty() || !u.gids.is_empty() {
                return Err(format!(
                    "can't use user namespace mode \"NODE\" with mappings. Got {} UID mappings and {} GID mappings",
                    u.uids.len(),
                    u.gids.len()
                ));
            }
            Ok(None)
        }
        NamespaceMode::Pod => {
            if u.uids.is_empty() || u.gids.is_empty() {
                return Err(
                    "can't use user namespace mode \"POD\" without UID and GID mappings".into(),
                );
            }
            Ok(Some(PodUserns {
                uid: one_range(&u.uids, "uid")?,
                gid: one_range(&u.gids, "gid")?,
            }))
        }
        other => Err(format!(
            "unsupported user namespace mode: {:?}",
            other.as_str_name()
        )),
    }
}

fn one_range(ids: &[IdMapping], what: &str) -> Result<IdRange, String> {
    let [m] = ids else {
        return Err(format!(
            "only one mapping line supported, got {} {what} mapping lines",
            ids.len()
        ));
    };
    if m.length < 1 {
        return Err(format!("invalid {what} mapping length: {}", m.length));
    }
    if m.container_id != 0 {
        return Err(format!(
            "the {what} mapping must map container ID 0 (it maps {}..{})",
            m.container_id,
            u64::from(m.container_id) + u64::from(m.length)
        ));
    }
    if u64::from(m.host_id) + u64::from(m.length) > u64::from(u32::MAX) {
        return Err(format!("the {what} mapping overflows the id space"));
    }
    Ok(IdRange {
        container: m.container_id,
        host: m.host_id,
        size: m.length,
    })
}

/// Pin the pod's user namespace at `dir/user` and, owned by it, each of `namespaces` (`net`,
/// `ipc`, `uts`) at `dir/<name>`, through `berth-shim pod-userns`.
pub async fn pin(
    shim: &Path,
    dir: &Path,
    maps: &PodUserns,
    namespaces: &[&str],
    hostname: Option<&str>,
) -> std::io::Result<()> {
    let args = PodUsernsArgs {
        uid_map: maps.uid.into(),
        gid_map: maps.gid.into(),
        dir: dir.to_path_buf(),
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        hostname: hostname.map(str::to_string),
    };
    let out = tokio::process::Command::new(shim)
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "berth-shim pod-userns: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether user-namespaced pods work on this node, tried the way containers use it: a user
/// namespace pinned by `berth-shim pod-userns`, an idmapped read-only clone of a directory
/// under `root` (where the image layers live) as an overlay's lower layer, and the overlay's
/// file seen with the mapped owner. Everything it makes is removed.
pub async fn probe(shim: &Path, root: &Path, state: &Path) -> Result<(), String> {
    let base = root.join(format!("userns-probe-{}", std::process::id()));
    let pins = state.join(format!("userns-probe-{}", std::process::id()));
    let result = probe_in(shim, &base, &pins).await;
    let _ = nix::mount::umount2(&base.join("merged"), nix::mount::MntFlags::MNT_DETACH);
    let _ = nix::mount::umount2(&base.join("layers"), nix::mount::MntFlags::MNT_DETACH);
    let _ = super::namespaces::unpin(&pins.join("user"));
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_dir_all(&pins);
    result
}

async fn probe_in(shim: &Path, base: &Path, pins: &Path) -> Result<(), String> {
    use berth_sys::mount_api;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let err = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    for d in ["lower/layer", "upper", "work", "merged", "layers"] {
        std::fs::create_dir_all(base.join(d)).map_err(err("creating the probe directories"))?;
    }
    std::fs::write(base.join("lower/layer/file"), b"").map_err(err("writing the probe file"))?;
    std::fs::create_dir_all(pins).map_err(err("creating the probe pin directory"))?;
    let range = IdRange {
        container: 0,
        host: 1_000_000_000,
        size: 65536,
    };
    pin(
        shim,
        pins,
        &PodUserns {
            uid: range,
            gid: range,
        },
        &[],
        None,
    )
    .await
    .map_err(err("creating a user namespace"))?;
    let userns =
        std::fs::File::open(pins.join("user")).map_err(err("opening the user namespace"))?;
    let tree = mount_api::open_tree_clone(&base.join("lower"), true).map_err(err("open_tree"))?;
    mount_api::idmap(
        tree.as_fd(),
        userns.as_fd(),
        true,
        mount_api::mount_attr::RDONLY,
    )
    .map_err(err("idmapping a directory of the root filesystem"))?;
    mount_api::move_mount(tree.as_fd(), &base.join("layers")).map_err(err("move_mount"))?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.join("layers/layer").display(),
        base.join("upper").display(),
        base.join("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &base.join("merged"),
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| format!("an overlay over an idmapped layer: {e}"))?;
    let uid = std::fs::metadata(base.join("merged/file"))
        .map_err(err("reading through the overlay"))?
        .uid();
    if uid != range.host {
        return Err(format!(
            "the idmapped layer shows uid {uid}, not {}",
            range.host
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn userns(
        mode: NamespaceMode,
        uids: &[(u32, u32, u32)],
        gids: &[(u32, u32, u32)],
    ) -> NamespaceOption {
        let m = |v: &[(u32, u32, u32)]| {
            v.iter()
                .map(|&(c, h, l)| IdMapping {
                    container_id: c,
                    host_id: h,
                    length: l,
                })
                .collect()
        };
        NamespaceOption {
            userns_options: Some(UserNamespace {
                mode: mode as i32,
                uids: m(uids),
                gids: m(gids),
            }),
            ..Default::default()
        }
    }

    /// critest's UserNamespaces specs and containerd's rules.
    #[test]
    fn validation() {
        assert_eq!(from_options(&NamespaceOption::default()), Ok(None));
        assert_eq!(
            from_options(&userns(NamespaceMode::Node, &[], &[])),
            Ok(None)
        );
        let ok = from_options(&userns(
            NamespaceMode::Pod,
            &[(0, 1000, 100000)],
            &[(0, 2000, 100000)],
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            ok.uid,
            IdRange {
                container: 0,
                host: 1000,
                size: 100000
            }
        );
        assert_eq!(ok.gid.host, 2000);
        for (bad, words) in [
            (
                userns(NamespaceMode::Node, &[(0, 1, 1)], &[(0, 1, 1)]),
                "with mappings",
            ),
            (
                userns(NamespaceMode::Pod, &[], &[]),
                "without UID and GID mappings",
            ),
            (
                userns(
                    NamespaceMode::Pod,
                    &[(0, 1000, 100000), (0, 2000, 100000)],
                    &[(0, 1000, 100000), (0, 2000, 100000)],
                ),
                "only one mapping line",
            ),
            (
                userns(
                    NamespaceMode::Pod,
                    &[(1, 1000, 100000)],
                    &[(1, 1000, 100000)],
                ),
                "container ID 0",
            ),
            (
                userns(NamespaceMode::Pod, &[(0, 1000, 0)], &[(0, 1000, 1)]),
                "length",
            ),
            (
                userns(NamespaceMode::Pod, &[(0, u32::MAX, 2)], &[(0, 1, 1)]),
                "overflows",
            ),
            (
                userns(NamespaceMode::Container, &[], &[]),
                "unsupported user namespace mode",
            ),
            (
                userns(NamespaceMode::Target, &[], &[]),
                "unsupported user namespace mode",
            ),
        ] {
            let e = from_options(&bad).unwrap_err();
            assert!(e.contains(words), "{e}");
        }
    }

    #[test]
    fn host_ids() {
        let r = IdRange {
            container: 0,
            host: 100000,
            size: 65536,
        };
        assert_eq!(r.host_of(0), Some(100000));
        assert_eq!(r.host_of(65535), Some(165535));
        assert_eq!(r.host_of(65536), None);
        assert_eq!(r.container_of(100005), Some(5));
        assert_eq!(r.container_of(99999), None);
        assert_eq!(IdMap::from(r).to_string(), "0:100000:65536");
    }
}
