//! `stats`: CPU, memory and writable-layer usage of running containers, refreshed every
//! second like `docker stats`, or one table (`--no-stream`), or JSON.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use k8s_cri::v1::{ContainerStats, ListContainerStatsRequest, UInt64Value};

use crate::client::Clients;
use crate::output::{Format, human, human_binary, short_id};
use crate::resolve;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long)]
    pub no_stream: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only these containers (ids, prefixes or names).
    pub containers: Vec<String>,
}

fn v(x: Option<UInt64Value>) -> u64 {
    x.map_or(0, |v| v.value)
}

/// (CPU nanoseconds used, sample time in nanoseconds).
fn cpu_of(s: &ContainerStats) -> (u64, i64) {
    s.cpu
        .as_ref()
        .map_or((0, 0), |c| (v(c.usage_core_nano_seconds), c.timestamp))
}

async fn sample(c: &mut Clients, only: &[String]) -> anyhow::Result<Vec<ContainerStats>> {
    let mut stats =
        c.rt.list_container_stats(ListContainerStatsRequest { filter: None })
            .await?
            .into_inner()
            .stats;
    if !only.is_empty() {
        stats.retain(|s| s.attributes.as_ref().is_some_and(|a| only.contains(&a.id)));
    }
    stats.sort_by(|a, b| {
        let name = |s: &ContainerStats| {
            s.attributes
                .as_ref()
                .and_then(|a| a.metadata.as_ref())
                .map(|m| m.name.clone())
        };
        name(a).cmp(&name(b))
    });
    Ok(stats)
}

fn render(
    stats: &[ContainerStats],
    prev: &HashMap<String, (u64, i64)>,
    format: Format,
) -> anyhow::Result<String> {
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for s in stats {
        let a = s.attributes.clone().unwrap_or_default();
        let (used, at) = cpu_of(s);
        let cpu = match prev.get(&a.id) {
            Some(&(pu, pt)) if at > pt => used.saturating_sub(pu) as f64 / (at - pt) as f64 * 100.0,
            _ => v(s.cpu.as_ref().and_then(|c| c.usage_nano_cores)) as f64 / 1e7,
        };
        let mem = v(s.memory.as_ref().and_then(|m| m.working_set_bytes));
        let disk = v(s.writable_layer.as_ref().and_then(|w| w.used_bytes));
        let name = a.metadata.map(|m| m.name).unwrap_or_default();
        if format == Format::Json {
            json.push(serde_json::json!({
                "id": a.id,
                "name": name,
                "cpu_percent": (cpu * 100.0).round() / 100.0,
                "cpu_usage_core_nanoseconds": used,
                "memory_working_set_bytes": mem,
                "writable_layer_bytes": disk,
                "timestamp": at,
            }));
        } else {
            rows.push(vec![
                short_id(&a.id).to_string(),
                name,
                format!("{cpu:.2}%"),
                human_binary(mem),
                human(disk),
            ]);
        }
    }
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(&json)? + "\n");
    }
    let mut out = Vec::new();
    crate::output::table_into(
        &mut out,
        &["CONTAINER", "NAME", "CPU %", "MEM USAGE", "WRITABLE LAYER"],
        &rows,
    )?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

pub async fn run(c: &mut Clients, a: StatsArgs) -> anyhow::Result<()> {
    let mut only = Vec::new();
    for key in &a.containers {
        only.push(resolve::container(c, key).await?.id);
    }
    let remember = |stats: &[ContainerStats]| -> HashMap<String, (u64, i64)> {
        stats
            .iter()
            .filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), cpu_of(s))))
            .collect()
    };
    let mut prev = remember(&sample(c, &only).await?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let stats = sample(c, &only).await?;
        let text = render(&stats, &prev, a.format)?;
        let mut out = std::io::stdout().lock();
        if !a.no_stream {
            // Home and clear, as docker redraws its table.
            out.write_all(b"\x1b[H\x1b[2J")?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        drop(out);
        if a.no_stream {
            return Ok(());
        }
        prev = remember(&stats);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
