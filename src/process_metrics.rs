//! berthd's own process metrics on `/metrics`, with Prometheus' standard `process_` names (what
//! every client library's process collector exports), read from /proc/self at each scrape.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, Opts};

/// What /proc/self says about this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessReading {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    /// Unix seconds.
    pub start_time: f64,
    pub open_fds: u64,
    pub max_fds: u64,
}

/// The fields of /proc/<pid>/stat after the command name (`(comm)` may hold spaces and
/// parentheses: the last `)` ends it).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// Parse /proc/self/stat with the clock tick, page size and boot time (unix seconds).
pub fn parse_stat(stat: &str, ticks: f64, page: u64, boot_time: f64) -> Option<ProcessReading> {
    let f = stat_fields(stat)?;
    // After the command: state is field 3 of proc(5), so field n is f[n - 3].
    let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some(ProcessReading {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        threads: field(20)?,
        start_time: boot_time + field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        ..Default::default()
    })
}

/// `btime` of /proc/stat: boot time, unix seconds.
pub fn parse_boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Read this process now.
pub fn read_self() -> Option<ProcessReading> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()? as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()? as u64;
    let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let mut r = parse_stat(
        &std::fs::read_to_string("/proc/self/stat").ok()?,
        ticks,
        page,
        boot,
    )?;
    r.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    r.max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()?
        .0;
    Some(r)
}

/// A collector of `process_*` for berthd (register it once).
pub struct ProcessCollector {
    descs: Vec<Desc>,
    cpu: Counter,
    resident: Gauge,
    virtual_mem: Gauge,
    threads: Gauge,
    start_time: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
}

impl ProcessCollector {
    pub fn new() -> Result<Self, prometheus::Error> {
        let cpu = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))?;
        let gauge = |name: &str, help: &str| Gauge::with_opts(Opts::new(name, help));
        let resident = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )?;
        let virtual_mem = gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        )?;
        let threads = gauge("process_threads", "Number of OS threads in the process.")?;
        let start_time = gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )?;
        let open_fds = gauge("process_open_fds", "Number of open file descriptors.")?;
        let max_fds = gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        )?;
        let descs = [
            cpu.desc(),
            resident.desc(),
            virtual_mem.desc(),
            threads.desc(),
            start_time.desc(),
            open_fds.desc(),
            max_fds.desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        Ok(ProcessCollector {
            descs,
            cpu,
            resident,
            virtual_mem,
            threads,
            start_time,
            open_fds,
            max_fds,
        })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(r) = read_self() else {
            return Vec::new();
        };
        // A counter only goes up: add what was used since the last scrape.
        let delta = r.cpu_seconds - self.cpu.get();
        if delta > 0.0 {
            self.cpu.inc_by(delta);
        }
        self.resident.set(r.resident_bytes as f64);
        self.virtual_mem.set(r.virtual_bytes as f64);
        self.threads.set(r.threads as f64);
        self.start_time.set(r.start_time);
        self.open_fds.set(r.open_fds as f64);
        self.max_fds.set(r.max_fds as f64);
        [
            self.cpu.collect(),
            self.resident.collect(),
            self.virtual_mem.collect(),
            self.threads.collect(),
            self.start_time.collect(),
            self.open_fds.collect(),
            self.max_fds.collect(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_the_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss
        let stat = "42 (ber) th (d)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 \
                    123456789 300 18446744073709551615";
        let r = parse_stat(stat, 100.0, 4096, 1_700_000_000.0).unwrap();
        assert_eq!(r.cpu_seconds, 3.0);
        assert_eq!(r.threads, 7);
        assert_eq!(r.start_time, 1_700_000_010.0);
        assert_eq!(r.virtual_bytes, 123_456_789);
        assert_eq!(r.resident_bytes, 300 * 4096);
        assert!(parse_stat("garbage", 100.0, 4096, 0.0).is_none());
    }

    #[test]
    fn boot_time() {
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000.0)
        );
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn this_process() {
        let c = ProcessCollector::new().unwrap();
        let families = c.collect();
        let get = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .get_metric()[0]
                .clone()
        };
        assert!(get("process_resident_memory_bytes").get_gauge().get_value() > 0.0);
        assert!(get("process_open_fds").get_gauge().get_value() >= 3.0);
        assert!(get("process_max_fds").get_gauge().get_value() >= 3.0);
        assert!(get("process_threads").get_gauge().get_value() >= 1.0);
        assert!(get("process_start_time_seconds").get_gauge().get_value() > 1.5e9);
        assert!(get("process_cpu_seconds_total").get_counter().get_value() >= 0.0);
    }
}
