//! UpdateContainerResources, ContainerStats, ListContainerStats.

use k8s_cri::v1::{
    ContainerAttributes, ContainerFilter, ContainerStats, ContainerStatsRequest,
    ContainerStatsResponse, CpuUsage, FilesystemIdentifier, FilesystemUsage,
    ListContainerStatsRequest, ListContainerStatsResponse, MemoryUsage, SwapUsage, UInt64Value,
    UpdateContainerResourcesRequest, UpdateContainerResourcesResponse,
};

use crate::container::resources::ContainerUsage;
use crate::daemon::Daemon;
use crate::error::Error;

pub async fn update_resources(
    daemon: &Daemon,
    req: UpdateContainerResourcesRequest,
) -> Result<UpdateContainerResourcesResponse, Error> {
    let linux = req.linux.ok_or_else(|| {
        Error::InvalidArgument("UpdateContainerResources needs linux resources".into())
    })?;
    daemon
        .containers
        .update_resources(&req.container_id, &linux)
        .await?;
    Ok(UpdateContainerResourcesResponse {})
}

fn value(v: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value: v })
}

/// CRI stats of one container's readings.
fn cri_stats(u: &ContainerUsage) -> ContainerStats {
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
                    usage_nano_cores: u.nano_cores.and_then(value),
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

pub async fn container_stats(
    daemon: &Daemon,
    req: ContainerStatsRequest,
) -> Result<ContainerStatsResponse, Error> {
    let rec = daemon.containers.get(&req.container_id)?;
    let usage = daemon.containers.usage(vec![rec]).await;
    Ok(ContainerStatsResponse {
        stats: usage.first().map(cri_stats),
    })
}

pub async fn list_container_stats(
    daemon: &Daemon,
    req: ListContainerStatsRequest,
) -> Result<ListContainerStatsResponse, Error> {
    let filter = req.filter.map(|f| ContainerFilter {
        id: f.id,
        state: None,
        pod_sandbox_id: f.pod_sandbox_id,
        label_selector: f.label_selector,
    });
    let records = daemon.containers.list(filter.as_ref());
    let usage = daemon.containers.usage(records).await;
    Ok(ListContainerStatsResponse {
        stats: usage.iter().map(cri_stats).collect(),
    })
}
