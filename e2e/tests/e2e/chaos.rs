//! Chaos (`make chaos`, never part of `make test`): hundreds of random CRI operations over a
//! few dozen pods with berthd `kill -9`ed at random points (also in the middle of calls), shims
//! killed, and a CNI plugin that fails ADD now and then. After every restart the object the
//! interrupted call was working on is checked to be in its state before or after the call; every
//! so often, and at the end, every pod and container berth lists is exactly what was
//! acknowledged. Then everything is removed and nothing may be left: mounts, pins, veths, IPs,
//! cgroups, processes, files under root and state.
//!
//! `CHAOS_OPS` (500), `CHAOS_PODS` (20) and `CHAOS_SEED` (from the clock) pick the run; the
//! seed is printed so that a failure can be replayed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use berth_e2e::cri::*;
use berth_e2e::images::RuntimeEnv;
use berth_e2e::node::{Node, pids_with_cmdline};
use berth_e2e::rng::Rng;
use k8s_cri::v1::*;

pub type Env = RuntimeEnv;

type TestFn = fn(&Env);

/// The suite's tests; the harness names them `chaos::<name>`.
pub const TESTS: &[(&str, TestFn)] =
    &[("random_operations_and_kills", random_operations_and_kills)];

pub fn setup() -> Env {
    RuntimeEnv::start()
}

/// The container command: a marker the leak check looks for.
const SLEEP: [&str; 2] = ["sleep", "7777"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum C {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone)]
struct Ctr {
    id: String,
    name: String,
    state: C,
}

#[derive(Debug, Clone)]
struct Pod {
    id: String,
    name: String,
    ready: bool,
    containers: Vec<Ctr>,
}

/// One operation on the model's objects.
#[derive(Debug, Clone)]
enum Op {
    RunPod { slot: usize, name: String },
    Create { slot: usize, name: String },
    Start { slot: usize, c: usize },
    StopCtr { slot: usize, c: usize },
    RemoveCtr { slot: usize, c: usize },
    StopPod { slot: usize },
    RemovePod { slot: usize },
}

#[derive(Default, Debug)]
struct Counts {
    ops: usize,
    acknowledged: usize,
    refused: usize,
    berthd_kills: usize,
    kills_mid_call: usize,
    shim_kills: usize,
    cni_failures: usize,
}

fn cstate(s: i32) -> C {
    if s == ContainerState::ContainerCreated as i32 {
        C::Created
    } else if s == ContainerState::ContainerRunning as i32 {
        C::Running
    } else {
        C::Exited
    }
}

/// What berth says now: pods by id (ready, name) and containers by id (pod, name, state).
async fn truth(
    node: &Node,
) -> (
    HashMap<String, (bool, String)>,
    HashMap<String, (String, String, C)>,
) {
    let mut rt = node.runtime().await;
    let pods = rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
        .into_iter()
        .map(|p| {
            (
                p.id,
                (
                    p.state == PodSandboxState::SandboxReady as i32,
                    p.metadata.map(|m| m.name).unwrap_or_default(),
                ),
            )
        })
        .collect();
    let ctrs = rt
        .list_containers(ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
        .into_iter()
        .map(|c| {
            (
                c.id,
                (
                    c.pod_sandbox_id,
                    c.metadata.map(|m| m.name).unwrap_or_default(),
                    cstate(c.state),
                ),
            )
        })
        .collect();
    (pods, ctrs)
}

struct Chaos<'a> {
    env: &'a Env,
    node: Node,
    rng: Rng,
    slots: Vec<Option<Pod>>,
    counts: Counts,
    /// Every pod and container id berth ever answered or listed.
    seen: HashSet<String>,
    /// Containers whose shim was killed: they must become exited.
    shim_killed: HashSet<String>,
    generation: usize,
    /// What happened, for the report of a failure.
    journal: Vec<String>,
}

