//! Pod-level readings: the pod cgroup (`cgroup_parent`, where its containers' cgroups live) and
//! the interfaces of the pod's network namespace.

use std::path::Path;

use berth_cgroups::{Cgroup, Stats};

/// One interface's counters (from the namespace's /proc/net/dev).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceUsage {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The pod's readings; None where the pod has no such thing (no cgroup parent, host network).
#[derive(Debug, Clone, Default)]
pub struct PodUsage {
    pub timestamp: i64,
    pub cgroup: Option<Stats>,
    pub process_count: Option<u64>,
    pub interfaces: Option<Vec<InterfaceUsage>>,
}

/// Parse /proc/net/dev (two header lines, then `name: rx_bytes packets errs ... tx_bytes ...`).
pub fn parse_net_dev(text: &str) -> Vec<InterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            (v.len() >= 12).then(|| InterfaceUsage {
                name: name.trim().to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

/// The interfaces of the network namespace pinned at `pin`, read from a short-lived thread
/// that joins it (no thread of berthd stays there).
pub fn interfaces_in(pin: &Path) -> std::io::Result<Vec<InterfaceUsage>> {
    let pin = pin.to_path_buf();
    std::thread::Builder::new()
        .name("pod-net-stats".into())
        .spawn(move || -> std::io::Result<Vec<InterfaceUsage>> {
            let f = std::fs::File::open(&pin)?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)?;
            Ok(parse_net_dev(&std::fs::read_to_string(
                "/proc/thread-self/net/dev",
            )?))
        })?
        .join()
        .map_err(|_| std::io::Error::other("pod network stats thread panicked"))?
}

/// Read a pod's usage: its cgroup parent (if any) and its network namespace (if own).
pub fn pod_usage(cgroup_parent: Option<&str>, netns: Option<&Path>) -> PodUsage {
    let cg = cgroup_parent
        .and_then(crate::cgroup_driver::pod_cgroup_path)
        .and_then(|p| Cgroup::for_host(&p).ok());
    PodUsage {
        timestamp: berth_sys::time::now_nanos(),
        cgroup: cg
            .as_ref()
            .filter(|c| c.dirs().iter().any(|d| d.is_dir()))
            .map(|c| c.stats()),
        process_count: cg.as_ref().and_then(|c| c.pids_current()),
        interfaces: netns.and_then(|p| interfaces_in(p).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  eth0: 5000   40    1    3    0     0          0         0     3000      30    2    0    0     0       0          0\n";
        let v = parse_net_dev(text);
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[1],
            InterfaceUsage {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_packets: 40,
                rx_errors: 1,
                rx_dropped: 3,
                tx_bytes: 3000,
                tx_packets: 30,
                tx_errors: 2,
                tx_dropped: 0,
            }
        );
    }
}
