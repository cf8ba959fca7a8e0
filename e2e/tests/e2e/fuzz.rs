//! CRI request fuzzer (`make fuzz-cri`, never part of `make test`): thousands of valid requests
//! over every RuntimeService and ImageService call berth implements, most with one to three
//! fields mutated (strings empty, 64 KiB, with `..`, `/`, NUL or odd escapes; numbers negative,
//! `i64::MAX` or zero; unknown enum values; maps with thousands of entries; absurd resources;
//! odd paths; ids unknown, prefixes, empty), against a live berthd with a CNI network.
//!
//! Every call has a deadline: one that runs out is a failure (the call hangs). An answer with
//! code Unknown or Internal is a failure (bad input has a precise code; a valid request
//! succeeds or gets a documented code). All failures are collected and reported at the end;
//! berthd must still be running and answer Version. Then every pod and image is removed and
//! nothing may be left (as in `chaos`).
//!
//! `FUZZ_REQUESTS` (3000) and `FUZZ_SEED` (from the clock) pick the run; the seed is printed so
//! that a failure can be replayed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use berth_e2e::cri::*;
use berth_e2e::images::RuntimeEnv;
use berth_e2e::node::Node;
use berth_e2e::rng::Rng;
use k8s_cri::v1::*;

pub type Env = RuntimeEnv;

type TestFn = fn(&Env);

/// The suite's tests; the harness names them `fuzz::<name>`.
pub const TESTS: &[(&str, TestFn)] = &[("mutated_requests", mutated_requests)];

pub fn setup() -> Env {
    RuntimeEnv::start()
}

/// The container command: stops at SIGTERM within a second (a StopContainer with a huge timeout
/// still ends), and carries a marker the leak check looks for.
const SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 1; done; : fuzz-7777";
const MARKER: [&str; 1] = ["fuzz-7777"];

/// The client's deadline for every call: a call that takes longer hangs.
const DEADLINE: Duration = Duration::from_secs(20);

/// At most this many pods and containers live at once (the oldest go first).
const MAX_PODS: usize = 6;
const MAX_CONTAINERS: usize = 10;

/// Every call the fuzzer makes.
const RPCS: &[&str] = &[
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "RuntimeConfig",
    "GetContainerEvents",
    "ListImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
];

#[derive(Default, Debug)]
struct Count {
    calls: usize,
    mutated: usize,
    ok: usize,
    failures: usize,
}

#[derive(Debug, Clone)]
struct LivePod {
    id: String,
    ready: bool,
    created_at: i64,
}

#[derive(Debug, Clone)]
struct LiveCtr {
    id: String,
    state: i32,
    created_at: i64,
}

struct Fuzz<'a> {
    env: &'a Env,
    node: Node,
    rng: Rng,
    counts: BTreeMap<&'static str, Count>,
    failures: Vec<String>,
    /// Every pod and container id berth ever listed.
    seen: HashSet<String>,
    /// Pods and containers made by valid requests: valid requests act on these.
    clean: HashSet<String>,
    pods: Vec<LivePod>,
    ctrs: Vec<LiveCtr>,
    generation: usize,
    /// Mutations of the request being built.
    muts: Vec<String>,
}

/// A string of `n` bytes.
fn long(n: usize) -> String {
    "x".repeat(n)
}

/// A map of `n` entries.
fn big_map(n: usize) -> HashMap<String, String> {
    (0..n)
        .map(|i| (format!("key-{i}"), format!("v{i}")))
        .collect()
}

fn short(s: &str) -> String {
    if s.len() > 40 {
        format!("<{} bytes>", s.len())
    } else {
        format!("{s:?}")
    }
}

