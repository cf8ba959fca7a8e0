//! Stand-ins for the images critest (cri-tools v1.36.0, `pkg/validate`) uses, built by our own
//! code from Debian's busybox and pushed under critest's upstream repository names (without the
//! registry host) to a local [`Registry`]; berthd reaches them through `hosts.toml` mirrors for
//! `registry.k8s.io`, `k8s.gcr.io` and `gcr.io`, so the images keep their upstream names.
//!
//! Each image holds what the specs (cri-tools `pkg/validate`) run in it, nothing more. Images
//! whose specs cannot pass offline:
//! - `gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2…` ("public image with
//!   digest should be pulled and removed"): critest pins the upstream manifest digest, which no
//!   stand-in can have. We push `test-image-digest:latest` anyway; the pull by digest misses on
//!   the mirror and then fails UNAVAILABLE on the unreachable upstream.
//!
//! The shell: critest's MaskedPaths spec masks `/bin/ls` and expects `/bin/sh -c ls` to fail
//! with exactly `/bin/sh: ls: Permission denied`. Debian's busybox-static runs applets without a
//! PATH lookup (`FEATURE_SH_STANDALONE`), so `ls` would still work; the dynamic Debian `busybox`
//! package (which conflicts with busybox-static, so it is only downloaded, never installed) does
//! look `ls` up in PATH. [`BusyboxSource::from_deb`] takes its binary from the `.deb` and the
//! shared libraries it needs from the host (Debian's libc6); [`BusyboxSource::host_static`] is
//! the fallback (then only the MaskedPaths spec fails). Applets are **hard links** to the one
//! binary, as in the official busybox image, so masking one applet masks only that name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::images::{
    BUSYBOX_BIN, BuiltLayer, Compression, Entry, EntryKind, ImageConfig, ImageSpec, PushedImage,
    Pusher, host_arch,
};
use crate::registry::Registry;

/// Registries critest pulls from; each gets a `hosts.toml` mirror pointing at the local registry.
pub const MIRRORED_REGISTRIES: &[&str] = &["registry.k8s.io", "k8s.gcr.io", "gcr.io"];

/// critest's default container image.
pub const BUSYBOX_IMAGE: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
/// The web server / nginx image (port 80, pid file, "master process" in PID 1's cmdline).
pub const NGINX_IMAGE: &str = "registry.k8s.io/e2e-test-images/nginx:1.14-2";
pub const HTTPD_IMAGE: &str = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4";
pub const NONEWPRIVS_IMAGE: &str = "registry.k8s.io/e2e-test-images/nonewprivs:1.3";
/// critest's `gcr.io/k8s-staging-cri-tools/` prefix.
pub const CRI_TOOLS_REGISTRY: &str = "gcr.io/k8s-staging-cri-tools/";

/// `/etc/passwd` of the official busybox image.
pub const BUSYBOX_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
bin:x:2:2:bin:/bin:/bin/false\n\
sys:x:3:3:sys:/dev:/bin/false\n\
sync:x:4:100:sync:/bin:/bin/sync\n\
mail:x:8:8:mail:/var/spool/mail:/bin/false\n\
www-data:x:33:33:www-data:/var/www:/bin/false\n\
operator:x:37:37:Operator:/var:/bin/false\n\
nobody:x:65534:65534:nobody:/home:/bin/false\n";

/// `/etc/group` of the official busybox image.
pub const BUSYBOX_GROUP: &str = "root:x:0:\n\
daemon:x:1:\n\
bin:x:2:\n\
sys:x:3:\n\
adm:x:4:\n\
tty:x:5:\n\
disk:x:6:\n\
lp:x:7:\n\
mail:x:8:\n\
kmem:x:9:\n\
wheel:x:10:root\n\
cdrom:x:11:\n\
dialout:x:18:\n\
floppy:x:19:\n\
video:x:28:\n\
audio:x:29:\n\
tape:x:32:\n\
www-data:x:33:\n\
operator:x:37:\n\
utmp:x:43:\n\
plugdev:x:46:\n\
staff:x:50:\n\
lock:x:54:\n\
netdev:x:82:\n\
users:x:100:\n\
nogroup:x:65534:\n";

