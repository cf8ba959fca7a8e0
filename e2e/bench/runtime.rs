//! Benchmark (not a test): berth against containerd 1.6 + runc, same CRI client, same registry,
//! same CNI plugins, same machine, one after the other inside one private network namespace.
//!
//!   cargo bench -p berth-e2e --bench runtime          (part of make bench)
//!   env: BENCH_PODS (20) pod rounds, BENCH_CONTAINERS ("1,10,100"), BENCH_EXECS (30),
//!   BENCH_IDLE ("10,50,100") idle pod counts
//!
//! 1. RunPodSandbox, and StopPodSandbox+RemovePodSandbox, of pods with their own network
//!    (bridge + host-local + portmap + loopback, ipMasq false); the same chain executed
//!    directly, without a runtime, is the floor both stand on; then memory per idle pod (own
//!    network, no container) at 10, 50, 100 pods, daemon growth included;
//! 2. CreateContainer+StartContainer of `sleep` containers, one per host-network pod, while
//!    1, 10, 100 run; and the memory each pod costs beyond its container: berth's shim (RSS,
//!    PSS) against containerd's shim and pause process;
//! 3. ExecSync round trip (`true`), request to exit status.
//!
//! containerd needs a pause image for every pod: one is built here from a static C program
//! (pause(2), exit on SIGTERM), as kubernetes' own pause is. berth never needs one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_e2e::images::{ImageConfig, ImageSpec, Pusher, busybox_layer};
use berth_e2e::netns;
use berth_e2e::node::{Node, cri_channel};
use berth_e2e::peer::Containerd;
use berth_e2e::registry::{Registry, RegistryOpts, install_crypto_provider};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Client {
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
}

async fn client(socket: &Path) -> Client {
    let ch = cri_channel(socket).await.expect("connect");
    Client {
        rt: RuntimeServiceClient::new(ch.clone()),
        img: ImageServiceClient::new(ch),
    }
}

fn conflist(bridge: &str, prefix: &str, ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "bench",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "dataDir": ipam_dir,
                      "ranges": [[{"subnet": format!("{prefix}.0.0/16")}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    })
    .to_string()
}

fn pod(name: &str, cgroup_parent: &str, host_network: bool, log_dir: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        // A host-network pod keeps the node's hostname (runc refuses one without a UTS ns).
        hostname: if host_network {
            String::new()
        } else {
            name.into()
        },
        log_directory: log_dir.join(name).display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.into(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: if host_network {
                        NamespaceMode::Node
                    } else {
                        NamespaceMode::Pod
                    } as i32,
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

/// The CNI chain alone, executed here as a runtime would (same plugins, same config, spec order,
/// prevResult chaining), in a network namespace of a parked thread: the floor below which no
/// runtime's RunPodSandbox / StopPodSandbox can go on this machine. Returns (ADD, DEL) times.
fn cni_floor(conflist_json: &str, rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let list: serde_json::Value = serde_json::from_str(conflist_json).expect("conflist");
    let plugins = list["plugins"].as_array().cloned().unwrap_or_default();
    let run = |netns: &str, id: &str, cmd: &str, i: usize, prev: &serde_json::Value| {
        let mut conf = plugins[i].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();
        if conf["capabilities"]["portMappings"] == true {
            conf["runtimeConfig"] = serde_json::json!({"portMappings": []});
        }
        if !prev.is_null() {
            conf["prevResult"] = prev.clone();
        }
        let ty = conf["type"].as_str().unwrap_or_default().to_string();
        let mut child = Command::new(format!("/usr/lib/cni/{ty}"))
            .env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env(
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=floor",
            )
            .env("CNI_PATH", "/usr/lib/cni")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("CNI plugin");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(conf.to_string().as_bytes())
            .expect("plugin stdin");
        let out = child.wait_with_output().expect("plugin");
        assert!(
            out.status.success(),
            "{ty} {cmd}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for round in 0..rounds + 1 {
        // A thread in a fresh network namespace holds it while the plugins run.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            tx.send(format!(
                "/proc/{}/task/{}/ns/net",
                std::process::id(),
                nix::unistd::gettid()
            ))
            .expect("send");
            let _ = done_rx.recv();
        });
        let netns = rx.recv().expect("netns");
        let id = format!("floor{round}");
        let t = Instant::now();
        let mut prev = serde_json::Value::Null;
        for i in 0..plugins.len() {
            let r = run(&netns, &id, "ADD", i, &prev);
            if !r.is_null() {
                prev = r;
            }
        }
        let a = t.elapsed();
        let t = Instant::now();
        for i in (0..plugins.len()).rev() {
            run(&netns, &id, "DEL", i, &prev);
        }
        let d = t.elapsed();
        let _ = done_tx.send(());
        parked.join().expect("parked thread");
        if round > 0 {
            add.push(a);
            del.push(d);
        }
    }
    (add, del)
}