impl Chaos<'_> {
    fn image(&self) -> String {
        self.env.set.busybox.reference()
    }

    /// A random operation the model allows now.
    fn pick(&mut self) -> Option<Op> {
        let slot = self.rng.below(self.slots.len());
        self.generation += 1;
        let Some(pod) = &self.slots[slot] else {
            return Some(Op::RunPod {
                slot,
                name: format!("chaos-{slot}-{}", self.generation),
            });
        };
        let n = pod.containers.len();
        let roll = self.rng.below(100);
        Some(match roll {
            0..=29 if pod.ready && n < 3 => Op::Create {
                slot,
                name: format!("c{}", self.generation),
            },
            0..=49 if n > 0 => {
                let c = self.rng.below(n);
                match pod.containers[c].state {
                    C::Created if pod.ready => Op::Start { slot, c },
                    C::Running => Op::StopCtr { slot, c },
                    _ => Op::RemoveCtr { slot, c },
                }
            }
            50..=64 if n > 0 => Op::RemoveCtr {
                slot,
                c: self.rng.below(n),
            },
            65..=79 => Op::StopPod { slot },
            80..=99 => Op::RemovePod { slot },
            _ => return None,
        })
    }

    /// Run `op` through the CRI; Ok(Some(id)) for creating calls.
    async fn call(
        node: &Node,
        op: &Op,
        slots: &[Option<Pod>],
        image: &str,
    ) -> Result<Option<String>, tonic::Status> {
        let mut rt = node.runtime().await;
        let pod = |slot: usize| slots[slot].as_ref().expect("a pod in the slot");
        match op {
            Op::RunPod { name, .. } => rt
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(net_pod(name, node)),
                    runtime_handler: String::new(),
                })
                .await
                .map(|r| Some(r.into_inner().pod_sandbox_id)),
            Op::Create { slot, name } => rt
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: pod(*slot).id.clone(),
                    config: Some(container_config(name, image, &SLEEP)),
                    sandbox_config: None,
                })
                .await
                .map(|r| Some(r.into_inner().container_id)),
            Op::Start { slot, c } => rt
                .start_container(StartContainerRequest {
                    container_id: pod(*slot).containers[*c].id.clone(),
                })
                .await
                .map(|_| None),
            Op::StopCtr { slot, c } => rt
                .stop_container(StopContainerRequest {
                    container_id: pod(*slot).containers[*c].id.clone(),
                    timeout: 0,
                })
                .await
                .map(|_| None),
            Op::RemoveCtr { slot, c } => rt
                .remove_container(RemoveContainerRequest {
                    container_id: pod(*slot).containers[*c].id.clone(),
                })
                .await
                .map(|_| None),
            Op::StopPod { slot } => rt
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: pod(*slot).id.clone(),
                })
                .await
                .map(|_| None),
            Op::RemovePod { slot } => rt
                .remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: pod(*slot).id.clone(),
                })
                .await
                .map(|_| None),
        }
    }

    /// The model after `op` was acknowledged.
    fn apply(&mut self, op: &Op, id: Option<String>) {
        if let Some(id) = &id {
            self.seen.insert(id.clone());
        }
        match op.clone() {
            Op::RunPod { slot, name } => {
                self.slots[slot] = Some(Pod {
                    id: id.expect("a pod id"),
                    name,
                    ready: true,
                    containers: Vec::new(),
                })
            }
            Op::Create { slot, name } => {
                let pod = self.slots[slot].as_mut().expect("pod");
                pod.containers.push(Ctr {
                    id: id.expect("a container id"),
                    name,
                    state: C::Created,
                });
            }
            Op::Start { slot, c } => {
                self.slots[slot].as_mut().expect("pod").containers[c].state = C::Running;
            }
            Op::StopCtr { slot, c } => {
                self.slots[slot].as_mut().expect("pod").containers[c].state = C::Exited
            }
            Op::RemoveCtr { slot, c } => {
                self.slots[slot].as_mut().expect("pod").containers.remove(c);
            }
            Op::StopPod { slot } => {
                let pod = self.slots[slot].as_mut().expect("pod");
                pod.ready = false;
                // Created containers are stopped too (as containerd).
                for c in &mut pod.containers {
                    c.state = C::Exited;
                }
            }
            Op::RemovePod { slot } => self.slots[slot] = None,
        }
    }

    /// After a call whose outcome is unknown (berthd died under it, or it failed): the object it
    /// worked on must be in its state before or after the call; the model takes what berth says.
    async fn reconcile(&mut self, op: &Op) {
        let (pods, ctrs) = truth(&self.node).await;
        self.seen.extend(pods.keys().cloned());
        self.seen.extend(ctrs.keys().cloned());
        let slot = match op {
            Op::RunPod { slot, .. }
            | Op::Create { slot, .. }
            | Op::Start { slot, .. }
            | Op::StopCtr { slot, .. }
            | Op::RemoveCtr { slot, .. }
            | Op::StopPod { slot }
            | Op::RemovePod { slot } => *slot,
        };
        if let Op::RunPod { name, .. } = op {
            let found: Vec<_> = pods.iter().filter(|(_, (_, n))| n == name).collect();
            assert!(found.len() <= 1, "one pod per name: {found:?}");
            if let Some((id, (ready, _))) = found.first() {
                assert!(
                    *ready,
                    "an interrupted RunPodSandbox made a pod that is not ready"
                );
                self.slots[slot] = Some(Pod {
                    id: (*id).clone(),
                    name: name.clone(),
                    ready: true,
                    containers: Vec::new(),
                });
            }
            return;
        }
        let Some(pod) = self.slots[slot].as_mut() else {
            return;
        };
        match pods.get(&pod.id) {
            None => {
                assert!(
                    matches!(op, Op::RemovePod { .. }),
                    "pod {} vanished during {op:?}",
                    pod.id
                );
                self.slots[slot] = None;
                return;
            }
            Some((ready, _)) => {
                if pod.ready != *ready {
                    assert!(
                        matches!(op, Op::StopPod { .. } | Op::RemovePod { .. }) && !ready,
                        "pod {} became {ready} during {op:?}",
                        pod.id
                    );
                    pod.ready = *ready;
                }
            }
        }
        if let Op::Create { name, .. } = op {
            let found: Vec<_> = ctrs
                .iter()
                .filter(|(_, (p, n, _))| *p == pod.id && n == name)
                .collect();
            assert!(found.len() <= 1, "one container per name: {found:?}");
            if let Some((id, (_, _, state))) = found.first() {
                pod.containers.push(Ctr {
                    id: (*id).clone(),
                    name: name.clone(),
                    state: *state,
                });
            }
        }
        let may_change = |c: &Ctr| match op {
            Op::Start { c: i, .. } | Op::StopCtr { c: i, .. } | Op::RemoveCtr { c: i, .. } => {
                pod.containers.get(*i).is_some_and(|x| x.id == c.id)
            }
            Op::StopPod { .. } | Op::RemovePod { .. } => true,
            _ => false,
        };
        let mut keep = Vec::new();
        for c in pod.containers.clone() {
            match ctrs.get(&c.id) {
                None => {
                    assert!(
                        may_change(&c) && matches!(op, Op::RemoveCtr { .. } | Op::RemovePod { .. }),
                        "container {} vanished during {op:?}",
                        c.id
                    );
                }
                Some((_, _, state)) => {
                    if *state != c.state {
                        let allowed = may_change(&c)
                            || self.shim_killed.contains(&c.id)
                            // A berthd killed mid-create leaves a container whose shim never
                            // came up: reported exited.
                            || (c.state == C::Created && *state == C::Exited);
                        assert!(
                            allowed,
                            "container {} went {:?} -> {state:?} during {op:?}",
                            c.id, c.state
                        );
                    }
                    keep.push(Ctr { state: *state, ..c });
                }
            }
        }
        pod.containers = keep;
    }

    /// Everything berth lists is what the model holds, and the other way round.
    async fn check(&mut self) {
        // Containers whose shim was killed are reported exited once berth has noticed.
        for _ in 0..100 {
            let (_, ctrs) = truth(&self.node).await;
            if self
                .shim_killed
                .iter()
                .all(|id| ctrs.get(id).is_none_or(|(_, _, s)| *s == C::Exited))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (pods, ctrs) = truth(&self.node).await;
        let mut want_pods = HashMap::new();
        let mut want_ctrs = HashMap::new();
        for pod in self.slots.iter_mut().flatten() {
            want_pods.insert(pod.id.clone(), (pod.ready, pod.name.clone()));
            for c in &mut pod.containers {
                if self.shim_killed.contains(&c.id) {
                    c.state = C::Exited;
                }
                want_ctrs.insert(c.id.clone(), (pod.id.clone(), c.name.clone(), c.state));
            }
        }
        if pods != want_pods || ctrs != want_ctrs {
            let odd: Vec<&String> = pods
                .keys()
                .chain(want_pods.keys())
                .chain(ctrs.keys())
                .chain(want_ctrs.keys())
                .filter(|id| {
                    pods.get(*id) != want_pods.get(*id) || ctrs.get(*id) != want_ctrs.get(*id)
                })
                .collect();
            let short: Vec<&str> = odd.iter().map(|id| &id[..12]).collect();
            for line in self
                .journal
                .iter()
                .filter(|l| short.iter().any(|id| l.contains(id)))
            {
                println!("journal: {line}");
            }
            for line in self
                .node
                .log_text()
                .lines()
                .filter(|l| !l.contains("DEBUG") && short.iter().any(|id| l.contains(id)))
            {
                println!("berthd: {line}");
            }
        }
        assert_eq!(pods, want_pods, "pods as acknowledged");
        assert_eq!(ctrs, want_ctrs, "containers as acknowledged");
    }

    /// `op` with the ids it acts on, for the journal.
    fn describe(&self, op: &Op) -> String {
        let pod = |slot: &usize| self.slots[*slot].as_ref();
        match op {
            Op::RunPod { .. } => format!("{op:?}"),
            Op::Create { slot, .. } | Op::StopPod { slot } | Op::RemovePod { slot } => {
                format!("{op:?} pod {:?}", pod(slot).map(|p| p.id.clone()))
            }
            Op::Start { slot, c } | Op::StopCtr { slot, c } | Op::RemoveCtr { slot, c } => format!(
                "{op:?} pod {:?} container {:?}",
                pod(slot).map(|p| p.id.clone()),
                pod(slot)
                    .and_then(|p| p.containers.get(*c))
                    .map(|c| c.id.clone())
            ),
        }
    }

    async fn restart(&mut self) {
        self.node.kill9();
        self.counts.berthd_kills += 1;
        self.node.spawn().await;
    }

    async fn kill_a_shim(&mut self) {
        let running: Vec<String> = self
            .slots
            .iter()
            .flatten()
            .flat_map(|p| p.containers.iter())
            .filter(|c| c.state == C::Running && !self.shim_killed.contains(&c.id))
            .map(|c| c.id.clone())
            .collect();
        if running.is_empty() {
            return;
        }
        let id = running[self.rng.below(running.len())].clone();
        for pid in pids_with_cmdline(&["berth-shim", &id]) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.journal.push(format!("killed the shim of {id}"));
        self.shim_killed.insert(id);
        self.counts.shim_kills += 1;
    }

    async fn step(&mut self) {
        if self.rng.chance(3) {
            self.kill_a_shim().await;
        }
        let Some(op) = self.pick() else {
            return;
        };
        self.counts.ops += 1;
        let image = self.image();
        if self.rng.chance(5) {
            // berthd dies under the call.
            let delay = Duration::from_millis(self.rng.below(300) as u64);
            let call = {
                let fut = Self::call(&self.node, &op, &self.slots, &image);
                tokio::time::timeout(delay, fut).await
            };
            let what = self.describe(&op);
            match call {
                Ok(Ok(id)) => {
                    self.journal.push(format!("{what} -> {id:?}, then kill -9"));
                    self.counts.acknowledged += 1;
                    self.apply(&op, id);
                    self.restart().await;
                }
                other => {
                    self.journal
                        .push(format!("{what} -> kill -9 under it ({other:?})"));
                    self.counts.kills_mid_call += 1;
                    self.restart().await;
                    self.reconcile(&op).await;
                }
            }
            return;
        }
        let what = self.describe(&op);
        let result = Self::call(&self.node, &op, &self.slots, &image).await;
        self.journal.push(format!("{what} -> {result:?}"));
        match result {
            Ok(id) => {
                self.counts.acknowledged += 1;
                self.apply(&op, id);
            }
            Err(e) => {
                self.counts.refused += 1;
                if e.message().contains("berth-test plugin fails ADD") {
                    self.counts.cni_failures += 1;
                } else {
                    // Starting a container whose shim was killed, say: a precise error, and
                    // the object unchanged or moved on as the kill says.
                    assert!(!matches!(e.code(), tonic::Code::Unknown), "{op:?}: {e:?}");
                }
                self.reconcile(&op).await;
            }
        }
    }
}