/// `pgrep PATTERN`: busybox has none. Prints the pids whose `/proc/PID/comm` matches the
/// (extended) regex, as procps does, never itself; exit 1 when none matched.
pub const PGREP_SCRIPT: &str = r#"#!/bin/sh
# pgrep stand-in (Debian's busybox has no pgrep): pids whose comm matches the ERE $1.
[ -n "$1" ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
rc=1
for d in /proc/[0-9]*; do
  pid=${d#/proc/}
  [ "$pid" = "$$" ] && continue
  read -r comm < "$d/comm" 2>/dev/null || continue
  if echo "$comm" | grep -qE -- "$1"; then
    echo "$pid"
    rc=0
  fi
done
exit $rc
"#;

/// `ipcs [-m]`: busybox has none. System V shared memory segments from `/proc/sysvipc/shm`,
/// laid out as util-linux prints them (headers without digits, one row per segment).
pub const IPCS_SCRIPT: &str = r#"#!/bin/sh
# ipcs stand-in (Debian's busybox has no ipcs): shared memory segments, util-linux layout.
echo
echo "------ Shared Memory Segments --------"
printf '%-10s %-10s %-10s %-10s %-10s %-10s %-12s\n' key shmid owner perms bytes nattch status
tail -n +2 /proc/sysvipc/shm 2>/dev/null | while read -r key shmid perms size cpid lpid nattch uid rest; do
  printf '0x%08x %-10s %-10s %-10s %-10s %-10s\n' $((key & 0xffffffff)) "$shmid" "$uid" "$perms" "$size" "$nattch"
done
echo
"#;

/// `/usr/sbin/nginx`: re-executes itself so that its cmdline carries `nginx: master process`
/// (the ContainerPID spec greps PID 1's cmdline for it), keeps comm `nginx` (`pidof nginx`),
/// writes `/var/run/nginx.pid` (HostPID spec) and serves `/usr/share/nginx/html` with busybox
/// httpd on the port in `/etc/nginx/listen`. Exits on SIGTERM/SIGINT/SIGQUIT even as PID 1.
pub const NGINX_SCRIPT: &str = r#"#!/bin/sh
# nginx stand-in: busybox httpd serving /usr/share/nginx/html.
[ "$1" = "nginx: master process" ] || exec /usr/sbin/nginx "nginx: master process" "$@"
port=$(cat /etc/nginx/listen 2>/dev/null || echo 80)
mkdir -p /var/run
echo $$ > /var/run/nginx.pid
httpd -f -p "$port" -h /usr/share/nginx/html &
child=$!
trap 'kill $child 2>/dev/null; exit 0' TERM INT QUIT
wait $child
"#;

/// `/usr/local/bin/httpd-foreground`: prints a line naming httpd (the container log spec looks
/// for `httpd`) and serves `/usr/local/apache2/htdocs` on port 80.
pub const HTTPD_SCRIPT: &str = r#"#!/bin/sh
# Apache httpd stand-in: busybox httpd on port 80.
echo "httpd: stand-in for Apache httpd 2.4.39 (busybox httpd), listening on port 80" >&2
httpd -f -p 80 -h /usr/local/apache2/htdocs &
child=$!
trap 'kill $child 2>/dev/null; exit 0' TERM INT QUIT WINCH
wait $child
"#;

/// `/usr/local/bin/nnp`: prints the effective uid as the upstream `nnp` does. A script cannot be
/// setuid, and busybox drops setuid privileges, so the euid comes from a setuid-root copy of
/// coreutils `id` (`id -u` prints the effective uid), which `no_new_privs` neutralizes.
pub const NNP_SCRIPT: &str = r#"#!/bin/sh
echo "Effective uid: $(/usr/local/bin/nnp-euid -u)"
"#;

/// Where the setuid helper of the nonewprivs image comes from (Debian's coreutils).
pub const COREUTILS_ID: &str = "/usr/bin/id";

/// `/pause`: runs until SIGTERM/SIGINT, even as PID 1.
pub const PAUSE_SCRIPT: &str = r#"#!/bin/sh
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"#;

/// The busybox binary the critest images are built from, with its applets and the shared
/// libraries it needs (none for busybox-static).
#[derive(Clone, Debug)]
pub struct BusyboxSource {
    /// Where it came from, for messages.
    pub origin: String,
    pub binary: Vec<u8>,
    /// Applet names (`busybox --list`), without `busybox` itself.
    pub applets: Vec<String>,
    /// Files to copy into the image at the same paths (the dynamic loader and libraries).
    pub libs: Vec<PathBuf>,
    /// `true` when the shell looks commands up in PATH (not busybox-static).
    pub path_lookup: bool,
}

impl BusyboxSource {
    /// The host's busybox-static (`/bin/busybox`).
    pub fn host_static() -> Result<BusyboxSource, String> {
        let binary = std::fs::read(BUSYBOX_BIN)
            .map_err(|e| format!("read {BUSYBOX_BIN} (install busybox-static): {e}"))?;
        Ok(BusyboxSource {
            origin: format!("{BUSYBOX_BIN} (busybox-static)"),
            applets: applet_list(Path::new(BUSYBOX_BIN))?,
            binary,
            libs: Vec::new(),
            path_lookup: false,
        })
    }

    /// `bin/busybox` from a Debian `busybox` package file (unpacked into a temporary directory
    /// with `dpkg-deb -x`), plus the host libraries `ldd` says it needs.
    pub fn from_deb(deb: &Path) -> Result<BusyboxSource, String> {
        let tmp = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(tmp.path()))?;
        let bin = tmp.path().join("bin/busybox");
        let binary = std::fs::read(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
        Ok(BusyboxSource {
            origin: deb.display().to_string(),
            applets: applet_list(&bin)?,
            libs: shared_libraries(&bin)?,
            binary,
            path_lookup: true,
        })
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("running {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{cmd:?}: output is not UTF-8: {e}"))
}

/// `busybox --list`, minus `busybox` and the names the images provide as scripts.
fn applet_list(busybox: &Path) -> Result<Vec<String>, String> {
    let list = run(Command::new(busybox).arg("--list"))?;
    Ok(list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .filter(|a| !["busybox", "pgrep", "ipcs"].contains(a))
        .map(str::to_string)
        .collect())
}

/// Absolute paths of the shared objects `ldd` lists for `binary` (the loader included);
/// empty for a static binary.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("running ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        } else if line.contains("not found") {
            return Err(format!("ldd {}: {line}", binary.display()));
        }
    }
    Ok(libs)
}

