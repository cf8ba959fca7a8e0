//! Benchmark (not a test): container start-up latency and per-pod memory, berth against
//! containerd 1.6 + runc (when `containerd` is installed), same CRI client, same registry, same
//! image, same machine, one runtime after the other.
//!
//!   cargo bench -p berth-e2e --bench containers          (part of make bench)
//!   env: BENCH_COUNTS ("1,10,100") containers running while measuring,
//!        BENCH_SAMPLES (10) measured containers at each level
//!
//! Every pod uses the node's network (no CNI) and holds one `sleep 3600` busybox container.
//! At each level N the runtime first gets N such pods running; then the per-pod memory of the
//! runtime's own processes is read from /proc/<pid>/smaps_rollup (berth: its berth-shim per
//! container; containerd: containerd-shim-runc-v2 plus the pause process of each pod); then
//! BENCH_SAMPLES more pods are started one at a time, each timed as RunPodSandbox and as
//! CreateContainer+StartContainer, and torn down again, so each sample is the (N+1)th.
//!
//! containerd needs a pause image: a static C program calling pause(2) is compiled here (with
//! busybox `sleep` as the fallback when there is no C compiler). berth needs none.
//! Runs as root inside its own network namespace; pods go under the cgroup parent
//! `/berth-bench`, removed from every hierarchy at the end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_e2e::images::{
    BuiltLayer, Compression, Entry, ImageConfig, ImageSpec as TestImage, Pusher, busybox_layer,
};
use berth_e2e::netns;
use berth_e2e::node::{Node, cri_channel, mounts_under};
use berth_e2e::peer::Containerd;
use berth_e2e::registry::{Registry, RegistryOpts, install_crypto_provider};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::Channel;

const CGROUP_PARENT: &str = "berth-bench";

const PAUSE_C: &str = r#"#include <signal.h>
#include <unistd.h>
static void done(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; }
int main(void) {
    signal(SIGTERM, done); signal(SIGINT, done); signal(SIGCHLD, reap);
    for (;;) pause();
}
"#;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn counts() -> Vec<usize> {
    let mut v: Vec<usize> = std::env::var("BENCH_COUNTS")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Nearest-rank percentile.
fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut v = v.to_vec();
    v.sort();
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The pause image's one file: a static pause(2) loop, or busybox when there is no compiler.
fn pause_layer(work: &Path) -> (BuiltLayer, Vec<String>, &'static str) {
    let src = work.join("pause.c");
    let bin = work.join("pause");
    std::fs::write(&src, PAUSE_C).expect("pause.c");
    let built = std::process::Command::new("cc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    if built {
        let data = std::fs::read(&bin).expect("pause binary");
        let layer =
            BuiltLayer::from_entries(&[Entry::file("pause", data, 0o755)], Compression::Gzip);
        (layer, vec!["/pause".into()], "static C pause(2)")
    } else {
        (
            busybox_layer().clone(),
            vec!["/bin/sleep".into(), "2147483647".into()],
            "busybox sleep (no C compiler)",
        )
    }
}

fn pod_config(name: &str, logs: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        // The node's hostname: runc refuses a hostname without a UTS namespace of its own.
        hostname: String::new(),
        log_directory: logs.join(name).display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/{CGROUP_PARENT}"),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "sleep".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "sleep.log".into(),
        ..Default::default()
    }
}

// ---- /proc ----

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

fn ppid(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// (RSS, PSS) in KiB from smaps_rollup.
fn rss_pss(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Berth,
    Containerd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Berth => "berth",
            Kind::Containerd => "containerd",
        }
    }
}

