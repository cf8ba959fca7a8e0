//! End-to-end, metrics: CRI `ListMetricDescriptors` / `ListPodSandboxMetrics` (kubelet's
//! CRI-based stats, KEP-2371) over a busy pod, and Debian's `prometheus` scraping berthd's
//! metrics endpoint every second during a pod workload, then asked (its HTTP query API) what it
//! saw. Prometheus runs in the suite's network namespace on loopback, with its storage in the
//! node's temporary directory, and is killed by its pid.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::cri::*;
use berth_e2e::http::http_request;
use berth_e2e::images::RuntimeEnv;
use berth_e2e::node::{Node, free_port};
use k8s_cri::v1::*;

/// What every test of the suite shares.
pub type Env = RuntimeEnv;

type TestFn = fn(&Env);

/// The suite's tests; the harness names them `metrics::<name>`.
pub const TESTS: &[(&str, TestFn)] = &[
    (
        "cri_pod_metrics_follow_a_busy_pod",
        cri_pod_metrics_follow_a_busy_pod,
    ),
    (
        "prometheus_scrapes_a_pod_workload",
        prometheus_scrapes_a_pod_workload,
    ),
];

/// The suite's environment: a runtime, and a registry holding the runtime image set.
pub fn setup() -> Env {
    RuntimeEnv::start()
}

/// Readings every second, so a test sees them move.
const PERIOD: &str = "collection_period_secs = 1";

/// Holds 24 MiB in a shell variable, then burns a CPU.
const BUSY: &str =
    "a=$(dd if=/dev/zero bs=1M count=24 2>/dev/null | tr '\\0' x); while :; do :; done";

async fn running(node: &Node, pod: &str, name: &str, image: &str, script: &str) -> String {
    let id = create_container(
        node,
        pod,
        container_config(name, image, &["sh", "-c", script]),
    )
    .await
    .unwrap_or_else(|e| panic!("CreateContainer {name}: {e:?}\n{}", node.log_text()));
    start_container(node, &id).await;
    id
}

async fn exec(node: &Node, id: &str, script: &str) -> i32 {
    node.runtime()
        .await
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 60,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync {script:?}: {e:?}"))
        .into_inner()
        .exit_code
}

async fn pod_ip(node: &Node, id: &str) -> String {
    pod_status(node, id)
        .await
        .expect("PodSandboxStatus")
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default()
}

async fn remove_pod(node: &Node, id: &str) {
    let mut rt = node.runtime().await;
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .expect("RemovePodSandbox");
}

async fn pod_metrics(node: &Node) -> Vec<PodSandboxMetrics> {
    node.runtime()
        .await
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .unwrap_or_else(|e| panic!("ListPodSandboxMetrics: {e:?}\n{}", node.log_text()))
        .into_inner()
        .pod_metrics
}

/// The value of the sample `name` whose labels include `labels` (by the descriptors' keys).
fn value(
    descs: &HashMap<String, Vec<String>>,
    metrics: &[Metric],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<u64> {
    let keys = descs.get(name)?;
    metrics
        .iter()
        .find(|m| {
            m.name == name
                && labels.iter().all(|(k, v)| {
                    keys.iter()
                        .position(|key| key == k)
                        .is_some_and(|i| m.label_values.get(i).is_some_and(|x| x == v))
                })
        })
        .and_then(|m| m.value.as_ref())
        .map(|v| v.value)
}

/// The readings of `pod` and of its container `ctr`, once there are both.
fn find<'a>(
    all: &'a [PodSandboxMetrics],
    pod: &str,
    ctr: &str,
) -> Option<(&'a PodSandboxMetrics, &'a ContainerMetrics)> {
    let p = all.iter().find(|p| p.pod_sandbox_id == pod)?;
    let c = p.container_metrics.iter().find(|c| c.container_id == ctr)?;
    Some((p, c))
}