/// Entries for host files at the same paths (symlinks followed: the content is copied).
fn host_files(paths: &[PathBuf], mode: u32) -> Result<Vec<Entry>, String> {
    paths
        .iter()
        .map(|p| {
            let data = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(Entry::file(&p.display().to_string(), data, mode))
        })
        .collect()
}

/// Adds a directory entry (0755) for every missing parent of the entries.
fn with_parent_dirs(mut entries: Vec<Entry>) -> Vec<Entry> {
    let have: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| e.archive_name())
        .collect();
    let mut missing = BTreeSet::new();
    for e in &entries {
        let name = e.archive_name();
        let mut parent = Path::new(name.trim_end_matches('/')).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            let dir = format!("{}/", p.display());
            if !have.contains(&dir) {
                missing.insert(dir);
            }
            parent = p.parent();
        }
    }
    entries.extend(missing.iter().map(|d| Entry::dir(d, 0o755)));
    entries
}

/// A layer from `entries` (parents added, sorted by name), except that `first` entries (hard
/// link targets) are written right after their parent directories.
fn layer(entries: Vec<Entry>) -> BuiltLayer {
    let mut entries = with_parent_dirs(entries);
    entries.sort_by_key(|e| {
        // Files before hard links (a link's target must already exist), each group by name.
        let link = matches!(e.kind, EntryKind::Hardlink(_));
        (e.kind != EntryKind::Dir, link, e.archive_name())
    });
    BuiltLayer::from_entries_in_order(&entries, Compression::Gzip)
}

/// The base layer of every critest image: busybox with its applets as hard links in `/bin`,
/// its libraries, `pgrep` and `ipcs` scripts, the official busybox image's users and groups.
pub fn base_layer(src: &BusyboxSource) -> Result<BuiltLayer, String> {
    let mut entries = vec![
        Entry::dir("bin", 0o755),
        Entry::file("bin/busybox", src.binary.clone(), 0o755),
        Entry::file("bin/pgrep", PGREP_SCRIPT, 0o755),
        Entry::file("bin/ipcs", IPCS_SCRIPT, 0o755),
        Entry::dir("dev", 0o755),
        Entry::dir("etc", 0o755),
        Entry::file("etc/passwd", BUSYBOX_PASSWD, 0o644),
        Entry::file("etc/group", BUSYBOX_GROUP, 0o644),
        Entry::dir("home", 0o755),
        Entry::dir("proc", 0o555),
        Entry::dir("root", 0o700),
        Entry::dir("sys", 0o555),
        Entry::dir("tmp", 0o1777),
        Entry::dir("usr", 0o755),
        Entry::dir("usr/bin", 0o755),
        Entry::dir("usr/sbin", 0o755),
        Entry::dir("usr/local", 0o755),
        Entry::dir("usr/local/bin", 0o755),
        Entry::dir("var", 0o755),
        Entry::dir("var/run", 0o755),
        Entry::dir("var/www", 0o755),
    ];
    for a in &src.applets {
        // A hard link entry carries its target's mode (containerd applies it to the inode).
        let mut link = Entry::hardlink(&format!("bin/{a}"), "bin/busybox");
        link.mode = 0o755;
        entries.push(link);
    }
    entries.extend(host_files(&src.libs, 0o755)?);
    Ok(layer(entries))
}