/// RSS and PSS (KiB) of a process, from smaps_rollup.
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

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
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

/// The per-pod runtime processes: berth's shims (command line names `marker`), or containerd's
/// shims (naming its socket) and their pause children. Sum of (RSS, PSS) KiB, and the count.
fn overhead(kind: &str, marker: &str) -> (u64, u64, usize) {
    let all = pids();
    let shims: Vec<i32> = all
        .iter()
        .copied()
        .filter(|&p| {
            let c = cmdline(p);
            match kind {
                "berth" => c.contains("berth-shim") && c.contains(marker) && !c.contains(" exec "),
                _ => c.contains("containerd-shim") && c.contains(marker),
            }
        })
        .collect();
    let mut procs = shims.clone();
    if kind != "berth" {
        procs.extend(
            all.iter()
                .copied()
                .filter(|&p| shims.contains(&ppid(p)) && cmdline(p).starts_with("/pause")),
        );
    }
    let (mut rss, mut pss) = (0, 0);
    for p in &procs {
        let (r, s) = rss_pss(*p);
        rss += r;
        pss += s;
    }
    (rss, pss, shims.len())
}

struct Results {
    run_pod: Vec<Duration>,
    stop_remove: Vec<Duration>,
    create_start: Vec<Duration>,
    /// (containers running, RSS KiB per pod, PSS KiB per pod)
    memory: Vec<(usize, f64, f64)>,
    /// Idle pods with their own network and no container, KiB per pod: (pods, the daemon's
    /// RSS and PSS growth, the per-pod processes' RSS and PSS).
    idle: Vec<(usize, [f64; 4])>,
    exec: Vec<Duration>,
}

/// What one run measures.
struct Plan<'a> {
    busybox: &'a str,
    work: &'a Path,
    counts: &'a [usize],
    pod_rounds: usize,
    execs: usize,
    idle: &'a [usize],
}

