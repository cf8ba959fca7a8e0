//! A real berthd process for a test, with its own root, state, socket and config, and a real
//! tonic CRI client over its unix socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// The berthd binary: $BERTHD, or the one cargo built next to this test binary.
pub fn berthd_binary() -> PathBuf {
    if let Ok(p) = std::env::var("BERTHD") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>/berthd
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let p = profile_dir.join("berthd");
    assert!(
        p.is_file(),
        "{} is missing: build it first (`cargo build --bins`; `make test` does)",
        p.display()
    );
    p
}

/// The `berth` CLI built next to berthd.
pub fn berth_cli_binary() -> PathBuf {
    berthd_binary().with_file_name("berth")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// A gRPC channel to a CRI server's unix socket (berthd or a peer runtime).
pub async fn cri_channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
}

/// One berthd under test.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub certs_d: PathBuf,
    pub cni_conf: PathBuf,
    pub metrics: String,
    pub log: PathBuf,
    /// Extra environment for berthd.
    pub env: Vec<(String, String)>,
    /// The systemd unit running berthd, when systemd does (its journal is berthd's log).
    pub journal_unit: Option<String>,
    child: Option<Child>,
}

impl Node {
    /// Write a config and start berthd; returns once it answers Version.
    pub async fn start() -> Node {
        Node::start_with_env(&[]).await
    }

    /// As `start`, with extra environment variables for berthd.
    pub async fn start_with_env(env: &[(&str, &str)]) -> Node {
        Node::start_configured(env, "").await
    }

    /// As `start`, with `metrics_keys` (TOML lines) added to the config's `[metrics]` table.
    pub async fn start_with_metrics_config(metrics_keys: &str) -> Node {
        Node::start_configured(&[], metrics_keys).await
    }

    /// As `start`, with `tables` (whole TOML tables, e.g. `[cgroup]\ndriver = "systemd"`)
    /// appended to the config.
    pub async fn start_with_config(tables: &str) -> Node {
        Node::start_configured(&[], &format!("\n{tables}")).await
    }

    async fn start_configured(env: &[(&str, &str)], metrics_keys: &str) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let state = dir.path().join("state");
        let config = dir.path().join("berth.toml");
        let mut node = Node::configure(dir, state, config, metrics_keys);
        node.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        node.spawn().await;
        node
    }

    /// A node's directories under `dir` (root, certs.d, net.d, cni-bin), its state in `state`
    /// (the socket there) and its config written to `config`, without starting berthd: for a
    /// berthd that something else runs (see [`Node::under_systemd`]), or `spawn` to start it.
    pub fn configure(
        dir: tempfile::TempDir,
        state: PathBuf,
        config: PathBuf,
        metrics_keys: &str,
    ) -> Node {
        let root = dir.path().join("root");
        let socket = state.join("berth.sock");
        let certs_d = dir.path().join("certs.d");
        let cni_conf = dir.path().join("net.d");
        std::fs::create_dir_all(&certs_d).expect("mkdir certs.d");
        std::fs::create_dir_all(&cni_conf).expect("mkdir net.d");
        // Debian's plugins, then the node's own (tests put plugins of their own there).
        let cni_bin = dir.path().join("cni-bin");
        std::fs::create_dir_all(&cni_bin).expect("mkdir cni-bin");
        let metrics = format!("127.0.0.1:{}", free_port());
        std::fs::write(
            &config,
            format!(
                "root = {root:?}\nstate = {state:?}\naddress = {socket:?}\nlog_level = \"debug\"\n\
                 [registry]\nconfig_path = {certs_d:?}\n\
                 [cni]\nconf_dir = {cni_conf:?}\nbin_dirs = [\"/usr/lib/cni\", {cni_bin:?}]\n\
                 [metrics]\naddress = {metrics:?}\n{metrics_keys}\n"
            ),
        )
        .expect("writing berth.toml");
        let log = dir.path().join("berthd.log");
        Node {
            dir,
            root,
            state,
            socket,
            config,
            certs_d,
            cni_conf,
            metrics,
            log,
            env: Vec::new(),
            journal_unit: None,
            child: None,
        }
    }

    /// A node whose berthd the systemd unit `unit` runs (the test starts and stops it with
    /// systemctl); its log is the unit's journal.
    pub fn under_systemd(mut self, unit: &str) -> Node {
        self.journal_unit = Some(unit.to_string());
        self
    }

    /// Start berthd again with the same config (after stop or kill).
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "berthd is already running");
        let child = self.command().spawn().expect("spawning berthd");
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// The berthd command line for this node (a test may run it by hand).
    pub fn command(&self) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening berthd.log");
        let mut cmd = Command::new(berthd_binary());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        cmd
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("berthd exited with {status}:\n{}", self.log_text());
            }
            if let Ok(mut rt) = self.runtime_once().await
                && rt
                    .version(k8s_cri::v1::VersionRequest::default())
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not become ready:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// berthd's log so far.
    pub fn log_text(&self) -> String {
        if let Some(unit) = &self.journal_unit {
            return Command::new("journalctl")
                .args(["--no-pager", "-o", "cat", "-u", unit])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status of berthd if it has exited (None while it runs, or when it was stopped
    /// by the test).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The berthd process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("berthd running").id()
    }

    async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        cri_channel(&self.socket).await
    }

    async fn runtime_once(&self) -> Result<RuntimeServiceClient<Channel>, tonic::transport::Error> {
        Ok(RuntimeServiceClient::new(self.channel().await?))
    }

    /// A CRI RuntimeService client.
    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        self.runtime_once().await.expect("connecting to berthd")
    }

    /// A CRI ImageService client.
    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await.expect("connecting to berthd"))
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("berthd running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        child.wait().expect("waiting for berthd")
    }

    /// SIGKILL and wait.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("berthd running");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Pids of berth-shim processes whose command line names a path under `dir`.