/// One critest image: its upstream reference and what to push.
#[derive(Clone, Debug)]
pub struct CritestImage {
    /// The name critest uses, e.g. `registry.k8s.io/e2e-test-images/busybox:1.29-2`.
    pub upstream: String,
    pub spec: ImageSpec,
}

impl CritestImage {
    /// `repository:tag` in the local registry: the upstream name without its registry host.
    pub fn local_repo_tag(&self) -> String {
        match self.upstream.split_once('/') {
            Some((_, rest)) => rest.to_string(),
            None => self.upstream.clone(),
        }
    }
}

fn cfg(name: &str) -> ImageConfig {
    ImageConfig::default().label("org.berth.e2e.critest-image", name)
}

/// Every image critest v1.36.0 uses on Linux (benchmark mode aside), as stand-ins.
pub fn critest_images(src: &BusyboxSource) -> Result<Vec<CritestImage>, String> {
    let base = base_layer(src)?;
    let mut out = Vec::new();
    let mut add = |upstream: String, layers: Vec<BuiltLayer>, config: ImageConfig| {
        let mut all = vec![base.clone()];
        all.extend(layers);
        out.push(CritestImage {
            upstream,
            spec: ImageSpec::new(all, config),
        });
    };

    // The default image: busybox as is.
    add(
        BUSYBOX_IMAGE.into(),
        vec![],
        cfg("busybox").label("image_version", "1.29"),
    );

    // nginx (port 80) and the host-network nginx (port 12003).
    let nginx_layer = |port: u16| {
        layer(vec![
            Entry::file("usr/sbin/nginx", NGINX_SCRIPT, 0o755),
            Entry::file("etc/nginx/listen", format!("{port}\n"), 0o644),
            Entry::file(
                "usr/share/nginx/html/index.html",
                "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n\
                 <body><h1>Welcome to nginx!</h1></body></html>\n",
                0o644,
            ),
        ])
    };
    let nginx_cfg = |name: &str| {
        let mut c = cfg(name);
        c.cmd = Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]);
        c
    };
    add(
        NGINX_IMAGE.into(),
        vec![nginx_layer(80)],
        nginx_cfg("nginx"),
    );
    add(
        format!("{CRI_TOOLS_REGISTRY}hostnet-nginx-{}:latest", host_arch()),
        vec![nginx_layer(12003)],
        nginx_cfg("hostnet-nginx"),
    );

    // httpd.
    let mut httpd_cfg = cfg("httpd");
    httpd_cfg.cmd = Some(vec!["httpd-foreground".into()]);
    httpd_cfg.working_dir = Some("/usr/local/apache2".into());
    add(
        HTTPD_IMAGE.into(),
        vec![layer(vec![
            Entry::file("usr/local/bin/httpd-foreground", HTTPD_SCRIPT, 0o755),
            Entry::file(
                "usr/local/apache2/htdocs/index.html",
                "<html><body><h1>It works!</h1></body></html>\n",
                0o644,
            ),
        ])],
        httpd_cfg,
    );

    // nonewprivs: a setuid-root `id` and its libraries.
    let id = Path::new(COREUTILS_ID);
    let id_bin = std::fs::read(id).map_err(|e| format!("{COREUTILS_ID}: {e}"))?;
    let mut nnp = vec![
        Entry::file("usr/local/bin/nnp", NNP_SCRIPT, 0o755),
        Entry::file("usr/local/bin/nnp-euid", id_bin, 0o4755),
    ];
    nnp.extend(host_files(&shared_libraries(id)?, 0o755)?);
    let mut nnp_cfg = cfg("nonewprivs");
    nnp_cfg.cmd = Some(vec!["nnp".into()]);
    add(NONEWPRIVS_IMAGE.into(), vec![layer(nnp)], nnp_cfg);

    // SupplementalGroupsPolicy: user 1000 is in group 50000 by the image's /etc/group.
    let mut group_cfg = cfg("test-image-predefined-group");
    group_cfg.user = Some("1000".into());
    add(
        format!("{CRI_TOOLS_REGISTRY}test-image-predefined-group:latest"),
        vec![layer(vec![
            Entry::file(
                "etc/passwd",
                format!(
                    "{BUSYBOX_PASSWD}default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"
                ),
                0o644,
            ),
            Entry::file(
                "etc/group",
                format!(
                    "{BUSYBOX_GROUP}default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"
                ),
                0o644,
            ),
            Entry::dir("home/default-user", 0o755).owner(1000, 1000),
        ])],
        group_cfg,
    );

    // Image users as ImageStatus must report them.
    for (name, user) in [
        ("test-image-user-uid", "1002"),
        ("test-image-user-username", "www-data"),
        ("test-image-user-uid-group", "1003:1004"),
        ("test-image-user-username-group", "www-data:1004"),
    ] {
        let mut c = cfg(name);
        c.user = Some(user.into());
        add(format!("{CRI_TOOLS_REGISTRY}{name}:latest"), vec![], c);
    }

    // busybox plus an empty file named after the image: distinct images.
    let marked = |file: &str| layer(vec![Entry::file(file, Vec::new(), 0o644)]);
    for (repo_tag, file) in [
        ("test-image-1:latest", "test-image-1"),
        ("test-image-2:latest", "test-image-2"),
        ("test-image-3:latest", "test-image-3"),
        ("test-image-latest:latest", "test-image-latest"),
        ("test-image-tag:test", "test-image-tag-test"),
        ("test-image-tag:all", "test-image-tag-all"),
        // Cannot pass: critest pulls it by the upstream digest (see the module docs).
        ("test-image-digest:latest", "test-image-digest"),
        // One image under three tags.
        ("test-image-tags:1", "same-image"),
        ("test-image-tags:2", "same-image"),
        ("test-image-tags:3", "same-image"),
    ] {
        let label = file.trim_start_matches("test-image-");
        add(
            format!("{CRI_TOOLS_REGISTRY}{repo_tag}"),
            vec![marked(file)],
            cfg(&format!("test-image-{label}")),
        );
    }

    // The pause image, the same under both registries.
    let mut pause_cfg = cfg("pause");
    pause_cfg.cmd = None;
    pause_cfg.entrypoint = Some(vec!["/pause".into()]);
    for upstream in ["registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"] {
        add(
            upstream.into(),
            vec![layer(vec![Entry::file("pause", PAUSE_SCRIPT, 0o755)])],
            pause_cfg.clone(),
        );
    }
    Ok(out)
}