async fn measure(kind: &str, socket: &Path, marker: &str, daemon: u32, plan: &Plan<'_>) -> Results {
    let Plan {
        busybox,
        work,
        counts,
        pod_rounds,
        execs,
        idle,
    } = *plan;
    let mut c = client(socket).await;
    c.img
        .pull_image(PullImageRequest {
            image: Some(k8s_cri::v1::ImageSpec {
                image: busybox.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{kind}: pull: {e:?}"));
    let logs = work.join(format!("logs-{kind}"));
    let parent = format!("/berth-bench-{kind}");
    let mut r = Results {
        run_pod: Vec::new(),
        stop_remove: Vec::new(),
        create_start: Vec::new(),
        memory: Vec::new(),
        idle: Vec::new(),
        exec: Vec::new(),
    };

    // 1. Pods with their own network.
    for i in 0..pod_rounds + 1 {
        let t = Instant::now();
        let id =
            c.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod(&format!("net{i}"), &parent, false, &logs)),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: RunPodSandbox: {e:?}"))
            .into_inner()
            .pod_sandbox_id;
        let run = t.elapsed();
        let t = Instant::now();
        c.rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .expect("stop");
        c.rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .expect("remove");
        // The first round warms caches (images, plugin binaries): not counted.
        if i > 0 {
            r.run_pod.push(run);
            r.stop_remove.push(t.elapsed());
        }
    }

    // 1b. Idle pods, each with its own network and no container (a pod whose containers have
    // not started yet, or a pause-only pod elsewhere): memory per pod, the daemon's growth
    // included (berth keeps no process for such a pod; containerd keeps a shim and a pause).
    let (base_rss, base_pss) = rss_pss(daemon as i32);
    let (base_orss, base_opss, _) = overhead(kind, marker);
    let mut idle_pods = Vec::new();
    for i in 0..idle.iter().copied().max().unwrap_or(0) {
        let id =
            c.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod(&format!("idle{i}"), &parent, false, &logs)),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: RunPodSandbox: {e:?}"))
            .into_inner()
            .pod_sandbox_id;
        idle_pods.push(id);
        if idle.contains(&(i + 1)) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (drss, dpss) = rss_pss(daemon as i32);
            let (orss, opss, _) = overhead(kind, marker);
            let n = (i + 1) as f64;
            let grow = |now: u64, base: u64| now as f64 - base as f64;
            r.idle.push((
                i + 1,
                [
                    grow(drss, base_rss) / n,
                    grow(dpss, base_pss) / n,
                    grow(orss, base_orss) / n,
                    grow(opss, base_opss) / n,
                ],
            ));
        }
    }
    for id in idle_pods {
        c.rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{kind}: StopPodSandbox: {e:?}"));
        c.rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .unwrap_or_else(|e| panic!("{kind}: RemovePodSandbox: {e:?}"));
    }

    // 2. Containers, one per host-network pod.
    let max = counts.iter().copied().max().unwrap_or(0);
    let mut pods = Vec::new();
    let mut containers = Vec::new();
    for i in 0..max {
        let cfg = pod(&format!("c{i}"), &parent, true, &logs);
        let pod_id =
            c.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: RunPodSandbox: {e:?}"))
            .into_inner()
            .pod_sandbox_id;
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "sleep".into(),
                attempt: 0,
            }),
            image: Some(k8s_cri::v1::ImageSpec {
                image: busybox.into(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: "sleep.log".into(),
            ..Default::default()
        };
        let t = Instant::now();
        let id =
            c.rt.create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(config),
                sandbox_config: Some(cfg),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: CreateContainer: {e:?}"))
            .into_inner()
            .container_id;
        c.rt.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{kind}: StartContainer: {e:?}"));
        r.create_start.push(t.elapsed());
        pods.push(pod_id);
        containers.push(id);
        if counts.contains(&(i + 1)) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (rss, pss, _) = overhead(kind, marker);
            let n = (i + 1) as f64;
            r.memory.push((i + 1, rss as f64 / n, pss as f64 / n));
        }
    }

    // 3. ExecSync round trips.
    if let Some(id) = containers.first() {
        for i in 0..execs + 1 {
            let t = Instant::now();
            let out =
                c.rt.exec_sync(ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: vec!["true".into()],
                    timeout: 10,
                })
                .await
                .unwrap_or_else(|e| panic!("{kind}: ExecSync: {e:?}"))
                .into_inner();
            assert_eq!(out.exit_code, 0);
            if i > 0 {
                r.exec.push(t.elapsed());
            }
        }
    }

    for p in pods {
        let _ =
            c.rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: p.clone(),
            })
            .await;
        let _ =
            c.rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: p })
                .await;
    }
    r
}

fn remove_cgroup_parent(kind: &str) {
    let name = format!("berth-bench-{kind}");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path().join(&name)))
                .collect()
        })
        .unwrap_or_default();
    dirs.push(PathBuf::from("/sys/fs/cgroup").join(&name));
    for d in dirs.into_iter().filter(|d| d.is_dir()) {
        for child in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if child.path().is_dir() {
                let _ = std::fs::remove_dir(child.path());
            }
        }
        let _ = std::fs::remove_dir(&d);
    }
}

