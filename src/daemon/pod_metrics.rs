//! Pod and container metrics for CRI `ListMetricDescriptors` / `ListPodSandboxMetrics` (KEP-2371:
//! kubelet's CRI-based stats read them instead of cAdvisor and re-export them on its
//! `/metrics/cadvisor`). The names, types and labels are cAdvisor's, so the dashboards and
//! recording rules written for cAdvisor keep working.
//!
//! The readings are taken by one background task every `[metrics] collection_period_secs`
//! (`collect_forever`) and kept in the daemon (`Daemon::pod_metrics`); the CRI call answers the
//! latest, never reads per request. Each sample carries the time it was read.
//!
//! Every series has cAdvisor's labels `container`, `id`, `image`, `name`, `namespace`, `pod`:
//! per container, `container` is its CRI name, `id` and `name` its id, `image` the image it was
//! created from; for the pod as a whole (its cgroup parent, its network namespace) `container`
//! and `image` are empty and `id` / `name` are the pod sandbox id. Some add one or two labels of
//! their own (`cpu`, `interface`, `device`, `failure_type` and `scope`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use k8s_cri::v1::{
    ContainerMetrics, Metric, MetricDescriptor, MetricType, PodSandboxMetrics, UInt64Value,
};

use super::Daemon;
use crate::container::resources::ContainerUsage;
use crate::container::{ContainerRecord, ContainerState};
use crate::sandbox::SandboxRecord;
use crate::sandbox::namespaces::NsKind;
use crate::sandbox::stats::PodUsage;

/// The labels every series has, in this order (cAdvisor's).
pub const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// One metric berth reports: its name, help, type and the labels after `BASE_LABELS`.
struct Desc {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    extra: &'static [&'static str],
}

const fn counter(name: &'static str, help: &'static str, extra: &'static [&'static str]) -> Desc {
    Desc {
        name,
        help,
        kind: MetricType::Counter,
        extra,
    }
}

const fn gauge(name: &'static str, help: &'static str, extra: &'static [&'static str]) -> Desc {
    Desc {
        name,
        help,
        kind: MetricType::Gauge,
        extra,
    }
}

const CPU_USAGE: &str = "container_cpu_usage_seconds_total";
const MEMORY_USAGE: &str = "container_memory_usage_bytes";
const MEMORY_WORKING_SET: &str = "container_memory_working_set_bytes";
const MEMORY_RSS: &str = "container_memory_rss";
const MEMORY_SWAP: &str = "container_memory_swap";
const MEMORY_FAILURES: &str = "container_memory_failures_total";
const SPEC_MEMORY_LIMIT: &str = "container_spec_memory_limit_bytes";
const OOM_EVENTS: &str = "container_oom_events_total";
const PROCESSES: &str = "container_processes";
const THREADS: &str = "container_threads";
const START_TIME: &str = "container_start_time_seconds";
const FS_USAGE: &str = "container_fs_usage_bytes";
const FS_INODES_USED: &str = "container_fs_inodes_used";
const FS_LIMIT: &str = "container_fs_limit_bytes";
const FS_INODES_TOTAL: &str = "container_fs_inodes_total";
const FS_INODES_FREE: &str = "container_fs_inodes_free";
const NET_RX_BYTES: &str = "container_network_receive_bytes_total";
const NET_RX_PACKETS: &str = "container_network_receive_packets_total";
const NET_RX_ERRORS: &str = "container_network_receive_errors_total";
const NET_RX_DROPPED: &str = "container_network_receive_packets_dropped_total";
const NET_TX_BYTES: &str = "container_network_transmit_bytes_total";
const NET_TX_PACKETS: &str = "container_network_transmit_packets_total";
const NET_TX_ERRORS: &str = "container_network_transmit_errors_total";
const NET_TX_DROPPED: &str = "container_network_transmit_packets_dropped_total";