impl Fuzz<'_> {
    fn image(&self) -> String {
        self.env.set.busybox.reference()
    }

    fn user_image(&self) -> String {
        self.env.set.user.reference()
    }

    /// Record one mutation of the request being built.
    fn note(&mut self, what: impl Into<String>) {
        self.muts.push(what.into());
    }

    /// An odd string and its description.
    fn odd_str(&mut self) -> String {
        let choices: [&dyn Fn() -> String; 12] = [
            &String::new,
            &|| long(64 * 1024),
            &|| "..".into(),
            &|| "../../../../etc/passwd".into(),
            &|| "/".into(),
            &|| "/abs/path".into(),
            &|| "a/b".into(),
            &|| "nul\0byte".into(),
            &|| "\u{202e}\u{fffd}\u{7f}\u{1}".into(),
            &|| "%00%ff\\x80\\u0000".into(),
            &|| " spaced name ".into(),
            &|| "UPPER_CASE.dots".into(),
        ];
        let i = self.rng.below(choices.len());
        choices[i]()
    }

    /// An odd path (absolute, relative, with `..`).
    fn odd_path(&mut self) -> String {
        let choices = [
            "",
            "relative/dir",
            "../../../../tmp",
            "/tmp/../../..",
            "/",
            "/proc/self/root",
            "/dev/null",
            "/nonexistent/deep/path",
            "./.",
            "/sys/fs/cgroup",
        ];
        let p = *self.rng.pick(&choices);
        if self.rng.chance(10) {
            format!("/{}", long(64 * 1024))
        } else {
            p.to_string()
        }
    }

    fn odd_i64(&mut self) -> i64 {
        *self
            .rng
            .pick(&[-1, i64::MIN, i64::MAX, 0, 1, -1_000_000, 1 << 62])
    }

    fn odd_i32(&mut self) -> i32 {
        *self.rng.pick(&[-1, i32::MIN, i32::MAX, 0, 70000, 99])
    }

    fn odd_enum(&mut self) -> i32 {
        *self.rng.pick(&[99, -1, i32::MAX, 5])
    }

    fn odd_map(&mut self) -> HashMap<String, String> {
        match self.rng.below(4) {
            0 => big_map(5000),
            1 => [(String::new(), String::new())].into_iter().collect(),
            2 => [(long(64 * 1024), long(64 * 1024))].into_iter().collect(),
            _ => [("a/../b".to_string(), "nul\0".to_string())]
                .into_iter()
                .collect(),
        }
    }

    /// An id that is no live object's: unknown, a prefix, empty, odd.
    fn odd_id(&mut self, live: &str) -> String {
        let s = match self.rng.below(7) {
            0 => String::new(),
            1 => "0".repeat(64),
            2 => live.get(..5).unwrap_or_default().to_string(),
            3 => format!("{live}x"),
            4 => live.to_uppercase(),
            5 => self.odd_str(),
            _ => {
                // The id of an object of the other kind.
                let other: Vec<String> = self
                    .pods
                    .iter()
                    .map(|p| p.id.clone())
                    .chain(self.ctrs.iter().map(|c| c.id.clone()))
                    .filter(|i| i != live)
                    .collect();
                if other.is_empty() {
                    String::new()
                } else {
                    self.rng.pick(&other).clone()
                }
            }
        };
        self.note(format!("id={}", short(&s)));
        s
    }

    /// Absurd resources.
    fn odd_resources(&mut self, r: &mut LinuxContainerResources) {
        let v = self.odd_i64();
        match self.rng.below(11) {
            0 => {
                r.cpu_quota = v;
                self.note(format!("cpu_quota={v}"))
            }
            1 => {
                r.cpu_period = v;
                self.note(format!("cpu_period={v}"))
            }
            2 => {
                r.cpu_shares = v;
                self.note(format!("cpu_shares={v}"))
            }
            3 => {
                let m = *self.rng.pick(&[1, 4096, -1, i64::MAX, 1 << 50]);
                r.memory_limit_in_bytes = m;
                self.note(format!("memory_limit={m}"))
            }
            4 => {
                r.oom_score_adj = v;
                self.note(format!("oom_score_adj={v}"))
            }
            5 => {
                r.memory_swap_limit_in_bytes = v;
                self.note(format!("memory_swap={v}"))
            }
            6 => {
                let s = *self.rng.pick(&["abc", "0-99999", "-1", "1,,2", "9999"]);
                r.cpuset_cpus = s.into();
                self.note(format!("cpuset_cpus={s:?}"))
            }
            7 => {
                let s = *self.rng.pick(&["abc", "0-99999", "7", ""]);
                r.cpuset_mems = s.into();
                self.note(format!("cpuset_mems={s:?}"))
            }
            8 => {
                let size = self.odd_str();
                r.hugepage_limits = vec![HugepageLimit {
                    page_size: size.clone(),
                    limit: u64::MAX,
                }];
                self.note(format!("hugepage page_size={}", short(&size)))
            }
            9 => {
                r.unified = self.odd_map();
                self.note("unified=odd map")
            }
            _ => {
                let k =
                    *self
                        .rng
                        .pick(&["memory.max", "../../cgroup.procs", "cpu.weight", "pids.max"]);
                let val = self.odd_str();
                r.unified = [(k.to_string(), val.clone())].into_iter().collect();
                self.note(format!("unified {k}={}", short(&val)))
            }
        }
    }

    fn odd_profile(&mut self) -> SecurityProfile {
        let p = SecurityProfile {
            profile_type: if self.rng.chance(50) {
                self.odd_enum()
            } else {
                security_profile::ProfileType::Localhost as i32
            },
            localhost_ref: self.odd_path(),
        };
        self.note(format!(
            "profile type={} ref={}",
            p.profile_type,
            short(&p.localhost_ref)
        ));
        p
    }

    fn odd_namespaces(&mut self, ns: &mut NamespaceOption) {
        let v = self.odd_enum();
        match self.rng.below(5) {
            0 => {
                ns.network = v;
                self.note(format!("network mode={v}"))
            }
            1 => {
                ns.pid = v;
                self.note(format!("pid mode={v}"))
            }
            2 => {
                ns.ipc = v;
                self.note(format!("ipc mode={v}"))
            }
            3 => {
                ns.pid = NamespaceMode::Target as i32;
                ns.target_id = self.odd_str();
                self.note(format!("pid target={}", short(&ns.target_id)))
            }
            _ => {
                let m = IdMapping {
                    host_id: u32::MAX,
                    container_id: 0,
                    length: u32::MAX,
                };
                ns.userns_options = Some(UserNamespace {
                    mode: if self.rng.chance(50) {
                        v
                    } else {
                        NamespaceMode::Pod as i32
                    },
                    uids: vec![m],
                    gids: if self.rng.chance(50) { vec![m] } else { vec![] },
                });
                self.note(format!("userns mode={v} odd mappings"))
            }
        }
    }

    /// One mutation of a pod config (older kubelets still send the deprecated fields).
    #[allow(deprecated)]
    fn mutate_pod(&mut self, cfg: &mut PodSandboxConfig) {
        let linux = cfg.linux.get_or_insert_with(Default::default);
        let sc = linux.security_context.get_or_insert_with(Default::default);
        match self.rng.below(22) {
            0 => {
                cfg.metadata = None;
                self.note("metadata=None")
            }
            1 => {
                let s = self.odd_str();
                cfg.metadata.get_or_insert_with(Default::default).name = s.clone();
                self.note(format!("name={}", short(&s)))
            }
            2 => {
                let s = self.odd_str();
                cfg.metadata.get_or_insert_with(Default::default).uid = s.clone();
                self.note(format!("uid={}", short(&s)))
            }
            3 => {
                let s = self.odd_str();
                cfg.metadata.get_or_insert_with(Default::default).namespace = s.clone();
                self.note(format!("namespace={}", short(&s)))
            }
            4 => {
                cfg.metadata.get_or_insert_with(Default::default).attempt = u32::MAX;
                self.note("attempt=u32::MAX")
            }
            5 => {
                cfg.hostname = self.odd_str();
                self.note(format!("hostname={}", short(&cfg.hostname)))
            }
            6 => {
                cfg.log_directory = self.odd_path();
                self.note(format!("log_directory={}", short(&cfg.log_directory)))
            }
            7 => {
                let s = self.odd_str();
                cfg.dns_config = Some(DnsConfig {
                    servers: vec![s.clone(), "999.1.1.1".into()],
                    searches: vec![s.clone(); 10],
                    options: vec![s.clone()],
                });
                self.note(format!("dns={}", short(&s)))
            }
            8 => {
                let (c, h, p) = (self.odd_i32(), self.odd_i32(), self.odd_enum());
                let ip = self.odd_str();
                cfg.port_mappings = vec![PortMapping {
                    protocol: p,
                    container_port: c,
                    host_port: h,
                    host_ip: ip.clone(),
                }];
                self.note(format!(
                    "port mapping proto={p} container={c} host={h} ip={}",
                    short(&ip)
                ))
            }
            9 => {
                cfg.labels = self.odd_map();
                self.note("labels=odd map")
            }
            10 => {
                cfg.annotations = self.odd_map();
                self.note("annotations=odd map")
            }
            11 => {
                linux.cgroup_parent = self.odd_path();
                self.note(format!("cgroup_parent={}", short(&linux.cgroup_parent)))
            }
            12 => {
                let k = *self.rng.pick(&[
                    "net.ipv4.ip_forward",
                    "kernel.bogus",
                    "../../sysrq",
                    "",
                    "net/ipv4/ping_group_range",
                    "kernel.shm_rmid_forced",
                ]);
                let v = self.odd_str();
                linux.sysctls = [(k.to_string(), v.clone())].into_iter().collect();
                self.note(format!("sysctl {k}={}", short(&v)))
            }
            13 => {
                let ns = sc.namespace_options.get_or_insert_with(Default::default);
                let mut ns2 = ns.clone();
                self.odd_namespaces(&mut ns2);
                let linux = cfg.linux.get_or_insert_with(Default::default);
                let sc = linux.security_context.get_or_insert_with(Default::default);
                sc.namespace_options = Some(ns2);
            }
            14 => {
                let v = self.odd_i64();
                sc.run_as_user = Some(Int64Value { value: v });
                self.note(format!("pod run_as_user={v}"))
            }
            15 => {
                let v = self.odd_i64();
                sc.run_as_group = Some(Int64Value { value: v });
                self.note(format!("pod run_as_group={v}"))
            }
            16 => {
                let v = self.odd_i64();
                sc.supplemental_groups = vec![v; 70];
                sc.supplemental_groups_policy = self.odd_enum();
                self.note(format!(
                    "pod supplemental_groups={v} x70 policy={}",
                    sc.supplemental_groups_policy
                ))
            }
            17 => {
                let p = self.odd_profile();
                let linux = cfg.linux.get_or_insert_with(Default::default);
                let sc = linux.security_context.get_or_insert_with(Default::default);
                sc.seccomp = Some(p);
            }
            18 => {
                let p = self.odd_profile();
                let linux = cfg.linux.get_or_insert_with(Default::default);
                let sc = linux.security_context.get_or_insert_with(Default::default);
                sc.apparmor = Some(p);
            }
            19 => {
                let mut r = LinuxContainerResources::default();
                self.odd_resources(&mut r);
                let linux = cfg.linux.get_or_insert_with(Default::default);
                if self.rng.chance(50) {
                    linux.overhead = Some(r);
                } else {
                    linux.resources = Some(r);
                }
            }
            20 => {
                sc.privileged = true;
                sc.readonly_rootfs = true;
                sc.selinux_options = Some(SeLinuxOption {
                    user: "u".into(),
                    role: "r".into(),
                    r#type: "t".into(),
                    level: "s0:c1".into(),
                });
                self.note("privileged readonly selinux")
            }
            _ => {
                sc.seccomp_profile_path = self.odd_path();
                self.note(format!(
                    "seccomp_profile_path={}",
                    short(&sc.seccomp_profile_path)
                ))
            }
        }
    }

    /// One mutation of a container config (older kubelets still send the deprecated fields).
    #[allow(deprecated)]
    fn mutate_ctr(&mut self, cfg: &mut ContainerConfig) {
        match self.rng.below(26) {
            0 => {
                cfg.metadata = None;
                self.note("metadata=None")
            }
            1 => {
                let s = self.odd_str();
                cfg.metadata.get_or_insert_with(Default::default).name = s.clone();
                self.note(format!("name={}", short(&s)))
            }
            2 => {
                cfg.metadata.get_or_insert_with(Default::default).attempt = u32::MAX;
                self.note("attempt=u32::MAX")
            }
            3 => {
                if self.rng.chance(30) {
                    cfg.image = None;
                    self.note("image=None")
                } else {
                    let s = self.odd_str();
                    cfg.image = spec(&s);
                    self.note(format!("image={}", short(&s)))
                }
            }
            4 => {
                let s = self.odd_str();
                cfg.command = if self.rng.chance(30) {
                    Vec::new()
                } else {
                    vec![s.clone()]
                };
                cfg.args = vec![s.clone()];
                self.note(format!(
                    "command={:?} args={}",
                    cfg.command.len(),
                    short(&s)
                ))
            }
            5 => {
                cfg.working_dir = self.odd_path();
                self.note(format!("working_dir={}", short(&cfg.working_dir)))
            }
            6 => {
                let k = self.odd_str();
                let v = self.odd_str();
                let n = if self.rng.chance(30) { 3000 } else { 1 };
                cfg.envs = (0..n)
                    .map(|i| KeyValue {
                        key: if n > 1 { format!("{k}{i}") } else { k.clone() },
                        value: v.clone(),
                    })
                    .collect();
                self.note(format!("envs {n} x {}={}", short(&k), short(&v)))
            }
            7 | 8 => {
                let (c, h) = (self.odd_path(), self.odd_path());
                let propagation = if self.rng.chance(50) {
                    self.odd_enum()
                } else {
                    MountPropagation::PropagationBidirectional as i32
                };
                cfg.mounts = vec![Mount {
                    container_path: c.clone(),
                    host_path: h.clone(),
                    readonly: self.rng.chance(50),
                    recursive_read_only: self.rng.chance(30),
                    propagation,
                    ..Default::default()
                }];
                self.note(format!(
                    "mount {} -> {} propagation={propagation}",
                    short(&h),
                    short(&c)
                ))
            }
            9 => {
                let m = IdMapping {
                    host_id: u32::MAX,
                    container_id: u32::MAX,
                    length: u32::MAX,
                };
                cfg.mounts = vec![Mount {
                    container_path: "/mnt".into(),
                    host_path: "/tmp".into(),
                    uid_mappings: vec![m],
                    gid_mappings: vec![m],
                    image: spec(&self.odd_str()),
                    ..Default::default()
                }];
                self.note("mount with id mappings and an image")
            }
            10 => {
                let (c, h) = (self.odd_path(), self.odd_path());
                let p = self.odd_str();
                cfg.devices = vec![Device {
                    container_path: c.clone(),
                    host_path: h.clone(),
                    permissions: p.clone(),
                }];
                self.note(format!(
                    "device {} -> {} perms={}",
                    short(&h),
                    short(&c),
                    short(&p)
                ))
            }
            11 => {
                cfg.labels = self.odd_map();
                self.note("labels=odd map")
            }
            12 => {
                cfg.annotations = self.odd_map();
                self.note("annotations=odd map")
            }
            13 => {
                cfg.log_path = self.odd_path();
                self.note(format!("log_path={}", short(&cfg.log_path)))
            }
            14 => {
                cfg.stdin = true;
                cfg.stdin_once = true;
                cfg.tty = true;
                self.note("stdin stdin_once tty")
            }
            15..=17 => {
                let mut r = LinuxContainerResources::default();
                self.odd_resources(&mut r);
                cfg.linux.get_or_insert_with(Default::default).resources = Some(r);
            }
            18 => {
                let s = self.odd_str();
                let caps = *self.rng.pick(&["CAP_BOGUS", "ALL", "sys_admin", ""]);
                let sc = security(cfg);
                sc.capabilities = Some(Capability {
                    add_capabilities: vec![caps.into(), s.clone()],
                    drop_capabilities: vec![s.clone()],
                    add_ambient_capabilities: vec![caps.into()],
                });
                self.note(format!("capabilities {caps} {}", short(&s)))
            }
            19 => {
                let v = self.odd_i64();
                let sc = security(cfg);
                if self.rng.chance(50) {
                    sc.run_as_user = Some(Int64Value { value: v });
                    self.note(format!("run_as_user={v}"))
                } else {
                    sc.run_as_group = Some(Int64Value { value: v });
                    self.note(format!("run_as_group={v}"))
                }
            }
            20 => {
                let s = self.odd_str();
                security(cfg).run_as_username = s.clone();
                self.note(format!("run_as_username={}", short(&s)))
            }
            21 => {
                let mut ns = NamespaceOption::default();
                self.odd_namespaces(&mut ns);
                security(cfg).namespace_options = Some(ns);
            }
            22 => {
                let p = self.odd_profile();
                if self.rng.chance(50) {
                    security(cfg).seccomp = Some(p);
                } else {
                    security(cfg).apparmor = Some(p);
                }
            }
            23 => {
                let (a, b) = (self.odd_path(), self.odd_path());
                let sc = security(cfg);
                sc.masked_paths = vec![a.clone()];
                sc.readonly_paths = vec![b.clone()];
                self.note(format!("masked={} readonly={}", short(&a), short(&b)))
            }
            24 => {
                let v = self.odd_i64();
                let policy = self.odd_enum();
                let sc = security(cfg);
                sc.supplemental_groups = vec![v; 70];
                sc.supplemental_groups_policy = policy;
                self.note(format!("supplemental_groups={v} x70 policy={policy}"))
            }
            _ => {
                let s = self.odd_str();
                cfg.cdi_devices = vec![CdiDevice { name: s.clone() }];
                let p = self.odd_path();
                security(cfg).apparmor_profile = p.clone();
                self.note(format!(
                    "cdi device={} apparmor_profile={}",
                    short(&s),
                    short(&p)
                ))
            }
        }
    }

    /// How many mutations the next request gets: none (15%) or one to three.
    fn mutations(&mut self) -> usize {
        if self.rng.chance(15) {
            0
        } else {
            1 + self.rng.below(3)
        }
    }

    fn new_name(&mut self, what: &str) -> String {
        self.generation += 1;
        format!("fuzz-{what}-{}", self.generation)
    }

    /// A live pod id (a clean one when `clean`); empty when there is none.
    fn some_pod(&mut self, clean: bool, ready: bool) -> String {
        let ids: Vec<String> = self
            .pods
            .iter()
            .filter(|p| (!clean || self.clean.contains(&p.id)) && (!ready || p.ready))
            .map(|p| p.id.clone())
            .collect();
        if ids.is_empty() {
            String::new()
        } else {
            self.rng.pick(&ids).clone()
        }
    }

    /// A live container id, preferring `state` (a clean one when `clean`).
    fn some_ctr(&mut self, clean: bool, state: Option<ContainerState>) -> String {
        let pick = |want: Option<ContainerState>| -> Vec<String> {
            self.ctrs
                .iter()
                .filter(|c| {
                    (!clean || self.clean.contains(&c.id))
                        && want.is_none_or(|s| c.state == s as i32)
                })
                .map(|c| c.id.clone())
                .collect()
        };
        let mut ids = pick(state);
        if ids.is_empty() {
            ids = pick(None);
        }
        if ids.is_empty() {
            String::new()
        } else {
            self.rng.pick(&ids).clone()
        }
    }

    /// `id` or, for `n` > 0, one of its mutations, leaving n - 1 mutations for other fields.
    fn id_field(&mut self, id: String, n: &mut usize) -> String {
        if *n > 0 && self.rng.chance(50) {
            *n -= 1;
            self.odd_id(&id)
        } else {
            id
        }
    }

    /// Run `call`, mutated by the mutations noted, as one fuzz request.
    async fn request<T>(
        &mut self,
        rpc: &'static str,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Option<T> {
        let muts = std::mem::take(&mut self.muts);
        let count = self.counts.entry(rpc).or_default();
        count.calls += 1;
        if !muts.is_empty() {
            count.mutated += 1;
        }
        let what = if muts.is_empty() {
            "valid request".to_string()
        } else {
            muts.join("; ")
        };
        match tokio::time::timeout(DEADLINE, call).await {
            Err(_) => {
                count.failures += 1;
                self.failures
                    .push(format!("{rpc} [{what}]: no answer in {DEADLINE:?}"));
                None
            }
            Ok(Ok(v)) => {
                count.ok += 1;
                Some(v)
            }
            Ok(Err(status)) => {
                // A status with a source never came from berth: the transport failed (an answer
                // too large for HTTP/2, a dropped connection).
                let transport = std::error::Error::source(&status).is_some();
                if transport
                    || matches!(status.code(), tonic::Code::Unknown | tonic::Code::Internal)
                {
                    count.failures += 1;
                    let mut msg = status.message().to_string();
                    msg.truncate(300);
                    self.failures
                        .push(format!("{rpc} [{what}]: {:?}: {msg}", status.code()));
                }
                None
            }
        }
    }

    /// What berth lists now.
    async fn refresh(&mut self) {
        let mut rt = self.node.runtime().await;
        if let Ok(Ok(r)) = tokio::time::timeout(
            DEADLINE,
            rt.list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )
        .await
        {
            self.pods = r
                .into_inner()
                .items
                .into_iter()
                .map(|p| LivePod {
                    id: p.id,
                    ready: p.state == PodSandboxState::SandboxReady as i32,
                    created_at: p.created_at,
                })
                .collect();
        }
        if let Ok(Ok(r)) = tokio::time::timeout(
            DEADLINE,
            rt.list_containers(ListContainersRequest { filter: None }),
        )
        .await
        {
            self.ctrs = r
                .into_inner()
                .containers
                .into_iter()
                .map(|c| LiveCtr {
                    id: c.id,
                    state: c.state,
                    created_at: c.created_at,
                })
                .collect();
        }
        self.seen.extend(self.pods.iter().map(|p| p.id.clone()));
        self.seen.extend(self.ctrs.iter().map(|c| c.id.clone()));
    }

    /// Keep a few pods and containers live, and not too many.
    async fn housekeeping(&mut self) {
        self.refresh().await;
        if self.pods.len() > MAX_PODS {
            let mut pods = self.pods.clone();
            pods.sort_by_key(|p| p.created_at);
            for p in &pods[..pods.len() - MAX_PODS] {
                let mut rt = self.node.runtime().await;
                let id = p.id.clone();
                self.request("StopPodSandbox", async {
                    rt.stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await
                })
                .await;
                self.request("RemovePodSandbox", async {
                    rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                        .await
                })
                .await;
            }
        }
        if self.ctrs.len() > MAX_CONTAINERS {
            let mut ctrs = self.ctrs.clone();
            ctrs.sort_by_key(|c| c.created_at);
            for c in &ctrs[..ctrs.len() - MAX_CONTAINERS] {
                let mut rt = self.node.runtime().await;
                let id = c.id.clone();
                self.request("RemoveContainer", async {
                    rt.remove_container(RemoveContainerRequest { container_id: id })
                        .await
                })
                .await;
            }
        }
        self.refresh().await;
        let ready_clean = self
            .pods
            .iter()
            .filter(|p| p.ready && self.clean.contains(&p.id))
            .count();
        for _ in ready_clean..2 {
            let name = self.new_name("pod");
            let cfg = net_pod(&name, &self.node);
            let mut rt = self.node.runtime().await;
            if let Some(r) = self
                .request("RunPodSandbox", async {
                    rt.run_pod_sandbox(RunPodSandboxRequest {
                        config: Some(cfg),
                        runtime_handler: String::new(),
                    })
                    .await
                })
                .await
            {
                self.clean.insert(r.into_inner().pod_sandbox_id);
            }
        }
        self.refresh().await;
        let clean_running = self
            .ctrs
            .iter()
            .filter(|c| {
                c.state == ContainerState::ContainerRunning as i32 && self.clean.contains(&c.id)
            })
            .count();
        if clean_running == 0 {
            let pod = self.some_pod(true, true);
            let name = self.new_name("ctr");
            let cfg = container_config(&name, &self.image(), &["sh", "-c", SCRIPT]);
            let mut rt = self.node.runtime().await;
            if let Some(r) = self
                .request("CreateContainer", async {
                    rt.create_container(CreateContainerRequest {
                        pod_sandbox_id: pod,
                        config: Some(cfg),
                        sandbox_config: None,
                    })
                    .await
                })
                .await
            {
                let id = r.into_inner().container_id;
                self.clean.insert(id.clone());
                self.request("StartContainer", async {
                    rt.start_container(StartContainerRequest { container_id: id })
                        .await
                })
                .await;
            }
            self.refresh().await;
        }
    }

    /// One request of `rpc`, valid or mutated.
    async fn one(&mut self, rpc: &'static str) {
        let mut n = self.mutations();
        let valid = n == 0;
        let node_rt = self.node.runtime().await;
        let node_img = self.node.images().await;
        let mut rt = node_rt;
        let mut img = node_img;
        match rpc {
            "Version" => {
                let mut version = "v1".to_string();
                if n > 0 {
                    version = self.odd_str();
                    self.note(format!("version={}", short(&version)));
                }
                self.request(rpc, rt.version(VersionRequest { version }))
                    .await;
            }
            "RunPodSandbox" => {
                let name = self.new_name("pod");
                let mut cfg = net_pod(&name, &self.node);
                let mut handler = String::new();
                for _ in 0..n {
                    if self.rng.chance(5) {
                        handler = self.odd_str();
                        self.note(format!("runtime_handler={}", short(&handler)));
                    } else {
                        self.mutate_pod(&mut cfg);
                    }
                }
                if let Some(r) = self
                    .request(
                        rpc,
                        rt.run_pod_sandbox(RunPodSandboxRequest {
                            config: Some(cfg),
                            runtime_handler: handler,
                        }),
                    )
                    .await
                    && valid
                {
                    self.clean.insert(r.into_inner().pod_sandbox_id);
                }
            }
            "StopPodSandbox" | "RemovePodSandbox" | "PodSandboxStatus" | "PodSandboxStats" => {
                let id = self.some_pod(valid, false);
                let id = if n > 0 { self.odd_id(&id) } else { id };
                match rpc {
                    "StopPodSandbox" => {
                        self.request(
                            rpc,
                            rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id }),
                        )
                        .await;
                    }
                    "RemovePodSandbox" => {
                        // A valid removal stops the pod first, as kubelet does.
                        if valid {
                            let mut rt2 = rt.clone();
                            let stop_id = id.clone();
                            self.request("StopPodSandbox", async move {
                                rt2.stop_pod_sandbox(StopPodSandboxRequest {
                                    pod_sandbox_id: stop_id,
                                })
                                .await
                            })
                            .await;
                        }
                        self.request(
                            rpc,
                            rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }),
                        )
                        .await;
                    }
                    "PodSandboxStatus" => {
                        let verbose = self.rng.chance(50);
                        self.request(
                            rpc,
                            rt.pod_sandbox_status(PodSandboxStatusRequest {
                                pod_sandbox_id: id,
                                verbose,
                            }),
                        )
                        .await;
                    }
                    _ => {
                        self.request(
                            rpc,
                            rt.pod_sandbox_stats(PodSandboxStatsRequest { pod_sandbox_id: id }),
                        )
                        .await;
                    }
                }
            }
            "ListPodSandbox" | "ListPodSandboxStats" => {
                let mut filter = PodSandboxFilter::default();
                if self.rng.chance(50) {
                    filter.id = self.some_pod(false, false);
                }
                for _ in 0..n {
                    match self.rng.below(3) {
                        0 => {
                            let id = filter.id.clone();
                            filter.id = self.odd_id(&id);
                        }
                        1 => {
                            let s = self.odd_enum();
                            filter.state = Some(PodSandboxStateValue { state: s });
                            self.note(format!("state={s}"));
                        }
                        _ => {
                            filter.label_selector = self.odd_map();
                            self.note("label_selector=odd map");
                        }
                    }
                }
                if rpc == "ListPodSandbox" {
                    self.request(
                        rpc,
                        rt.list_pod_sandbox(ListPodSandboxRequest {
                            filter: Some(filter),
                        }),
                    )
                    .await;
                } else {
                    self.request(
                        rpc,
                        rt.list_pod_sandbox_stats(ListPodSandboxStatsRequest {
                            filter: Some(PodSandboxStatsFilter {
                                id: filter.id,
                                label_selector: filter.label_selector,
                            }),
                        }),
                    )
                    .await;
                }
            }
            "CreateContainer" => {
                let pod = self.some_pod(valid, true);
                let pod = self.id_field(pod, &mut n);
                let name = self.new_name("ctr");
                let mut cfg = container_config(&name, &self.image(), &["sh", "-c", SCRIPT]);
                let mut sandbox_config = None;
                for _ in 0..n {
                    if self.rng.chance(5) {
                        let mut p = net_pod("other", &self.node);
                        self.mutate_pod(&mut p);
                        sandbox_config = Some(p);
                    } else {
                        self.mutate_ctr(&mut cfg);
                    }
                }
                let desc = self.muts.join("; ");
                if let Some(r) = self
                    .request(
                        rpc,
                        rt.create_container(CreateContainerRequest {
                            pod_sandbox_id: pod,
                            config: Some(cfg),
                            sandbox_config,
                        }),
                    )
                    .await
                {
                    let id = r.into_inner().container_id;
                    if valid {
                        self.clean.insert(id.clone());
                    }
                    // Mutated configs are started too: the mutation may only bite there.
                    if valid || self.rng.chance(70) {
                        if !valid {
                            self.note(format!("start of a container created with [{desc}]"));
                        }
                        self.request(
                            "StartContainer",
                            rt.start_container(StartContainerRequest { container_id: id }),
                        )
                        .await;
                    }
                }
            }
            "StartContainer" | "StopContainer" | "RemoveContainer" | "ContainerStatus"
            | "ReopenContainerLog" | "ContainerStats" => {
                let want = match rpc {
                    "StartContainer" => Some(ContainerState::ContainerCreated),
                    "StopContainer" | "ReopenContainerLog" => {
                        Some(ContainerState::ContainerRunning)
                    }
                    "RemoveContainer" => Some(ContainerState::ContainerExited),
                    _ => None,
                };
                let id = self.some_ctr(valid, want);
                let id = self.id_field(id, &mut n);
                match rpc {
                    "StartContainer" => {
                        self.request(
                            rpc,
                            rt.start_container(StartContainerRequest { container_id: id }),
                        )
                        .await;
                    }
                    "StopContainer" => {
                        let mut timeout = *self.rng.pick(&[0, 1, 2]);
                        if n > 0 {
                            timeout = self.odd_i64();
                            self.note(format!("timeout={timeout}"));
                        }
                        self.request(
                            rpc,
                            rt.stop_container(StopContainerRequest {
                                container_id: id,
                                timeout,
                            }),
                        )
                        .await;
                    }
                    "RemoveContainer" => {
                        self.request(
                            rpc,
                            rt.remove_container(RemoveContainerRequest { container_id: id }),
                        )
                        .await;
                    }
                    "ContainerStatus" => {
                        let verbose = self.rng.chance(50);
                        self.request(
                            rpc,
                            rt.container_status(ContainerStatusRequest {
                                container_id: id,
                                verbose,
                            }),
                        )
                        .await;
                    }
                    "ReopenContainerLog" => {
                        self.request(
                            rpc,
                            rt.reopen_container_log(ReopenContainerLogRequest { container_id: id }),
                        )
                        .await;
                    }
                    _ => {
                        self.request(
                            rpc,
                            rt.container_stats(ContainerStatsRequest { container_id: id }),
                        )
                        .await;
                    }
                }
            }
            "ListContainers" | "ListContainerStats" => {
                let mut filter = ContainerFilter::default();
                if self.rng.chance(30) {
                    filter.id = self.some_ctr(false, None);
                }
                if self.rng.chance(30) {
                    filter.pod_sandbox_id = self.some_pod(false, false);
                }
                for _ in 0..n {
                    match self.rng.below(4) {
                        0 => {
                            let id = filter.id.clone();
                            filter.id = self.odd_id(&id);
                        }
                        1 => {
                            let id = filter.pod_sandbox_id.clone();
                            filter.pod_sandbox_id = self.odd_id(&id);
                        }
                        2 => {
                            let s = self.odd_enum();
                            filter.state = Some(ContainerStateValue { state: s });
                            self.note(format!("state={s}"));
                        }
                        _ => {
                            filter.label_selector = self.odd_map();
                            self.note("label_selector=odd map");
                        }
                    }
                }
                if rpc == "ListContainers" {
                    self.request(
                        rpc,
                        rt.list_containers(ListContainersRequest {
                            filter: Some(filter),
                        }),
                    )
                    .await;
                } else {
                    self.request(
                        rpc,
                        rt.list_container_stats(ListContainerStatsRequest {
                            filter: Some(ContainerStatsFilter {
                                id: filter.id,
                                pod_sandbox_id: filter.pod_sandbox_id,
                                label_selector: filter.label_selector,
                            }),
                        }),
                    )
                    .await;
                }
            }
            "UpdateContainerResources" => {
                let id = self.some_ctr(valid, Some(ContainerState::ContainerRunning));
                let id = self.id_field(id, &mut n);
                let mut linux = LinuxContainerResources {
                    cpu_shares: 512,
                    memory_limit_in_bytes: 256 << 20,
                    ..Default::default()
                };
                let mut annotations = HashMap::new();
                for _ in 0..n {
                    if self.rng.chance(10) {
                        annotations = self.odd_map();
                        self.note("annotations=odd map");
                    } else {
                        self.odd_resources(&mut linux);
                    }
                }
                self.request(
                    rpc,
                    rt.update_container_resources(UpdateContainerResourcesRequest {
                        container_id: id,
                        linux: Some(linux),
                        windows: None,
                        annotations,
                    }),
                )
                .await;
            }
            "ExecSync" => {
                let id = self.some_ctr(valid, Some(ContainerState::ContainerRunning));
                let id = self.id_field(id, &mut n);
                let mut cmd = vec!["echo".to_string(), "hi".to_string()];
                let mut timeout = 10;
                for _ in 0..n {
                    if self.rng.chance(50) {
                        timeout = *self.rng.pick(&[-1, i64::MIN, i64::MAX, 0]);
                        self.note(format!("timeout={timeout}"));
                    } else {
                        let s = self.odd_str();
                        cmd = if self.rng.chance(20) {
                            Vec::new()
                        } else {
                            vec![s.clone()]
                        };
                        self.note(format!("cmd={:?} {}", cmd.len(), short(&s)));
                    }
                }
                self.request(
                    rpc,
                    rt.exec_sync(ExecSyncRequest {
                        container_id: id,
                        cmd,
                        timeout,
                    }),
                )
                .await;
            }
            "Exec" | "Attach" => {
                let id = self.some_ctr(valid, Some(ContainerState::ContainerRunning));
                let id = self.id_field(id, &mut n);
                let mut cmd = vec!["sh".to_string()];
                let (mut tty, mut stdin, mut stdout, mut stderr) = (false, true, true, true);
                for _ in 0..n {
                    match self.rng.below(3) {
                        0 => {
                            tty = true;
                            stderr = true;
                            self.note("tty and stderr");
                        }
                        1 => {
                            (stdin, stdout, stderr) = (false, false, false);
                            self.note("no streams");
                        }
                        _ => {
                            let s = self.odd_str();
                            cmd = if self.rng.chance(30) {
                                Vec::new()
                            } else {
                                vec![s.clone()]
                            };
                            self.note(format!("cmd={:?} {}", cmd.len(), short(&s)));
                        }
                    }
                }
                if rpc == "Exec" {
                    self.request(
                        rpc,
                        rt.exec(ExecRequest {
                            container_id: id,
                            cmd,
                            tty,
                            stdin,
                            stdout,
                            stderr,
                        }),
                    )
                    .await;
                } else {
                    self.request(
                        rpc,
                        rt.attach(AttachRequest {
                            container_id: id,
                            stdin,
                            tty,
                            stdout,
                            stderr,
                        }),
                    )
                    .await;
                }
            }
            "PortForward" => {
                let id = self.some_pod(valid, true);
                let id = self.id_field(id, &mut n);
                let mut port = vec![80];
                if n > 0 {
                    let p = self.odd_i32();
                    port = if self.rng.chance(20) {
                        Vec::new()
                    } else {
                        vec![p; 1 + self.rng.below(3)]
                    };
                    self.note(format!("ports={port:?}"));
                }
                self.request(
                    rpc,
                    rt.port_forward(PortForwardRequest {
                        pod_sandbox_id: id,
                        port,
                    }),
                )
                .await;
            }
            "UpdateRuntimeConfig" => {
                let mut cidr = "10.88.0.0/16".to_string();
                let mut config = true;
                for _ in 0..n {
                    if self.rng.chance(20) {
                        config = false;
                        self.note("runtime_config=None");
                    } else {
                        cidr = (*self.rng.pick(&[
                            "",
                            "abc",
                            "10.0.0.0/99",
                            "10.0.0.0/8,fd00::/64",
                            "999.1.1.1/8",
                        ]))
                        .to_string();
                        if self.rng.chance(20) {
                            cidr = long(64 * 1024);
                        }
                        self.note(format!("pod_cidr={}", short(&cidr)));
                    }
                }
                self.request(
                    rpc,
                    rt.update_runtime_config(UpdateRuntimeConfigRequest {
                        runtime_config: config.then_some(RuntimeConfig {
                            network_config: Some(NetworkConfig { pod_cidr: cidr }),
                        }),
                    }),
                )
                .await;
            }
            "Status" => {
                let verbose = self.rng.chance(50);
                self.request(rpc, rt.status(StatusRequest { verbose }))
                    .await;
            }
            "RuntimeConfig" => {
                self.request(rpc, rt.runtime_config(RuntimeConfigRequest {}))
                    .await;
            }
            "GetContainerEvents" => {
                // The stream is answered at once; dropping it ends the subscription.
                self.request(rpc, rt.get_container_events(GetEventsRequest {}))
                    .await;
            }
            "ListImages" => {
                let mut filter = None;
                if self.rng.chance(50) {
                    filter = Some(ImageFilter {
                        image: spec(&self.image()),
                    });
                }
                if n > 0 {
                    let s = self.odd_str();
                    filter = Some(ImageFilter { image: spec(&s) });
                    self.note(format!("filter image={}", short(&s)));
                }
                self.request(rpc, img.list_images(ListImagesRequest { filter }))
                    .await;
            }
            "ImageStatus" | "PullImage" | "RemoveImage" => {
                // Valid pulls and removals work on the user image: busybox stays for the
                // containers.
                let mut image = if rpc == "ImageStatus" && self.rng.chance(50) {
                    self.image()
                } else {
                    self.user_image()
                };
                let mut auth = None;
                for _ in 0..n {
                    match self.rng.below(4) {
                        0 => {
                            image = self.odd_str();
                            self.note(format!("image={}", short(&image)));
                        }
                        1 => {
                            let repo = image
                                .rsplit_once(':')
                                .map_or(image.as_str(), |(r, _)| r)
                                .to_string();
                            let tag = *self.rng.pick(&[
                                "nope",
                                "UPPER",
                                "../x",
                                "@sha256:0000",
                                "@sha256:zz",
                            ]);
                            image = if tag.starts_with('@') {
                                format!("{repo}{tag}")
                            } else {
                                format!("{repo}:{tag}")
                            };
                            self.note(format!("image={image}"));
                        }
                        2 => {
                            let s = self.odd_str();
                            auth = Some(AuthConfig {
                                username: s.clone(),
                                password: s.clone(),
                                auth: s.clone(),
                                server_address: s.clone(),
                                identity_token: s.clone(),
                                registry_token: s.clone(),
                            });
                            self.note(format!("auth={}", short(&s)));
                        }
                        _ => {
                            let reg = self.image();
                            let host = reg.split('/').next().unwrap_or_default().to_string();
                            image = format!("{host}/nope/{}:latest", self.new_name("repo"));
                            self.note(format!("image={image}"));
                        }
                    }
                }
                match rpc {
                    "ImageStatus" => {
                        let verbose = self.rng.chance(50);
                        self.request(
                            rpc,
                            img.image_status(ImageStatusRequest {
                                image: spec(&image),
                                verbose,
                            }),
                        )
                        .await;
                    }
                    "PullImage" => {
                        self.request(
                            rpc,
                            img.pull_image(PullImageRequest {
                                image: spec(&image),
                                auth,
                                sandbox_config: None,
                            }),
                        )
                        .await;
                    }
                    _ => {
                        self.request(
                            rpc,
                            img.remove_image(RemoveImageRequest {
                                image: spec(&image),
                            }),
                        )
                        .await;
                        // A mutation may have removed busybox itself: pull it back.
                        let busybox = self.image();
                        if pull(&self.node, &busybox, None).await.is_err() {
                            self.failures
                                .push(format!("pulling {busybox} back after RemoveImage"));
                        }
                    }
                }
            }
            "ImageFsInfo" => {
                self.request(rpc, img.image_fs_info(ImageFsInfoRequest {}))
                    .await;
            }
            other => panic!("no request for {other}"),
        }
        self.muts.clear();
    }
}