fn report(name: &str, b: &Results, c: Option<&Results>, floor: &(Vec<Duration>, Vec<Duration>)) {
    let line = |what: &str, bv: &[Duration], cv: Option<&[Duration]>| {
        let (bm, bp) = (ms(pct(bv, 0.5)), ms(pct(bv, 0.9)));
        match cv {
            Some(cv) if !cv.is_empty() => {
                let (cm, cp) = (ms(pct(cv, 0.5)), ms(pct(cv, 0.9)));
                println!(
                    "{what:<34} berth {bm:>8.2} ms (p90 {bp:>7.2})   containerd {cm:>8.2} ms (p90 {cp:>7.2})   → {:.1}x faster",
                    cm / bm
                );
            }
            _ => println!("{what:<34} berth {bm:>8.2} ms (p90 {bp:>7.2})"),
        }
    };
    println!("== {name}");
    line(
        "RunPodSandbox (CNI)",
        &b.run_pod,
        c.map(|c| c.run_pod.as_slice()),
    );
    line(
        "StopPodSandbox+RemovePodSandbox",
        &b.stop_remove,
        c.map(|c| c.stop_remove.as_slice()),
    );
    line("  the CNI chain alone: ADD", &floor.0, None);
    line("  the CNI chain alone: DEL", &floor.1, None);
    let above =
        |runtime: &[Duration], plugins: &[Duration]| ms(pct(runtime, 0.5)) - ms(pct(plugins, 0.5));
    if let Some(c) = c {
        for (what, bv, cv, fv) in [
            ("RunPodSandbox", &b.run_pod, &c.run_pod, &floor.0),
            ("Stop+Remove", &b.stop_remove, &c.stop_remove, &floor.1),
        ] {
            let (bo, co) = (above(bv, fv), above(cv, fv));
            let ratio = if bo > 0.5 {
                format!("{:.1}x less", co / bo)
            } else {
                "berth within noise of the plugins alone".into()
            };
            println!(
                "  {what:<32} runtime's own time (median above the plugins): berth {bo:>6.2} ms   containerd {co:>6.2} ms   → {ratio}"
            );
        }
    }
    // KiB per pod: total RSS and PSS, then (daemon + per-pod processes).
    let idle_line = |m: &[f64; 4]| {
        format!(
            "RSS {:>7.1} KiB (daemon {:>6.1} + procs {:>7.1}) PSS {:>7.1} KiB",
            m[0] + m[2],
            m[0],
            m[2],
            m[1] + m[3]
        )
    };
    for (i, (n, m)) in b.idle.iter().enumerate() {
        match c.and_then(|c| c.idle.get(i)) {
            Some((_, cm)) => println!(
                "idle pod memory at {n:>3} pods        berth {}   containerd {}",
                idle_line(m),
                idle_line(cm)
            ),
            None => println!(
                "idle pod memory at {n:>3} pods        berth {}",
                idle_line(m)
            ),
        }
    }
    let mut start = 0;
    for &(n, _, _) in &b.memory {
        let bv = &b.create_start[start..n];
        let cv = c
            .map(|c| &c.create_start[start.min(c.create_start.len())..n.min(c.create_start.len())]);
        line(
            &format!("Create+Start (containers {}..{n})", start + 1),
            bv,
            cv,
        );
        start = n;
    }
    line("ExecSync `true`", &b.exec, c.map(|c| c.exec.as_slice()));
    for (i, &(n, rss, pss)) in b.memory.iter().enumerate() {
        match c.and_then(|c| c.memory.get(i)) {
            Some(&(_, crss, cpss)) => println!(
                "per-pod overhead at {n:>3} pods       berth RSS {:>6.2} MiB PSS {:>6.2} MiB   containerd RSS {:>6.2} MiB PSS {:>6.2} MiB   → RSS {:.1}x, PSS {:.1}x smaller",
                rss / 1024.0,
                pss / 1024.0,
                crss / 1024.0,
                cpss / 1024.0,
                crss / rss,
                cpss / pss
            ),
            None => println!(
                "per-pod overhead at {n:>3} pods       berth RSS {:>6.2} MiB PSS {:>6.2} MiB",
                rss / 1024.0,
                pss / 1024.0
            ),
        }
    }
}