pub fn shims_of(dir: &Path) -> Vec<i32> {
    pids_with_cmdline(&["berth-shim", &dir.display().to_string()])
}

/// Pids whose command line contains every one of `needles`.
pub fn pids_with_cmdline(needles: &[&str]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                needles.iter().all(|n| c.contains(n))
            })
        })
        .collect()
}

/// Pids whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|st| {
                st.lines()
                    .find_map(|l| l.strip_prefix("PPid:"))
                    .and_then(|v| v.trim().parse::<i32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// Mount points at or under `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = berth_sys::mountinfo::read_self()
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Shims are detached from berthd by design; a failed test must not leave them (or the
        // containers they run, which would outlive them) running.
        let kill = |pid: i32| {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        };
        let mut killed = Vec::new();
        for pid in shims_of(self.dir.path()) {
            let children = children_of(pid);
            children.iter().copied().for_each(kill);
            kill(pid);
            killed.push(pid);
            killed.extend(children);
        }
        // A failed test must not leave pinned namespaces or overlays mounted on the host.
        for m in mounts_under(self.dir.path()) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        // Nor berth's cgroups, which a SIGKILLed berthd cannot remove as it does when it stops.
        let deadline = Instant::now() + Duration::from_secs(2);
        while killed
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        remove_empty_berth_cgroups();
    }
}

/// Remove berth's top-level cgroups (`berth-shims` with its empty helper leaves, the cgroupfs
/// driver's default parent `berth`) in every hierarchy where nothing uses them any more, as
/// berthd does when it stops. `rmdir` refuses a cgroup with processes or children, so those of
/// other nodes still running are left alone; berth recreates a parent that goes from under it.
pub fn remove_empty_berth_cgroups() {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        hierarchies.extend(entries.flatten().map(|e| e.path()));
    }
    for h in hierarchies {
        let helpers = h.join("berth-shims");
        if let Ok(leaves) = std::fs::read_dir(&helpers) {
            for leaf in leaves.flatten() {
                if leaf.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(leaf.path());
                }
            }
        }
        let _ = std::fs::remove_dir(helpers);
        let _ = std::fs::remove_dir(h.join("berth"));
    }
}
