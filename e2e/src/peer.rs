//! The peer runtime for side-by-side benchmarks: Debian's containerd with its CRI plugin and
//! runc, on private directories and its own socket, pointed at the test registry over plain
//! HTTP (the setup of ../shared/tools/peer-containerd.sh, kept here so the project has it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running containerd.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    child: Child,
    pub socket: PathBuf,
    /// Its CNI config dir (empty unless the caller writes a network there).
    pub cni_conf: PathBuf,
}

impl Containerd {
    /// Start containerd when it is installed; `sandbox_image` is the pause image pods use.
    pub fn start(registry: &str, sandbox_image: Option<&str>) -> Option<Containerd> {
        let bin = ["/usr/bin/containerd", "/usr/local/bin/containerd"]
            .into_iter()
            .find(|p| Path::new(p).is_file())?;
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-containerd-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let d = dir.path();
        let certs = d.join("certs.d").join(registry);
        std::fs::create_dir_all(&certs).expect("mkdir");
        let cni_conf = d.join("cni");
        std::fs::create_dir_all(&cni_conf).expect("mkdir");
        std::fs::write(
            certs.join("hosts.toml"),
            format!(
                "server = \"http://{registry}\"\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )
        .expect("hosts.toml");
        let socket = d.join("containerd.sock");
        let config = d.join("config.toml");
        let sandbox = sandbox_image
            .map(|s| format!("  sandbox_image = \"{s}\"\n"))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
{sandbox}  # negative oom_score_adj is refused on these machines
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
                root = d.join("root").display(),
                state = d.join("state").display(),
                socket = socket.display(),
                cni = cni_conf.display(),
                certs = d.join("certs.d").display(),
            ),
        )
        .expect("config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("log");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(socket.exists(), "containerd did not start");
        Some(Containerd {
            dir,
            child,
            socket,
            cni_conf,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        // Whatever the benchmark left mounted under containerd's dirs goes before the dirs.
        for m in crate::node::mounts_under(self.dir.path()) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

impl Containerd {
    /// Its registry `config_path` (one `<host>/hosts.toml` per registry).
    pub fn certs_d(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    /// Adds a `hosts.toml` for each of `registries`: the plain-HTTP registry at `mirror_addr`
    /// tried (pull, resolve) before the upstream server, as berth's mirrors in the e2e tests.
    /// containerd reads these files on every pull, so this works after `start`.
    pub fn add_mirror_hosts(&self, registries: &[&str], mirror_addr: &str) -> std::io::Result<()> {
        crate::critest_images::write_mirror_hosts(&self.certs_d(), registries, mirror_addr)
    }

    /// Its containerd-shim-runc-v2 processes (their command line names its socket).
    pub fn shims(&self) -> Vec<i32> {
        crate::node::pids_with_cmdline(&["containerd-shim", &self.socket.display().to_string()])
    }

    /// SIGKILLs what a run left behind: its shims and their children (pause processes,
    /// containers). Call before dropping it when the client may not have cleaned up.
    pub fn kill_shims(&self) {
        let kill = |pid: i32| {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        };
        for pid in self.shims() {
            crate::node::children_of(pid).into_iter().for_each(kill);
            kill(pid);
        }
    }
}

/// kubernetes' pause in a few lines of C: pause(2) until SIGTERM/SIGINT, reap children.
pub const PAUSE_C: &str = r#"
#include <signal.h>
#include <unistd.h>
#include <stdlib.h>
static void done(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; }
int main(void) {
    signal(SIGTERM, done); signal(SIGINT, done); signal(SIGCHLD, reap);
    for (;;) pause();
}
"#;

/// Builds the static pause binary in `dir` with `cc` (a build dependency).
pub fn build_pause(dir: &Path) -> Vec<u8> {
    let src = dir.join("pause.c");
    let bin = dir.join("pause");
    std::fs::write(&src, PAUSE_C).expect("pause.c");
    let st = Command::new("cc")
        .args(["-static", "-Os", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("running cc (apt-get install build-essential)");
    assert!(st.success(), "cc failed");
    std::fs::read(&bin).expect("pause binary")
}

/// Builds the pause image (entrypoint `/pause`) in `dir` and pushes it to `reg` as
/// `pause:latest`; returns its reference, for [`Containerd::start`]'s `sandbox_image`.
pub async fn push_pause_image(reg: &crate::registry::Registry, dir: &Path) -> String {
    use crate::images::{BuiltLayer, Compression, Entry, ImageConfig, ImageSpec, Pusher};
    let layer = BuiltLayer::from_entries(
        &[Entry::file("pause", build_pause(dir), 0o755)],
        Compression::Gzip,
    );
    let cfg = ImageConfig {
        entrypoint: Some(vec!["/pause".into()]),
        cmd: None,
        ..Default::default()
    };
    Pusher::for_registry(reg)
        .push_image("pause:latest", &ImageSpec::new(vec![layer], cfg))
        .await
        .reference()
}