/// Where berth's time goes: mean of each phase and CRI call from its /metrics.
fn print_phases(metrics_addr: &str) {
    let Ok(resp) = berth_e2e::registry::http_request(metrics_addr, None, "GET", "/metrics", &[])
    else {
        return;
    };
    let text = String::from_utf8_lossy(&resp.body).to_string();
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for (metric, label) in [
        ("berth_phase_duration_seconds", "phase"),
        ("berth_cri_request_duration_seconds", "method"),
    ] {
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&format!("{metric}_sum{{")) else {
                continue;
            };
            let Some(name) = rest
                .split(&format!("{label}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
            else {
                continue;
            };
            let sum: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            let count: f64 = text
                .lines()
                .filter(|l| {
                    l.starts_with(&format!("{metric}_count{{"))
                        && l.contains(&format!("{label}=\"{name}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            if count > 0.0 {
                rows.push((format!("{label} {name}"), sum / count * 1000.0, count));
            }
        }
    }
    println!("-- where berth's time goes (mean ms, calls)");
    for (name, mean, count) in rows {
        println!("- {name:<40} {mean:>8.2} ms  x{count}");
    }
}

fn main() {
    netns::enter_private_netns();
    install_crypto_provider();
    let counts: Vec<usize> = std::env::var("BENCH_CONTAINERS")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let pod_rounds = env_num("BENCH_PODS", 20);
    let execs = env_num("BENCH_EXECS", 30);
    let idle: Vec<usize> = std::env::var("BENCH_IDLE")
        .unwrap_or_else(|_| "10,50,100".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reg = Registry::start(RegistryOpts::default());
    let work = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    let (busybox, pause_ref) = rt.block_on(async {
        let bb = Pusher::for_registry(&reg)
            .push_image(
                "busybox:latest",
                &ImageSpec::new(vec![busybox_layer().clone()], ImageConfig::default()),
            )
            .await;
        let pause = berth_e2e::peer::push_pause_image(&reg, work.path()).await;
        (bb.reference(), pause)
    });

    let plan = Plan {
        busybox: &busybox,
        work: work.path(),
        counts: &counts,
        pod_rounds,
        execs,
        idle: &idle,
    };
    // The plugins alone, on a bridge of their own.
    let floor = cni_floor(
        &conflist("benchf0", "10.203", &work.path().join("ipam-floor")),
        pod_rounds,
    );
    // berth.
    let berth = rt.block_on(async {
        let node = Node::start().await;
        std::fs::write(
            node.cni_conf.join("10-bench.conflist"),
            conflist("benchb0", "10.201", &work.path().join("ipam-berth")),
        )
        .unwrap();
        let r = measure(
            "berth",
            &node.socket,
            &node.dir.path().display().to_string(),
            node.pid(),
            &plan,
        )
        .await;
        print_phases(&node.metrics);
        drop(node);
        r
    });
    remove_cgroup_parent("berth");

    // containerd + runc.
    let peer = Containerd::start(&reg.addr, Some(&pause_ref));
    let containerd = peer.as_ref().map(|ctd| {
        std::fs::write(
            ctd.cni_conf.join("10-bench.conflist"),
            conflist("benchc0", "10.202", &work.path().join("ipam-containerd")),
        )
        .unwrap();
        rt.block_on(measure(
            "containerd",
            &ctd.socket,
            &ctd.socket.display().to_string(),
            ctd.pid(),
            &plan,
        ))
    });
    drop(peer);
    remove_cgroup_parent("containerd");

    if containerd.is_none() {
        println!("containerd: not installed (apt-get install containerd runc) — no ratios");
    }
    report(
        &format!(
            "berth vs containerd 1.6 + runc ({} pod rounds, containers {counts:?}, {execs} execs)",
            pod_rounds
        ),
        &berth,
        containerd.as_ref(),
        &floor,
    );
}
