//! A cgroup's readings, filled in by the controllers that have them (see
//! [`Controller::stats`](crate::controller::Controller::stats)).

/// A cgroup's CPU and memory readings; bytes, and nanoseconds of CPU time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub cpu_usage_ns: u64,
    pub memory_usage: u64,
    /// Usage minus the inactive file cache (cAdvisor's and the kubelet's working set).
    pub memory_working_set: u64,
    pub memory_rss: u64,
    /// 0: no limit.
    pub memory_limit: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub swap_usage: u64,
}