/// The container's Linux security context, created when absent.
fn security(cfg: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

fn mutated_requests(env: &Env) {
    let requests: usize = std::env::var("FUZZ_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seed = Rng::seed_from_env("FUZZ_SEED");
    println!("fuzz: FUZZ_SEED={seed} FUZZ_REQUESTS={requests}");
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        pull_ok(&node, &env.set.busybox.reference()).await;
        pull_ok(&node, &env.set.user.reference()).await;
        let mut fuzz = Fuzz {
            env,
            node,
            rng: Rng::new(seed),
            counts: BTreeMap::new(),
            failures: Vec::new(),
            seen: HashSet::new(),
            clean: HashSet::new(),
            pods: Vec::new(),
            ctrs: Vec::new(),
            generation: 0,
            muts: Vec::new(),
        };
        let mut total = 0;
        while total < requests {
            if total.is_multiple_of(10) {
                fuzz.housekeeping().await;
            }
            let rpc = *fuzz.rng.pick(RPCS);
            fuzz.one(rpc).await;
            total += 1;
            if total.is_multiple_of(250) {
                println!("fuzz: {total} requests, {} failures", fuzz.failures.len());
            }
            if let Some(status) = fuzz.node.exited() {
                fuzz.failures
                    .push(format!("berthd exited with {status} after {rpc}"));
                break;
            }
        }
        // berthd is up and answers.
        let version = tokio::time::timeout(
            DEADLINE,
            fuzz.node.runtime().await.version(VersionRequest::default()),
        )
        .await;
        if !matches!(version, Ok(Ok(_))) {
            fuzz.failures
                .push(format!("Version after the run: {version:?}"));
        }
        if let Some(status) = fuzz.node.exited() {
            fuzz.failures.push(format!("berthd exited with {status}"));
        }
        // Remove everything, as kubelet would: pods, then images.
        fuzz.refresh().await;
        let mut rt = fuzz.node.runtime().await;
        for p in fuzz.pods.clone() {
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StopPodSandbox {}: {e:?}", p.id));
            rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemovePodSandbox {}: {e:?}", p.id));
        }
        fuzz.refresh().await;
        assert!(
            fuzz.pods.is_empty() && fuzz.ctrs.is_empty(),
            "left after removing everything: {:?} {:?}",
            fuzz.pods,
            fuzz.ctrs
        );
        let mut img = fuzz.node.images().await;
        let images = img
            .list_images(ListImagesRequest { filter: None })
            .await
            .expect("ListImages")
            .into_inner()
            .images;
        for i in images {
            img.remove_image(RemoveImageRequest { image: spec(&i.id) })
                .await
                .unwrap_or_else(|e| panic!("RemoveImage {}: {e:?}", i.id));
        }
        let node = &fuzz.node;
        let mut leaks = leaks(node, &net, &fuzz.seen, &MARKER).await;
        let left = img
            .list_images(ListImagesRequest { filter: None })
            .await
            .expect("ListImages")
            .into_inner()
            .images;
        leaks.extend(left.iter().map(|i| format!("image {}", i.id)));
        // Unreferenced content and snapshots go with the last image.
        let mut files = Vec::new();
        for _ in 0..100 {
            files = [
                node.root.join("content/blobs/sha256"),
                node.root.join("snapshots"),
            ]
            .iter()
            .flat_map(|d| dir_entries(d))
            .map(|p| format!("file {}", p.display()))
            .collect();
            if files.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        leaks.extend(files);
        let calls: usize = fuzz.counts.values().map(|c| c.calls).sum();
        let mutated: usize = fuzz.counts.values().map(|c| c.mutated).sum();
        println!("fuzz: by RPC (calls / mutated / ok / failures):");
        for (rpc, c) in &fuzz.counts {
            println!(
                "fuzz:   {rpc:<26} {:>5} {:>5} {:>5} {:>3}",
                c.calls, c.mutated, c.ok, c.failures
            );
        }
        for rpc in RPCS {
            if !fuzz.counts.contains_key(rpc) {
                fuzz.failures.push(format!("{rpc} was never called"));
            }
        }
        for f in &fuzz.failures {
            println!("fuzz: FAILURE {f}");
        }
        println!(
            "fuzz: {requests} requests drawn, {calls} calls ({mutated} mutated), {} failures, {} objects, leaks = {}",
            fuzz.failures.len(),
            fuzz.seen.len(),
            leaks.len()
        );
        assert!(leaks.is_empty(), "leaks: {leaks:#?}");
        assert!(
            fuzz.failures.is_empty(),
            "{} failures (listed above)",
            fuzz.failures.len()
        );
    });
}