/// Pushes every image of [`critest_images`] to `reg` under its local name.
pub async fn push_critest_images(
    reg: &Registry,
    src: &BusyboxSource,
) -> Result<Vec<(String, PushedImage)>, String> {
    let pusher = Pusher::for_registry(reg);
    let mut out = Vec::new();
    for img in critest_images(src)? {
        let pushed = pusher.push_image(&img.local_repo_tag(), &img.spec).await;
        out.push((img.upstream, pushed));
    }
    Ok(out)
}

/// Writes `<certs_d>/<registry>/hosts.toml` for each of `registries` (containerd's layout, which
/// berth reads too), with the plain-HTTP registry at `mirror_addr` as the mirror tried before
/// the upstream server.
pub fn write_mirror_hosts(
    certs_d: &Path,
    registries: &[&str],
    mirror_addr: &str,
) -> std::io::Result<()> {
    for registry in registries {
        let dir = certs_d.join(registry);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"https://{registry}\"\n\n[host.\"http://{mirror_addr}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_drop_the_registry_host() {
        let img = CritestImage {
            upstream: BUSYBOX_IMAGE.into(),
            spec: ImageSpec::new(vec![], ImageConfig::default()),
        };
        assert_eq!(img.local_repo_tag(), "e2e-test-images/busybox:1.29-2");
    }

    #[test]
    fn parents_are_added_once_and_sorted_first() {
        let l = layer(vec![
            Entry::hardlink("bin/a", "bin/z"),
            Entry::file("bin/z", "z", 0o755),
            Entry::file("lib/x86_64/libc.so", "c", 0o755),
        ]);
        let tar = l.tar();
        let mut ar = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "bin/",
                "lib/",
                "lib/x86_64/",
                "bin/z",
                "lib/x86_64/libc.so",
                "bin/a"
            ]
        );
    }
}