/// Every metric berth reports, as cAdvisor names and types them.
const DESCRIPTORS: &[Desc] = &[
    counter(
        CPU_USAGE,
        "Cumulative cpu time consumed in seconds.",
        &["cpu"],
    ),
    gauge(
        MEMORY_USAGE,
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        &[],
    ),
    gauge(MEMORY_WORKING_SET, "Current working set in bytes.", &[]),
    gauge(MEMORY_RSS, "Size of RSS in bytes.", &[]),
    gauge(MEMORY_SWAP, "Container swap usage in bytes.", &[]),
    counter(
        MEMORY_FAILURES,
        "Cumulative count of memory allocation failures.",
        &["failure_type", "scope"],
    ),
    gauge(
        SPEC_MEMORY_LIMIT,
        "Memory limit for the container (0: none).",
        &[],
    ),
    counter(
        OOM_EVENTS,
        "Count of out of memory events observed for the container",
        &[],
    ),
    gauge(
        PROCESSES,
        "Number of processes running inside the container.",
        &[],
    ),
    gauge(
        THREADS,
        "Number of threads running inside the container",
        &[],
    ),
    gauge(
        START_TIME,
        "Start time of the container since unix epoch in seconds.",
        &[],
    ),
    gauge(
        FS_USAGE,
        "Number of bytes that are consumed by the container on this filesystem.",
        &["device"],
    ),
    gauge(
        FS_INODES_USED,
        "Number of inodes the container uses on this filesystem.",
        &["device"],
    ),
    gauge(
        FS_LIMIT,
        "Number of bytes that can be consumed by the container on this filesystem.",
        &["device"],
    ),
    gauge(FS_INODES_TOTAL, "Number of Inodes", &["device"]),
    gauge(FS_INODES_FREE, "Number of available Inodes", &["device"]),
    counter(
        NET_RX_BYTES,
        "Cumulative count of bytes received",
        &["interface"],
    ),
    counter(
        NET_RX_PACKETS,
        "Cumulative count of packets received",
        &["interface"],
    ),
    counter(
        NET_RX_ERRORS,
        "Cumulative count of errors encountered while receiving",
        &["interface"],
    ),
    counter(
        NET_RX_DROPPED,
        "Cumulative count of packets dropped while receiving",
        &["interface"],
    ),
    counter(
        NET_TX_BYTES,
        "Cumulative count of bytes transmitted",
        &["interface"],
    ),
    counter(
        NET_TX_PACKETS,
        "Cumulative count of packets transmitted",
        &["interface"],
    ),
    counter(
        NET_TX_ERRORS,
        "Cumulative count of errors encountered while transmitting",
        &["interface"],
    ),
    counter(
        NET_TX_DROPPED,
        "Cumulative count of packets dropped while transmitting",
        &["interface"],
    ),
];

/// What ListMetricDescriptors answers.
pub fn descriptors() -> Vec<MetricDescriptor> {
    DESCRIPTORS
        .iter()
        .map(|d| MetricDescriptor {
            name: d.name.to_string(),
            help: d.help.to_string(),
            label_keys: BASE_LABELS
                .iter()
                .chain(d.extra)
                .map(|s| s.to_string())
                .collect(),
        })
        .collect()
}

/// The file system a container's writable layer is on (statvfs of its mount point).
#[derive(Debug, Clone, Default)]
pub struct FsCapacity {
    pub bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// One container's readings beyond what `ContainerUsage` has: from its cgroup.
#[derive(Debug, Clone, Default)]
pub struct ContainerExtra {
    pub processes: Option<u64>,
    pub threads: Option<u64>,
    pub oom_kills: Option<u64>,
    pub fs: Option<FsCapacity>,
}

/// Series of one object (a container or the pod), all with its base labels.
struct Series {
    base: Vec<String>,
    timestamp: i64,
    out: Vec<Metric>,
}

impl Series {
    fn new(base: Vec<String>, timestamp: i64) -> Self {
        Series {
            base,
            timestamp,
            out: Vec::new(),
        }
    }

