//! Records as CRI messages, where more than one call shows the same thing.

use k8s_cri::v1::{
    ContainerAttributes, ContainerFilter, ContainerStats, CpuUsage, FilesystemIdentifier,
    FilesystemUsage, ImageSpec, LinuxPodSandboxStats, MemoryUsage, NetworkInterfaceUsage,
    NetworkUsage, PodSandbox, PodSandboxAttributes, PodSandboxState, PodSandboxStats, ProcessUsage,
    SwapUsage, UInt64Value,
};

use crate::container::ContainerRecord;
use crate::container::resources::ContainerUsage;
use crate::daemon::Daemon;
use crate::sandbox::namespaces::NsKind;
use crate::sandbox::{SandboxRecord, SandboxState};

/// The image as the client named it, and the reference kubelet shows (a repo digest if known).
pub fn image_fields(daemon: &Daemon, r: &ContainerRecord) -> (Option<ImageSpec>, String) {
    let image_ref = daemon
        .images
        .resolve(&r.image_id)
        .and_then(|i| i.repo_digests.first().cloned())
        .unwrap_or_else(|| r.image_id.clone());
    (
        Some(ImageSpec {
            image: r.image_ref.clone(),
            ..Default::default()
        }),
        image_ref,
    )
}

/// A pod's state as CRI has it.
pub fn sandbox_state(s: SandboxState) -> i32 {
    match s {
        SandboxState::Ready => PodSandboxState::SandboxReady as i32,
        SandboxState::NotReady => PodSandboxState::SandboxNotready as i32,
    }
}

/// A pod as ListPodSandbox shows it.
pub fn pod_sandbox(r: &SandboxRecord) -> PodSandbox {
    PodSandbox {
        id: r.id.clone(),
        metadata: r.config.metadata.clone(),
        state: sandbox_state(r.state),
        created_at: r.created_at,
        labels: r.config.labels.clone(),
        annotations: r.config.annotations.clone(),
        runtime_handler: r.runtime_handler.clone(),
    }
}

fn value(v: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value: v })
}

/// CRI stats of one container's readings.
pub fn container_stats(u: &ContainerUsage) -> ContainerStats {
    let r = &u.record;
    let (cpu, memory, swap) = match &u.cgroup {
        Some(s) => {
            let available = (s.memory_limit_bytes > 0).then(|| {
                s.memory_limit_bytes
                    .saturating_sub(s.memory_working_set_bytes)
            });
            (
                Some(CpuUsage {
                    timestamp: s.timestamp,
                    usage_core_nano_seconds: value(s.cpu_usage_ns),
                    // 0 until there is a previous reading (containerd always sends it).
                    usage_nano_cores: value(u.nano_cores.unwrap_or(0)),
                }),
                Some(MemoryUsage {
                    timestamp: s.timestamp,
                    working_set_bytes: value(s.memory_working_set_bytes),
                    available_bytes: available.and_then(value),
                    usage_bytes: value(s.memory_usage_bytes),
                    rss_bytes: value(s.memory_rss_bytes),
                    page_faults: value(s.page_faults),
                    major_page_faults: value(s.major_page_faults),
                }),
                Some(SwapUsage {
                    timestamp: s.timestamp,
                    swap_available_bytes: None,
                    swap_usage_bytes: value(s.swap_usage_bytes),
                }),
            )
        }
        None => (None, None, None),
    };
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: r.id.clone(),
            metadata: r.config.metadata.clone(),
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
        }),
        cpu,
        memory,
        writable_layer: Some(FilesystemUsage {
            timestamp: u.layer_timestamp,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: u
                    .layer_dir
                    .ancestors()
                    .nth(3)
                    .unwrap_or(&u.layer_dir)
                    .display()
                    .to_string(),
            }),
            used_bytes: value(u.layer_bytes),
            inodes_used: value(u.layer_inodes),
        }),
        swap,
    }
}

