//! UpdateContainerResources and container stats: both go through the container's shim, which
//! owns its cgroup; the writable layer's usage is measured here, on the snapshot.

use crate::error::IoError;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_proto::paths::ShimPaths;
use berth_proto::v1 as shim;
use k8s_cri::v1::LinuxContainerResources;
use oci_spec::runtime::Spec;

use super::{ContainerError, ContainerRecord, ContainerState, Containers, write_atomic};
use crate::shim_client::{self, ShimError};

/// One container's readings.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub record: ContainerRecord,
    /// The cgroup's readings (None when the shim is gone).
    pub cgroup: Option<shim::StatsResponse>,
    /// CPU use since the previous reading, in nanocores (None on the first reading).
    pub nano_cores: Option<u64>,
    /// Unix nanoseconds of the writable layer walk.
    pub layer_timestamp: i64,
    pub layer_bytes: u64,
    pub layer_inodes: u64,
    /// Where the writable layer lives (its file system's mount point for the CRI fs id).
    pub layer_dir: std::path::PathBuf,
}

/// Disk usage (allocated bytes, as du counts them) and inodes of a directory tree, without
/// following symlinks or leaving its file system.
pub fn disk_usage(root: &Path) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::symlink_metadata(root)?;
    let dev = meta.dev();
    let mut seen_links = std::collections::HashSet::new();
    let (mut bytes, mut inodes) = (meta.blocks() * 512, 1u64);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(m) = entry.metadata() else { continue };
            if m.nlink() > 1 && !m.is_dir() && !seen_links.insert((m.dev(), m.ino())) {
                continue;
            }
            bytes += m.blocks() * 512;
            inodes += 1;
            if m.is_dir() && m.dev() == dev {
                stack.push(entry.path());
            }
        }
    }
    Ok((bytes, inodes))
}

impl Containers {
    /// UpdateContainerResources: new limits into the live cgroup, then into the bundle's spec
    /// and the record (what ContainerStatus reports and a restart keeps).
    pub async fn update_resources(
        &self,
        id: &str,
        resources: &LinuxContainerResources,
    ) -> Result<(), ContainerError> {
        let rec = self.refresh(&self.get(id)?.id).await?;
        if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is {:?}: its resources cannot be updated",
                rec.id, rec.state
            )));
        }
        // Device rules are the container's, not part of an update.
        let linux_resources = super::spec::linux_resources(resources)?;
        let update = serde_json::to_value(&linux_resources).map_err(|e| {
            ContainerError::Io(IoError::new(
                "encoding the resources",
                std::io::Error::other(e),
            ))
        })?;
        // The systemd driver: the unit's properties first, then the shim writes cgroupfs (the
        // spec's exact values win, as runc's systemd manager writes both).
        if let Some(cg) = crate::cgroup_driver::bundle_cgroups_path(&self.bundle(&rec.id)) {
            crate::cgroup_driver::container_updated(&cg, &linux_resources).await?;
        }
        let paths = ShimPaths::new(&self.state_dir, &rec.id);
        let mut c = shim_client::connect(&paths.socket).await?;
        c.update(shim::UpdateRequest {
            resources_json: update.to_string(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::InvalidArgument => {
                ContainerError::InvalidArgument(format!("container {}: {}", rec.id, s.message()))
            }
            tonic::Code::FailedPrecondition => {
                ContainerError::FailedPrecondition(format!("container {}: {}", rec.id, s.message()))
            }
            _ => ContainerError::Shim(ShimError::from(s)),
        })?;

        // The bundle's spec: the new values over the old (devices kept).
        let _l = self.locks.lock(&rec.id).await;
        let config = self.bundle(&rec.id).join("config.json");
        let mut spec: serde_json::Value =
            serde_json::to_value(Spec::load(&config).map_err(|e| {
                ContainerError::Io(IoError::new(
                    format!("reading {}", config.display()),
                    std::io::Error::other(e.to_string()),
                ))
            })?)
            .map_err(|e| {
                ContainerError::Io(IoError::new("encoding the spec", std::io::Error::other(e)))
            })?;
        if let (Some(current), Some(new)) = (
            spec.pointer_mut("/linux/resources")
                .and_then(|r| r.as_object_mut()),
            update.as_object(),
        ) {
            for (k, v) in new {
                current.insert(k.clone(), v.clone());
            }
        }
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| {
            ContainerError::Io(IoError::new("encoding the spec", std::io::Error::other(e)))
        })?;
        write_atomic(&config, &json)?;
        let mut rec = self.get(&rec.id)?;
        let linux = rec.config.linux.get_or_insert_with(Default::default);
        linux.resources = Some(resources.clone());
        self.persist(&rec)?;
        tracing::info!(container = %rec.id, "resources updated");
        Ok(())
    }

    /// Readings for each of `records` whose shim answers (in their order).
    pub async fn usage(&self, records: Vec<ContainerRecord>) -> Vec<ContainerUsage> {
        self.read_usage(records, true).await
    }

    /// As `usage`, without the CPU rate (`nano_cores` stays None): the periodic metrics
    /// collection reads this way, so the rate CRI stats report stays one between their calls.
    pub async fn usage_without_rate(&self, records: Vec<ContainerRecord>) -> Vec<ContainerUsage> {
        self.read_usage(records, false).await
    }

    async fn read_usage(&self, records: Vec<ContainerRecord>, rate: bool) -> Vec<ContainerUsage> {
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let paths = ShimPaths::new(&self.state_dir, &record.id);
            let cgroup = match shim_client::connect(&paths.socket).await {
                Ok(mut c) => c
                    .stats(shim::StatsRequest {})
                    .await
                    .ok()
                    .map(|r| r.into_inner()),
                Err(_) => None,
            };
            let nano_cores = cgroup.as_ref().filter(|_| rate).and_then(|s| {
                let mut prev = self.cpu_samples.lock().unwrap_or_else(|e| e.into_inner());
                let now = (s.timestamp, s.cpu_usage_ns);
                let before = prev.insert(record.id.clone(), now)?;
                let dt = now.0.checked_sub(before.0).filter(|d| *d > 0)? as u128;
                let du = now.1.checked_sub(before.1)? as u128;
                u64::try_from(du * 1_000_000_000 / dt).ok()
            });
            let layer_dir =
                crate::snapshot::ActiveSnapshot::in_bundle(&self.bundle(&record.id)).upper();
            let dir = layer_dir.clone();
            let (layer_bytes, layer_inodes) =
                tokio::task::spawn_blocking(move || disk_usage(&dir).unwrap_or((0, 0)))
                    .await
                    .unwrap_or((0, 0));
            out.push(ContainerUsage {
                record,
                cgroup,
                nano_cores,
                layer_timestamp: super::now_nanos(),
                layer_bytes,
                layer_inodes,
                layer_dir,
            });
        }
        // Forget samples of containers that are gone.
        let live: std::collections::HashSet<String> = self
            .registry
            .scan(|r| Some(r.id.clone()))
            .into_iter()
            .collect();
        self.cpu_samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| live.contains(id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_files_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 100_000]).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/c"), b"x").unwrap();
        let (bytes, inodes) = disk_usage(d.path()).unwrap();
        assert_eq!(inodes, 4, "root, a (b is the same inode), sub, c");
        assert!((100_000..200_000).contains(&bytes), "{bytes}");
    }
}