fn cri_pod_metrics_follow_a_busy_pod(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start_with_metrics_config(PERIOD).await;
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;

        let descs: HashMap<String, Vec<String>> = node
            .runtime()
            .await
            .list_metric_descriptors(ListMetricDescriptorsRequest {})
            .await
            .unwrap_or_else(|e| panic!("ListMetricDescriptors: {e:?}"))
            .into_inner()
            .descriptors
            .into_iter()
            .map(|d| (d.name, d.label_keys))
            .collect();
        let base = ["container", "id", "image", "name", "namespace", "pod"];
        for (name, extra) in [
            ("container_cpu_usage_seconds_total", Some("cpu")),
            ("container_memory_working_set_bytes", None),
            ("container_memory_usage_bytes", None),
            ("container_memory_rss", None),
            ("container_spec_memory_limit_bytes", None),
            ("container_network_receive_bytes_total", Some("interface")),
            ("container_network_transmit_bytes_total", Some("interface")),
            ("container_fs_usage_bytes", Some("device")),
            ("container_processes", None),
            ("container_threads", None),
        ] {
            let keys = descs
                .get(name)
                .unwrap_or_else(|| panic!("no descriptor {name}: {descs:?}"));
            assert_eq!(keys[..6], base.map(String::from), "{name}");
            assert_eq!(keys.get(6).map(String::as_str), extra, "{name}");
        }

        let mut cfg = net_pod("busy", &node);
        cfg.metadata.as_mut().unwrap().namespace = "metrics-ns".into();
        let pod = run_pod(&node, cfg).await.unwrap();
        let c = running(&node, &pod, "burner", &bb, BUSY).await;
        // Traffic to the test namespace: 20 echo requests of 1000 bytes, and their replies.
        assert_eq!(
            exec(
                &node,
                &c,
                &format!("ping -c 20 -i 0.2 -s 1000 -W 2 {}", net.gateway())
            )
            .await,
            0
        );

        // The collection catches up: the CPU burnt, the memory held, the bytes received.
        let deadline = Instant::now() + Duration::from_secs(30);
        let first_cpu = loop {
            let all = pod_metrics(&node).await;
            if let Some((p, cm)) = find(&all, &pod, &c) {
                let cpu = value(
                    &descs,
                    &cm.metrics,
                    "container_cpu_usage_seconds_total",
                    &[("container", "burner"), ("id", &c), ("pod", "busy")],
                );
                let ws = value(
                    &descs,
                    &cm.metrics,
                    "container_memory_working_set_bytes",
                    &[("namespace", "metrics-ns")],
                );
                let rx = value(
                    &descs,
                    &p.metrics,
                    "container_network_receive_bytes_total",
                    &[("container", ""), ("pod", "busy"), ("interface", "eth0")],
                );
                let procs = value(&descs, &cm.metrics, "container_processes", &[]);
                if cpu.unwrap_or(0) >= 2
                    && ws.unwrap_or(0) >= 24 << 20
                    && rx.unwrap_or(0) >= 20 * 1000
                    && procs.unwrap_or(0) >= 1
                {
                    // The pod as a whole holds at least what its container does.
                    let pod_ws = value(
                        &descs,
                        &p.metrics,
                        "container_memory_working_set_bytes",
                        &[("container", "")],
                    )
                    .unwrap();
                    assert!(pod_ws >= 24 << 20, "pod working set {pod_ws}");
                    assert!(
                        value(
                            &descs,
                            &p.metrics,
                            "container_network_receive_bytes_total",
                            &[("interface", "lo")]
                        )
                        .is_none(),
                        "lo is not reported"
                    );
                    // Every sample has a descriptor and one value per label key.
                    for m in p.metrics.iter().chain(cm.metrics.iter()) {
                        let keys = descs
                            .get(&m.name)
                            .unwrap_or_else(|| panic!("{} has no descriptor", m.name));
                        assert_eq!(keys.len(), m.label_values.len(), "{}", m.name);
                    }
                    break cpu.unwrap();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the readings never showed the workload: {all:#?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };

        // Answers come from the latest periodic reading, not from a read per request...
        let a = pod_metrics(&node).await;
        let b = pod_metrics(&node).await;
        let ts =
            |all: &[PodSandboxMetrics]| find(all, &pod, &c).map(|(_, cm)| cm.metrics[0].timestamp);
        if ts(&a) != ts(&b) {
            // ...unless a collection ended in between: then the next two agree.
            let b2 = pod_metrics(&node).await;
            assert_eq!(ts(&b), ts(&b2), "two calls in a row read twice");
        }
        // ...and the readings move on: the busy container's CPU time grows.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let all = pod_metrics(&node).await;
        let (_, cm) = find(&all, &pod, &c).expect("the busy container");
        let later = value(
            &descs,
            &cm.metrics,
            "container_cpu_usage_seconds_total",
            &[("cpu", "total")],
        )
        .unwrap();
        assert!(later > first_cpu, "CPU seconds {first_cpu} then {later}");

        // A removed pod leaves the readings.
        remove_pod(&node, &pod).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while pod_metrics(&node)
            .await
            .iter()
            .any(|p| p.pod_sandbox_id == pod)
        {
            assert!(
                Instant::now() < deadline,
                "the removed pod is still reported"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Debian's prometheus on loopback, scraping `target` every second, storing under `dir`.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Prometheus {
    fn start(dir: &std::path::Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: berth\n    scrape_interval: 1s\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("running prometheus (Debian's `prometheus`; `make deps-test` installs it)");
        let p = Prometheus { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http_request(&p.addr, None, "GET", "/-/ready", &[]).is_ok_and(|r| r.status == 200) {
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready: {}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// The values of an instant query (one per series), with their labels.
    fn query(&self, q: &str) -> Vec<(serde_json::Value, f64)> {
        let path = format!("/api/v1/query?query={}", percent_encode(q));
        let r = http_request(&self.addr, None, "GET", &path, &[]).expect("querying prometheus");
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let v = r.json();
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let x = s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), x)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // By its pid: this test's child only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A query's answer is what the workload did.
type Check = fn(&[(serde_json::Value, f64)]) -> bool;

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn prometheus_scrapes_a_pod_workload(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start_with_metrics_config(PERIOD).await;
        let r = http_request(&node.metrics, None, "GET", "/healthz", &[]).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
        let prom = Prometheus::start(node.dir.path(), &node.metrics);

        // The workload: a pod burning CPU, another pinging it, a client polling stats.
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let busy = run_pod(&node, net_pod("busy", &node)).await.unwrap();
        let burner = running(&node, &busy, "burner", &bb, BUSY).await;
        let client = run_pod(&node, net_pod("client", &node)).await.unwrap();
        let pinger = running(&node, &client, "pinger", &bb, "sleep 3600").await;
        let target = pod_ip(&node, &busy).await;
        assert!(!target.is_empty(), "the busy pod has no IP");
        let ping_cmd = format!("ping -c 30 -i 0.2 -s 500 -W 2 {target}");
        let ping = exec(&node, &pinger, &ping_cmd);
        let poll = async {
            for _ in 0..20 {
                pod_metrics(&node).await;
                node.runtime()
                    .await
                    .container_stats(ContainerStatsRequest {
                        container_id: burner.clone(),
                    })
                    .await
                    .expect("ContainerStats");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        };
        let (code, ()) = tokio::join!(ping, poll);
        assert_eq!(code, 0, "ping between the pods (gateway {})", net.gateway());

        // What prometheus saw, once it has scraped the end of the workload.
        let checks: &[(&str, Check)] = &[
            ("up{job=\"berth\"}", |r| r.len() == 1 && r[0].1 == 1.0),
            // Every CRI call of the workload was counted, at a rate.
            (
                "sum(rate(berth_cri_request_duration_seconds_count[15s]))",
                |r| r.first().is_some_and(|x| x.1 > 0.0),
            ),
            (
                "sum(berth_cri_request_duration_seconds_count{method=\"RunPodSandbox\"})",
                |r| r.first().is_some_and(|x| x.1 == 2.0),
            ),
            (
                "sum(berth_cri_request_duration_seconds_count{method=\"ListPodSandboxMetrics\"})",
                |r| r.first().is_some_and(|x| x.1 >= 20.0),
            ),
            (
                "sum(berth_cri_request_duration_seconds_count{method=\"ExecSync\"})",
                |r| r.first().is_some_and(|x| x.1 >= 1.0),
            ),
            // The periodic collection ran, about once a second.
            (
                "sum(increase(berth_phase_duration_seconds_count{phase=\"pod_metrics_collection\"}[10s]))",
                |r| r.first().is_some_and(|x| x.1 >= 3.0),
            ),
            // berthd's own process.
            ("process_resident_memory_bytes{job=\"berth\"}", |r| {
                r.first().is_some_and(|x| x.1 > 1e6)
            }),
            ("process_open_fds{job=\"berth\"}", |r| {
                r.first().is_some_and(|x| x.1 >= 5.0)
            }),
            ("process_threads{job=\"berth\"}", |r| {
                r.first().is_some_and(|x| x.1 >= 1.0)
            }),
            ("process_cpu_seconds_total{job=\"berth\"}", |r| {
                r.first().is_some_and(|x| x.1 > 0.0)
            }),
            ("time() - process_start_time_seconds{job=\"berth\"}", |r| {
                r.first().is_some_and(|x| x.1 > 0.0 && x.1 < 600.0)
            }),
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let failing: Vec<String> = checks
                .iter()
                .filter_map(|(q, ok)| {
                    let r = prom.query(q);
                    (!ok(&r)).then(|| format!("{q} -> {r:?}"))
                })
                .collect();
            if failing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never saw:\n{}",
                failing.join("\n")
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        drop(prom);
        remove_pod(&node, &client).await;
        remove_pod(&node, &busy).await;
    });
}