/// CRI stats of one pod: its cgroup parent, its network namespace, its containers.
pub async fn pod_sandbox_stats(daemon: &Daemon, rec: SandboxRecord) -> PodSandboxStats {
    let parent = rec
        .config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .filter(|p| !p.is_empty());
    let netns = rec.pin(NsKind::Net).map(|p| p.to_path_buf());
    let usage = tokio::task::spawn_blocking(move || {
        crate::sandbox::stats::pod_usage(parent.as_deref(), netns.as_deref())
    })
    .await
    .unwrap_or_default();
    let filter = ContainerFilter {
        pod_sandbox_id: rec.id.clone(),
        ..Default::default()
    };
    let container_usage = daemon
        .containers
        .usage(daemon.containers.list(Some(&filter)))
        .await;
    let containers: Vec<ContainerStats> = container_usage.iter().map(container_stats).collect();
    // The pod has no process of its own (no pause): its CPU rate is its containers'.
    let nano_cores: u64 = container_usage.iter().filter_map(|u| u.nano_cores).sum();
    let ts = usage.timestamp;
    let (cpu, memory) = match &usage.cgroup {
        Some(s) => (
            Some(CpuUsage {
                timestamp: ts,
                usage_core_nano_seconds: value(s.cpu_usage_ns),
                usage_nano_cores: value(nano_cores),
            }),
            Some(MemoryUsage {
                timestamp: ts,
                working_set_bytes: value(s.memory_working_set),
                available_bytes: (s.memory_limit > 0)
                    .then(|| s.memory_limit.saturating_sub(s.memory_working_set))
                    .and_then(value),
                usage_bytes: value(s.memory_usage),
                rss_bytes: value(s.memory_rss),
                page_faults: value(s.page_faults),
                major_page_faults: value(s.major_page_faults),
            }),
        ),
        // No pod cgroup (a pod without cgroup_parent, as crictl's minimal pod.json): the sum
        // of its containers, which is all the pod runs.
        None if !containers.is_empty() => {
            let sum = |f: &dyn Fn(&ContainerStats) -> Option<u64>| -> u64 {
                containers.iter().filter_map(f).sum()
            };
            let mem = |f: fn(&MemoryUsage) -> &Option<UInt64Value>| {
                move |c: &ContainerStats| {
                    c.memory
                        .as_ref()
                        .and_then(|m| f(m).as_ref())
                        .map(|v| v.value)
                }
            };
            (
                Some(CpuUsage {
                    timestamp: ts,
                    usage_core_nano_seconds: value(sum(&|c| {
                        c.cpu
                            .as_ref()?
                            .usage_core_nano_seconds
                            .as_ref()
                            .map(|v| v.value)
                    })),
                    usage_nano_cores: value(nano_cores),
                }),
                Some(MemoryUsage {
                    timestamp: ts,
                    working_set_bytes: value(sum(&mem(|m| &m.working_set_bytes))),
                    available_bytes: None,
                    usage_bytes: value(sum(&mem(|m| &m.usage_bytes))),
                    rss_bytes: value(sum(&mem(|m| &m.rss_bytes))),
                    page_faults: value(sum(&mem(|m| &m.page_faults))),
                    major_page_faults: value(sum(&mem(|m| &m.major_page_faults))),
                }),
            )
        }
        None => (None, None),
    };
    let iface = |i: &crate::sandbox::stats::InterfaceUsage| NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: value(i.rx_bytes),
        rx_errors: value(i.rx_errors),
        tx_bytes: value(i.tx_bytes),
        tx_errors: value(i.tx_errors),
    };
    let network = usage.interfaces.as_ref().map(|ifs| NetworkUsage {
        timestamp: ts,
        default_interface: ifs.iter().find(|i| i.name == "eth0").map(iface),
        interfaces: ifs.iter().filter(|i| i.name != "lo").map(iface).collect(),
    });
    PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu,
            memory,
            network,
            process: usage.process_count.map(|n| ProcessUsage {
                timestamp: ts,
                process_count: value(n),
            }),
            containers,
        }),
        windows: None,
    }
}
