//! `stats`: CPU, memory and writable-layer usage of containers.

use k8s_cri::v1::{ListContainerStatsRequest, UInt64Value};

use crate::client::Clients;
use crate::output::short_id;

pub async fn run(c: &mut Clients) -> anyhow::Result<()> {
    let stats =
        c.rt.list_container_stats(ListContainerStatsRequest { filter: None })
            .await?
            .into_inner()
            .stats;
    println!(
        "{:<15} {:<25} {:>12} {:>12} {:>12}",
        "CONTAINER", "NAME", "CPU (ms)", "MEM (KiB)", "DISK (KiB)"
    );
    for s in stats {
        let a = s.attributes.unwrap_or_default();
        let v = |x: Option<UInt64Value>| x.map_or(0, |v| v.value);
        println!(
            "{:<15} {:<25} {:>12} {:>12} {:>12}",
            short_id(&a.id),
            a.metadata.map(|m| m.name).unwrap_or_default(),
            v(s.cpu.and_then(|c| c.usage_core_nano_seconds)) / 1_000_000,
            v(s.memory.and_then(|m| m.working_set_bytes)) / 1024,
            v(s.writable_layer.and_then(|w| w.used_bytes)) / 1024,
        );
    }
    Ok(())
}