/// The runtime's per-pod processes: berth's shims (command line naming `marker`, berthd's
/// directory), or containerd's shims (naming `marker`, its directory) and their pause children.
fn pod_processes(kind: Kind, marker: &str) -> Vec<i32> {
    let pids = all_pids();
    let shims: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|&p| {
            let c = cmdline(p);
            let bin = c.split(' ').next().unwrap_or("");
            c.contains(marker)
                && match kind {
                    Kind::Berth => bin.ends_with("berth-shim") && !c.contains(" exec "),
                    Kind::Containerd => bin.ends_with("containerd-shim-runc-v2"),
                }
        })
        .collect();
    let mut out = shims.clone();
    if kind == Kind::Containerd {
        out.extend(
            pids.iter()
                .copied()
                // The pod's own container runs `sleep 3600`; the other child is the pause process.
                .filter(|&p| shims.contains(&ppid(p)) && !cmdline(p).starts_with("sleep 3600")),
        );
    }
    out
}

fn daemon_pid(kind: Kind, marker: &str) -> Option<i32> {
    all_pids().into_iter().find(|&p| {
        let c = cmdline(p);
        let bin = c.split(' ').next().unwrap_or("");
        c.contains(marker)
            && match kind {
                Kind::Berth => bin.ends_with("/berthd"),
                Kind::Containerd => bin.ends_with("/containerd"),
            }
    })
}

// ---- measurement ----

#[derive(Default)]
struct Level {
    running: usize,
    run_pod: Vec<Duration>,
    create: Vec<Duration>,
    start: Vec<Duration>,
    create_start: Vec<Duration>,
    /// Per pod, KiB.
    rss: f64,
    pss: f64,
    /// Processes counted per pod (berth: 1 shim; containerd: shim + pause).
    procs: usize,
    daemon_rss: u64,
}

struct Run {
    levels: Vec<Level>,
    /// Every RunPodSandbox, the ramp-ups included.
    run_pod_all: Vec<Duration>,
    leftovers: Vec<String>,
}

struct Pod {
    id: String,
    container: String,
}

struct Bench {
    kind: Kind,
    rt: RuntimeServiceClient<Channel>,
    busybox: String,
    logs: PathBuf,
    seq: usize,
}