fn random_operations_and_kills(env: &Env) {
    let ops: usize = std::env::var("CHAOS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let pods: usize = std::env::var("CHAOS_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = Rng::seed_from_env("CHAOS_SEED");
    println!("chaos: CHAOS_SEED={seed} CHAOS_OPS={ops} CHAOS_PODS={pods}");
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        insert_test_plugin(&node, serde_json::json!({"add_fail_rate": 0.1}));
        pull_ok(&node, &env.set.busybox.reference()).await;
        let mut chaos = Chaos {
            env,
            node,
            rng: Rng::new(seed),
            slots: vec![None; pods],
            counts: Counts::default(),
            seen: HashSet::new(),
            shim_killed: HashSet::new(),
            generation: 0,
            journal: Vec::new(),
        };
        while chaos.counts.ops < ops {
            chaos.step().await;
            if chaos.counts.ops.is_multiple_of(50) {
                chaos.check().await;
            }
        }
        chaos.check().await;
        // Remove everything, as kubelet would.
        let (pods, _) = truth(&chaos.node).await;
        let mut rt = chaos.node.runtime().await;
        for id in pods.keys() {
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e:?}"));
            rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {e:?}"));
        }
        let node = &chaos.node;
        let (pods, ctrs) = truth(node).await;
        assert!(pods.is_empty() && ctrs.is_empty());
        // Nothing is left.
        let leaks = leaks(node, &net, &chaos.seen, &SLEEP).await;
        let c = &chaos.counts;
        println!(
            "chaos: {} operations ({} acknowledged, {} refused, {} CNI ADD failures), berthd killed {} times ({} in the middle of a call), {} shims killed, {} objects, leaks = {}",
            c.ops,
            c.acknowledged,
            c.refused,
            c.cni_failures,
            c.berthd_kills,
            c.kills_mid_call,
            c.shim_kills,
            chaos.seen.len(),
            leaks.len()
        );
        assert!(leaks.is_empty(), "leaks: {leaks:#?}");
    });
}