    fn push(&mut self, name: &'static str, extra: &[&str], value: u64) {
        let kind = DESCRIPTORS
            .iter()
            .find(|d| d.name == name)
            .map_or(MetricType::Gauge, |d| d.kind);
        self.out.push(Metric {
            name: name.to_string(),
            timestamp: self.timestamp,
            metric_type: kind as i32,
            label_values: self
                .base
                .iter()
                .cloned()
                .chain(extra.iter().map(|s| s.to_string()))
                .collect(),
            value: Some(UInt64Value { value }),
        });
    }

    /// CPU and memory from a cgroup's readings.
    #[allow(clippy::too_many_arguments)]
    fn cgroup(
        &mut self,
        cpu_ns: u64,
        usage: u64,
        working_set: u64,
        rss: u64,
        swap: u64,
        limit: u64,
        faults: u64,
        major_faults: u64,
    ) {
        // CRI values are integers: whole seconds, as CRI-O reports them.
        self.push(CPU_USAGE, &["total"], cpu_ns / 1_000_000_000);
        self.push(MEMORY_USAGE, &[], usage);
        self.push(MEMORY_WORKING_SET, &[], working_set);
        self.push(MEMORY_RSS, &[], rss);
        self.push(MEMORY_SWAP, &[], swap);
        self.push(SPEC_MEMORY_LIMIT, &[], limit);
        self.push(MEMORY_FAILURES, &["pgfault", "container"], faults);
        self.push(MEMORY_FAILURES, &["pgmajfault", "container"], major_faults);
    }
}

fn pod_labels(pod: &SandboxRecord) -> (String, String) {
    let m = pod.config.metadata.clone().unwrap_or_default();
    (m.name, m.namespace)
}

/// The metrics of one container.
pub fn container_metrics(
    pod: &SandboxRecord,
    u: &ContainerUsage,
    extra: &ContainerExtra,
) -> ContainerMetrics {
    let (pod_name, namespace) = pod_labels(pod);
    let rec = &u.record;
    let name = rec
        .config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let ts = u.cgroup.as_ref().map_or(u.layer_timestamp, |s| s.timestamp);
    let mut s = Series::new(
        vec![
            name,
            rec.id.clone(),
            rec.image_ref.clone(),
            rec.id.clone(),
            namespace,
            pod_name,
        ],
        ts,
    );
    if let Some(c) = u.cgroup.as_ref().filter(|c| c.has_cgroup) {
        s.cgroup(
            c.cpu_usage_ns,
            c.memory_usage_bytes,
            c.memory_working_set_bytes,
            c.memory_rss_bytes,
            c.swap_usage_bytes,
            c.memory_limit_bytes,
            c.page_faults,
            c.major_page_faults,
        );
    }
    if let Some(n) = extra.processes {
        s.push(PROCESSES, &[], n);
    }
    if let Some(n) = extra.threads {
        s.push(THREADS, &[], n);
    }
    if let Some(n) = extra.oom_kills {
        s.push(OOM_EVENTS, &[], n);
    }
    if rec.started_at > 0 {
        s.push(START_TIME, &[], (rec.started_at / 1_000_000_000) as u64);
    }
    let device = fs_device(&u.layer_dir);
    s.push(FS_USAGE, &[&device], u.layer_bytes);
    s.push(FS_INODES_USED, &[&device], u.layer_inodes);
    if let Some(fs) = &extra.fs {
        s.push(FS_LIMIT, &[&device], fs.bytes);
        s.push(FS_INODES_TOTAL, &[&device], fs.inodes);
        s.push(FS_INODES_FREE, &[&device], fs.inodes_free);
    }
    ContainerMetrics {
        container_id: rec.id.clone(),
        metrics: s.out,
    }
}

/// The `device` label of a writable layer: the snapshots' directory, as ContainerStats names
/// the layer's file system (`<dir>/<id>/fs` under it).
fn fs_device(layer_dir: &Path) -> String {
    layer_dir
        .ancestors()
        .nth(3)
        .unwrap_or(layer_dir)
        .display()
        .to_string()
}

/// The metrics of one pod: the pod itself (its cgroup parent, or the sum of its containers'
/// cgroups when it has none; its network namespace's interfaces but `lo`) and each container.
pub fn pod_metrics(
    pod: &SandboxRecord,
    usage: &PodUsage,
    containers: &[(ContainerUsage, ContainerExtra)],
) -> PodSandboxMetrics {
    let (pod_name, namespace) = pod_labels(pod);
    let mut s = Series::new(
        vec![
            String::new(),
            pod.id.clone(),
            String::new(),
            pod.id.clone(),
            namespace,
            pod_name,
        ],
        usage.timestamp,
    );
    if let Some(c) = &usage.cgroup {
        s.cgroup(
            c.cpu_usage_ns,
            c.memory_usage,
            c.memory_working_set,
            c.memory_rss,
            c.swap_usage,
            c.memory_limit,
            c.page_faults,
            c.major_page_faults,
        );
    } else {
        let live: Vec<_> = containers
            .iter()
            .filter_map(|(u, _)| u.cgroup.as_ref().filter(|c| c.has_cgroup))
            .collect();
        if !live.is_empty() {
            let sum = |f: fn(&berth_proto::v1::StatsResponse) -> u64| -> u64 {
                live.iter().map(|c| f(c)).sum()
            };
            s.cgroup(
                sum(|c| c.cpu_usage_ns),
                sum(|c| c.memory_usage_bytes),
                sum(|c| c.memory_working_set_bytes),
                sum(|c| c.memory_rss_bytes),
                sum(|c| c.swap_usage_bytes),
                0,
                sum(|c| c.page_faults),
                sum(|c| c.major_page_faults),
            );
        }
    }
    let processes: Option<u64> = containers
        .iter()
        .map(|(_, e)| e.processes)
        .try_fold(0u64, |acc, n| Some(acc + n.unwrap_or(0)))
        .filter(|_| containers.iter().any(|(_, e)| e.processes.is_some()));
    if let Some(n) = processes {
        s.push(PROCESSES, &[], n);
    }
    if let Some(n) = usage.process_count {
        s.push(THREADS, &[], n);
    }
    for i in usage.interfaces.iter().flatten().filter(|i| i.name != "lo") {
        let ifname = [i.name.as_str()];
        s.push(NET_RX_BYTES, &ifname, i.rx_bytes);
        s.push(NET_RX_PACKETS, &ifname, i.rx_packets);
        s.push(NET_RX_ERRORS, &ifname, i.rx_errors);
        s.push(NET_RX_DROPPED, &ifname, i.rx_dropped);
        s.push(NET_TX_BYTES, &ifname, i.tx_bytes);
        s.push(NET_TX_PACKETS, &ifname, i.tx_packets);
        s.push(NET_TX_ERRORS, &ifname, i.tx_errors);
        s.push(NET_TX_DROPPED, &ifname, i.tx_dropped);
    }
    PodSandboxMetrics {
        pod_sandbox_id: pod.id.clone(),
        metrics: s.out,
        container_metrics: containers
            .iter()
            .map(|(u, e)| container_metrics(pod, u, e))
            .collect(),
    }
}

/// What a container's cgroup says beyond the shim's stats, and its layer's file system.
/// Blocking (reads files).
fn container_extra(cgroups_path: Option<&Path>, layer_dir: &Path) -> ContainerExtra {
    let cg = cgroups_path.and_then(|p| berth_cgroups::Cgroup::for_host(p).ok());
    let cg = cg.filter(|c| c.dirs().iter().any(|d| d.is_dir()));
    let fs = nix::sys::statvfs::statvfs(layer_dir)
        .ok()
        .map(|v| FsCapacity {
            bytes: v.blocks().saturating_mul(v.fragment_size()),
            inodes: v.files(),
            inodes_free: v.files_available(),
        });
    ContainerExtra {
        processes: cg
            .as_ref()
            .and_then(|c| c.procs().ok())
            .map(|p| p.len() as u64),
        threads: cg.as_ref().and_then(|c| c.pids_current()),
        oom_kills: cg.as_ref().and_then(|c| c.oom_kill_count().ok().flatten()),
        fs,
    }
}

/// `linux.cgroupsPath` of a container's bundle spec.
fn cgroups_path(bundle: &Path) -> Option<PathBuf> {
    let bytes = std::fs::read(bundle.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.pointer("/linux/cgroupsPath")?.as_str().map(PathBuf::from)
}

/// One reading of every pod and its live containers.
pub async fn collect(daemon: &Daemon, paths: &mut HashMap<String, Option<PathBuf>>) {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for pod in daemon.sandboxes.list(None) {
        let parent = pod
            .config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .filter(|p| !p.is_empty());
        let netns = pod.pin(NsKind::Net).map(Path::to_path_buf);
        let usage = tokio::task::spawn_blocking(move || {
            crate::sandbox::stats::pod_usage(parent.as_deref(), netns.as_deref())
        })
        .await
        .unwrap_or_default();
        let filter = k8s_cri::v1::ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            ..Default::default()
        };
        let records: Vec<ContainerRecord> = daemon
            .containers
            .list(Some(&filter))
            .into_iter()
            .filter(|c| c.sandbox_id == pod.id && c.state == ContainerState::Running)
            .collect();
        let mut containers = Vec::new();
        for u in daemon.containers.usage_without_rate(records).await {
            seen.insert(u.record.id.clone());
            let cg = paths
                .entry(u.record.id.clone())
                .or_insert_with(|| cgroups_path(&daemon.containers.bundle(&u.record.id)))
                .clone();
            let layer = u.layer_dir.clone();
            let extra = tokio::task::spawn_blocking(move || container_extra(cg.as_deref(), &layer))
                .await
                .unwrap_or_default();
            containers.push((u, extra));
        }
        out.push(pod_metrics(&pod, &usage, &containers));
    }
    paths.retain(|id, _| seen.contains(id));
    *daemon
        .pod_metrics
        .write()
        .unwrap_or_else(|e| e.into_inner()) = Arc::new(out);
}

/// Read every pod and container every `period` until the daemon is gone.
pub async fn collect_forever(daemon: Weak<Daemon>, period: std::time::Duration) {
    let mut paths = HashMap::new();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(d) = daemon.upgrade() else { return };
        let started = std::time::Instant::now();
        collect(&d, &mut paths).await;
        crate::metrics::phase("pod_metrics_collection", started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::stats::InterfaceUsage;

    fn pod() -> SandboxRecord {
        let mut p: SandboxRecord = serde_json::from_str(r#"{"id":"p1"}"#).unwrap();
        p.config.metadata = Some(k8s_cri::v1::PodSandboxMetadata {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u".into(),
            attempt: 0,
        });
        p
    }

    fn container() -> ContainerUsage {
        let mut record: ContainerRecord = serde_json::from_str(r#"{"id":"c1"}"#).unwrap();
        record.image_ref = "busybox:latest".into();
        record.started_at = 5_000_000_000;
        record.config.metadata = Some(k8s_cri::v1::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        });
        ContainerUsage {
            record,
            cgroup: Some(berth_proto::v1::StatsResponse {
                timestamp: 7,
                has_cgroup: true,
                cpu_usage_ns: 2_500_000_000,
                memory_working_set_bytes: 4096,
                ..Default::default()
            }),
            nano_cores: None,
            layer_timestamp: 8,
            layer_bytes: 100,
            layer_inodes: 3,
            layer_dir: PathBuf::from("/var/lib/berth/snapshots/active/c1/fs"),
        }
    }

    fn find<'a>(m: &'a [Metric], name: &str, labels: &[(&str, &str)]) -> Option<&'a Metric> {
        let d = descriptors().into_iter().find(|d| d.name == name)?;
        m.iter().find(|x| {
            x.name == name
                && labels.iter().all(|(k, v)| {
                    d.label_keys
                        .iter()
                        .position(|key| key == k)
                        .is_some_and(|i| x.label_values[i] == *v)
                })
        })
    }

    #[test]
    fn every_sample_matches_its_descriptor() {
        let usage = PodUsage {
            timestamp: 9,
            cgroup: Some(berth_cgroups::Stats {
                cpu_usage_ns: 3_000_000_000,
                ..Default::default()
            }),
            process_count: Some(4),
            interfaces: Some(vec![
                InterfaceUsage {
                    name: "lo".into(),
                    rx_bytes: 1,
                    ..Default::default()
                },
                InterfaceUsage {
                    name: "eth0".into(),
                    rx_bytes: 1234,
                    tx_bytes: 99,
                    ..Default::default()
                },
            ]),
        };
        let extra = ContainerExtra {
            processes: Some(2),
            threads: Some(3),
            oom_kills: Some(0),
            fs: Some(FsCapacity::default()),
        };
        let m = pod_metrics(&pod(), &usage, &[(container(), extra)]);
        let descs = descriptors();
        let all = m
            .metrics
            .iter()
            .chain(m.container_metrics.iter().flat_map(|c| c.metrics.iter()));
        for s in all {
            let d = descs
                .iter()
                .find(|d| d.name == s.name)
                .unwrap_or_else(|| panic!("{} has no descriptor", s.name));
            assert_eq!(d.label_keys.len(), s.label_values.len(), "{}", s.name);
            assert!(s.value.is_some() && s.timestamp > 0, "{}", s.name);
        }
        // The pod: container "", its cgroup's CPU in whole seconds, eth0 but not lo.
        let pod_cpu = find(&m.metrics, CPU_USAGE, &[("container", ""), ("pod", "web")]).unwrap();
        assert_eq!(pod_cpu.value.as_ref().unwrap().value, 3);
        assert_eq!(pod_cpu.metric_type, MetricType::Counter as i32);
        let rx = find(&m.metrics, NET_RX_BYTES, &[("interface", "eth0")]).unwrap();
        assert_eq!(rx.value.as_ref().unwrap().value, 1234);
        assert!(find(&m.metrics, NET_RX_BYTES, &[("interface", "lo")]).is_none());
        assert_eq!(
            find(&m.metrics, PROCESSES, &[])
                .unwrap()
                .value
                .as_ref()
                .unwrap()
                .value,
            2
        );
        // The container: its name, id, image; the layer on its device.
        let c = &m.container_metrics[0];
        assert_eq!(c.container_id, "c1");
        let ws = find(
            &c.metrics,
            MEMORY_WORKING_SET,
            &[
                ("container", "app"),
                ("id", "c1"),
                ("image", "busybox:latest"),
            ],
        )
        .unwrap();
        assert_eq!(ws.value.as_ref().unwrap().value, 4096);
        assert_eq!(ws.metric_type, MetricType::Gauge as i32);
        let fs = find(
            &c.metrics,
            FS_USAGE,
            &[("device", "/var/lib/berth/snapshots")],
        )
        .unwrap();
        assert_eq!(fs.value.as_ref().unwrap().value, 100);
        assert_eq!(
            find(&c.metrics, START_TIME, &[])
                .unwrap()
                .value
                .as_ref()
                .unwrap()
                .value,
            5
        );
    }

    #[test]
    fn a_pod_without_cgroup_sums_its_containers() {
        let usage = PodUsage {
            timestamp: 9,
            ..Default::default()
        };
        let m = pod_metrics(
            &pod(),
            &usage,
            &[
                (container(), ContainerExtra::default()),
                (container(), ContainerExtra::default()),
            ],
        );
        let ws = find(&m.metrics, MEMORY_WORKING_SET, &[("container", "")]).unwrap();
        assert_eq!(ws.value.as_ref().unwrap().value, 8192);
        assert!(find(&m.metrics, NET_RX_BYTES, &[]).is_none());
    }

    #[test]
    fn descriptor_names_are_unique_and_cadvisor_shaped() {
        let d = descriptors();
        let names: std::collections::HashSet<_> = d.iter().map(|d| d.name.clone()).collect();
        assert_eq!(names.len(), d.len());
        for x in &d {
            assert!(x.name.starts_with("container_"), "{}", x.name);
            assert_eq!(x.label_keys[..6], BASE_LABELS.map(String::from));
        }
    }
}