impl Bench {
    /// RunPodSandbox, then CreateContainer + StartContainer; returns the pod and the timings
    /// (run, create, start).
    async fn pod(&mut self) -> (Pod, Duration, Duration, Duration) {
        let name = format!("p{}", self.seq);
        self.seq += 1;
        let cfg = pod_config(&name, &self.logs);
        std::fs::create_dir_all(&cfg.log_directory).expect("pod log dir");
        let kind = self.kind.name();
        let t = Instant::now();
        let id = self
            .rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: RunPodSandbox {name}: {e:?}"))
            .into_inner()
            .pod_sandbox_id;
        let run = t.elapsed();
        let t = Instant::now();
        let container = self
            .rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: id.clone(),
                config: Some(container_config(&self.busybox)),
                sandbox_config: Some(cfg),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: CreateContainer in {name}: {e:?}"))
            .into_inner()
            .container_id;
        let create = t.elapsed();
        let t = Instant::now();
        self.rt
            .start_container(StartContainerRequest {
                container_id: container.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: StartContainer in {name}: {e:?}"));
        (Pod { id, container }, run, create, t.elapsed())
    }

    async fn remove(&mut self, pod: Pod) {
        let kind = self.kind.name();
        self.rt
            .stop_container(StopContainerRequest {
                container_id: pod.container,
                timeout: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: StopContainer: {e:?}"));
        self.rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: StopPodSandbox: {e:?}"));
        self.rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.id,
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: RemovePodSandbox: {e:?}"));
    }
}

async fn measure(
    kind: Kind,
    socket: &Path,
    marker: &str,
    images: &[&str],
    work: &Path,
    counts: &[usize],
    samples: usize,
) -> Run {
    let ch = cri_channel(socket).await.expect("connect");
    let mut img = ImageServiceClient::new(ch.clone());
    for image in images {
        img.pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}: pull {image}: {e:?}", kind.name()));
    }
    let mut b = Bench {
        kind,
        rt: RuntimeServiceClient::new(ch),
        busybox: images[0].to_string(),
        logs: work.join(format!("logs-{}", kind.name())),
        seq: 0,
    };
    // One warm-up pod (first-use costs: snapshot, cgroup parent, binaries paged in).
    let (warm, ..) = b.pod().await;
    b.remove(warm).await;

    let mut run = Run {
        levels: Vec::new(),
        run_pod_all: Vec::new(),
        leftovers: Vec::new(),
    };
    let mut pods = Vec::new();
    for &n in counts {
        while pods.len() < n {
            let (p, r, ..) = b.pod().await;
            run.run_pod_all.push(r);
            pods.push(p);
        }
        // Let the shims finish starting up before reading their memory.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let procs = pod_processes(kind, marker);
        let (rss, pss) = procs.iter().fold((0, 0), |(r, p), &pid| {
            let (a, b) = rss_pss(pid);
            (r + a, p + b)
        });
        let mut level = Level {
            running: n,
            rss: rss as f64 / n as f64,
            pss: pss as f64 / n as f64,
            procs: procs.len(),
            daemon_rss: daemon_pid(kind, marker).map_or(0, |p| rss_pss(p).0),
            ..Default::default()
        };
        for _ in 0..samples {
            let (p, r, c, s) = b.pod().await;
            level.run_pod.push(r);
            level.create.push(c);
            level.start.push(s);
            level.create_start.push(c + s);
            run.run_pod_all.push(r);
            b.remove(p).await;
        }
        eprintln!(
            "{}: {n} running: create+start median {:.1} ms, {} processes",
            kind.name(),
            ms(pct(&level.create_start, 0.5)),
            level.procs
        );
        run.levels.push(level);
    }
    for p in pods {
        b.remove(p).await;
    }
    // Nothing of the runtime's per-pod machinery may outlive its pods.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = pod_processes(kind, marker);
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            run.leftovers.extend(left.iter().map(|p| {
                format!(
                    "{} process {p} after removing every pod: {}",
                    kind.name(),
                    cmdline(*p)
                )
            }));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run
}

// ---- cleanup ----

/// The bench's cgroup parent in every hierarchy (v1 controllers, named hierarchies, unified).
fn cgroup_dirs() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(CGROUP_PARENT)];
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let p = e.path();
            // cpu and cpuacct are symlinks to cpu,cpuacct: one visit is enough.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(p.join(CGROUP_PARENT));
            }
        }
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// rmdir a cgroup tree bottom-up (cgroupfs refuses anything but empty cgroups).
fn rmdir_cgroup(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_cgroup(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn remove_cgroups() -> Vec<String> {
    for d in cgroup_dirs() {
        rmdir_cgroup(&d);
    }
    cgroup_dirs()
        .into_iter()
        .map(|d| format!("cgroup {} could not be removed", d.display()))
        .collect()
}

fn mounts_left(dir: &Path, what: &str) -> Vec<String> {
    mounts_under(dir)
        .into_iter()
        .map(|m| format!("{what} mount left: {}", m.display()))
        .collect()
}

// ---- report ----

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

fn report(b: &Run, c: Option<&Run>, samples: usize) {
    println!();
    println!(
        "== create+start, per container ({samples} samples at each level; each sample is the (N+1)th pod)"
    );
    println!(
        "{:>8} | {:>31} | {:>31} | {:>8}",
        "running", "berth ms median / p90", "containerd ms median / p90", "speed-up"
    );
    let row = |n: usize, bv: &[Duration], cv: Option<&[Duration]>| {
        let bcol = format!("{:>9.2} / {:>8.2}", ms(pct(bv, 0.5)), ms(pct(bv, 0.9)));
        match cv {
            Some(cv) => {
                let ccol = format!("{:>9.2} / {:>8.2}", ms(pct(cv, 0.5)), ms(pct(cv, 0.9)));
                let x = ms(pct(cv, 0.5)) / ms(pct(bv, 0.5));
                println!("{n:>8} | {bcol:>31} | {ccol:>31} | {x:>7.2}x");
            }
            None => println!("{n:>8} | {bcol:>31} | {:>31} | {:>8}", "-", "-"),
        }
    };
    for (i, l) in b.levels.iter().enumerate() {
        row(
            l.running,
            &l.create_start,
            c.and_then(|c| c.levels.get(i))
                .map(|l| l.create_start.as_slice()),
        );
    }
    println!("   of which CreateContainer / StartContainer (medians, ms):");
    for (i, l) in b.levels.iter().enumerate() {
        let cc = c.and_then(|c| c.levels.get(i)).map_or_else(
            || "-".to_string(),
            |cl| {
                format!(
                    "{:.2} / {:.2}",
                    ms(pct(&cl.create, 0.5)),
                    ms(pct(&cl.start, 0.5))
                )
            },
        );
        println!(
            "{:>8} | berth {:>7.2} / {:>7.2} | containerd {cc}",
            l.running,
            ms(pct(&l.create, 0.5)),
            ms(pct(&l.start, 0.5))
        );
    }

    println!();
    println!("== RunPodSandbox (host network, no CNI)");
    println!(
        "{:>8} | {:>31} | {:>31} | {:>8}",
        "running", "berth ms median / p90", "containerd ms median / p90", "speed-up"
    );
    for (i, l) in b.levels.iter().enumerate() {
        row(
            l.running,
            &l.run_pod,
            c.and_then(|c| c.levels.get(i))
                .map(|l| l.run_pod.as_slice()),
        );
    }
    let bn = b.run_pod_all.len();
    print!(
        "     all | berth {:.2} / {:.2} ms ({bn} pods)",
        ms(pct(&b.run_pod_all, 0.5)),
        ms(pct(&b.run_pod_all, 0.9))
    );
    match c {
        Some(c) => println!(
            " | containerd {:.2} / {:.2} ms ({} pods)",
            ms(pct(&c.run_pod_all, 0.5)),
            ms(pct(&c.run_pod_all, 0.9)),
            c.run_pod_all.len()
        ),
        None => println!(),
    }

    println!();
    println!(
        "== per-pod overhead (one container per pod): berth = its berth-shim; containerd = containerd-shim-runc-v2 + pause"
    );
    println!(
        "{:>5} | {:>24} | {:>24} | {:>17} | {:>17}",
        "pods",
        "berth RSS / PSS MiB",
        "containerd RSS / PSS MiB",
        "berth/ctrd RSS",
        "berth/ctrd PSS"
    );
    for (i, l) in b.levels.iter().enumerate() {
        let bcol = format!("{:>8.2} / {:>8.2}", mib(l.rss), mib(l.pss));
        match c.and_then(|c| c.levels.get(i)) {
            Some(cl) => println!(
                "{:>5} | {bcol:>24} | {:>24} | {:>16.3}x | {:>16.3}x",
                l.running,
                format!("{:>8.2} / {:>8.2}", mib(cl.rss), mib(cl.pss)),
                l.rss / cl.rss,
                l.pss / cl.pss
            ),
            None => println!("{:>5} | {bcol:>24} | {:>24} |", l.running, "-"),
        }
    }
    println!("   processes counted / daemon RSS (berthd, containerd; not in the per-pod figures):");
    for (i, l) in b.levels.iter().enumerate() {
        let cc = c.and_then(|c| c.levels.get(i)).map_or_else(
            || "-".to_string(),
            |cl| {
                format!(
                    "{} procs, containerd {:.1} MiB",
                    cl.procs,
                    mib(cl.daemon_rss as f64)
                )
            },
        );
        println!(
            "{:>5} | berth {} procs, berthd {:.1} MiB | containerd {cc}",
            l.running,
            l.procs,
            mib(l.daemon_rss as f64)
        );
    }

    println!();
    println!("== summary");
    for (i, l) in b.levels.iter().enumerate() {
        let bm = ms(pct(&l.create_start, 0.5));
        match c.and_then(|c| c.levels.get(i)) {
            Some(cl) => {
                let cm = ms(pct(&cl.create_start, 0.5));
                let (x, word) = if cm >= bm {
                    (cm / bm, "faster")
                } else {
                    (bm / cm, "slower")
                };
                println!(
                    "create+start with {:>3} running: berth {bm:.1} ms, containerd {cm:.1} ms → {x:.1}x {word}",
                    l.running
                );
            }
            None => println!(
                "create+start with {:>3} running: berth {bm:.1} ms",
                l.running
            ),
        }
    }
    for (i, l) in b.levels.iter().enumerate() {
        if let Some(cl) = c.and_then(|c| c.levels.get(i)) {
            println!(
                "per-pod overhead at {:>3} pods: RSS {:.2} vs {:.2} MiB, PSS {:.2} vs {:.2} MiB → berth/containerd RSS {:.2}, PSS {:.2}",
                l.running,
                mib(l.rss),
                mib(cl.rss),
                mib(l.pss),
                mib(cl.pss),
                l.rss / cl.rss,
                l.pss / cl.pss
            );
        }
    }
}

fn main() {
    // cargo bench passes --bench; nothing to parse beyond the environment.
    netns::enter_private_netns();
    install_crypto_provider();
    let counts = counts();
    assert!(!counts.is_empty(), "BENCH_COUNTS names no level");
    let samples = env_num("BENCH_SAMPLES", 10).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reg = Registry::start(RegistryOpts::default());
    let work = tempfile::Builder::new()
        .prefix("berth-bench-containers-")
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    let (layer, entrypoint, pause_kind) = pause_layer(work.path());
    let (busybox, pause) = rt.block_on(async {
        let p = Pusher::for_registry(&reg);
        let bb = p
            .push_image(
                "bench/busybox:latest",
                &TestImage::new(vec![busybox_layer().clone()], ImageConfig::default()),
            )
            .await;
        let cfg = ImageConfig {
            entrypoint: Some(entrypoint),
            cmd: None,
            ..Default::default()
        };
        let pz = p
            .push_image("bench/pause:latest", &TestImage::new(vec![layer], cfg))
            .await;
        (bb.reference(), pz.reference())
    });
    println!(
        "berth vs containerd + runc: containers `sleep 3600` from {busybox}, one per host-network pod; \
         levels {counts:?}, {samples} samples each; containerd's pause image: {pause_kind}"
    );
    let mut odd = Vec::new();

    let berth = rt.block_on(async {
        let node = Node::start().await;
        let marker = node.dir.path().display().to_string();
        let r = measure(
            Kind::Berth,
            &node.socket,
            &marker,
            &[&busybox],
            work.path(),
            &counts,
            samples,
        )
        .await;
        let dir = node.dir.path().to_path_buf();
        let mut node = node;
        let st = node.stop();
        if !st.success() {
            odd.push(format!("berthd exited with {st}"));
        }
        odd.extend(mounts_left(&dir, "berth"));
        drop(node);
        r
    });
    odd.extend(berth.leftovers.iter().cloned());
    odd.extend(remove_cgroups());

    let containerd = match Containerd::start(&reg.addr, Some(&pause)) {
        None => None,
        Some(ctd) => {
            // Its shims name its socket and the daemon its config: both lie under its dir.
            let marker = ctd.dir.path().display().to_string();
            let r = rt.block_on(measure(
                Kind::Containerd,
                &ctd.socket,
                &marker,
                &[&busybox, &pause],
                work.path(),
                &counts,
                samples,
            ));
            let dir = ctd.dir.path().to_path_buf();
            // What containerd itself leaves mounted once every pod is gone (its Drop unmounts).
            let before_stop = mounts_under(&dir);
            if !before_stop.is_empty() {
                odd.push(format!(
                    "containerd still has {} mounts under its dirs after removing every pod",
                    before_stop.len()
                ));
            }
            drop(ctd);
            odd.extend(mounts_left(&dir, "containerd"));
            odd.extend(r.leftovers.iter().cloned());
            Some(r)
        }
    };
    odd.extend(remove_cgroups());
    if containerd.is_none() {
        println!("containerd: not installed (apt-get install containerd runc) — no ratios");
    }
    report(&berth, containerd.as_ref(), samples);
    odd.extend(mounts_left(work.path(), "bench"));
    drop(work);
    if odd.is_empty() {
        println!("cleanup: no pods, processes, mounts or /{CGROUP_PARENT} cgroups left");
    } else {
        println!("cleanup problems:");
        for o in &odd {
            println!("  {o}");
        }
    }
}
