//! End-to-end, pod networking: real berthd, Debian's CNI plugins (bridge, host-local, portmap,
//! loopback; `ipMasq: false`) on a bridge inside the test process's own network namespace, so
//! the host's network is never touched and no packet leaves the namespaces the suite made. The
//! harness runs this suite one test at a time: the checks count the namespace's veths and
//! reservations.

use std::sync::Arc;
use std::time::Duration;

use berth_e2e::cri::*;
use berth_e2e::images::RuntimeEnv;
use berth_e2e::node::Node;
use k8s_cri::v1::*;
use tonic::Code;

/// What every test of the suite shares.
pub type Env = RuntimeEnv;

type TestFn = fn(&Env);

/// The suite's tests; the harness names them `network::<name>`.
pub const TESTS: &[(&str, TestFn)] = &[
    (
        "pods_talk_over_the_pod_network",
        pods_talk_over_the_pod_network,
    ),
    ("host_port_mapping", host_port_mapping),
    ("host_network_pod", host_network_pod),
    (
        "stop_after_kill9_releases_the_ip",
        stop_after_kill9_releases_the_ip,
    ),
    ("failures_leave_nothing", failures_leave_nothing),
    (
        "a_timed_out_run_pod_sandbox_finishes_and_its_retry_gets_it",
        a_timed_out_run_pod_sandbox_finishes_and_its_retry_gets_it,
    ),
    (
        "a_rollback_whose_del_fails_undoes_the_rest",
        a_rollback_whose_del_fails_undoes_the_rest,
    ),
    (
        "start_up_sweeps_a_pod_cut_short_by_kill9",
        start_up_sweeps_a_pod_cut_short_by_kill9,
    ),
    ("fifty_pods_at_once", fifty_pods_at_once),
    ("pod_sysctls", pod_sysctls),
    ("pod_hostname_as_containerd", pod_hostname_as_containerd),
    ("shared_pid_namespace", shared_pid_namespace),
    ("pod_stats", pod_stats),
];

/// The suite's environment: a runtime, and a registry holding the runtime image set.
pub fn setup() -> Env {
    RuntimeEnv::start()
}

async fn pod_ip(node: &Node, id: &str) -> String {
    pod_status(node, id)
        .await
        .expect("PodSandboxStatus")
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default()
}

async fn running(node: &Node, pod: &str, name: &str, image: &str, script: &str) -> String {
    let id = create_container(
        node,
        pod,
        container_config(name, image, &["sh", "-c", script]),
    )
    .await
    .unwrap_or_else(|e| panic!("CreateContainer {name}: {e:?}\n{}", node.log_text()));
    start_container(node, &id).await;
    id
}

async fn exec(node: &Node, id: &str, script: &str) -> (i32, String) {
    let r = node
        .runtime()
        .await
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync {script:?}: {e:?}"))
        .into_inner();
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr),
    )
}

/// Retry `script` until it exits 0 (a server in another container may still be starting).
async fn exec_until_ok(node: &Node, id: &str, script: &str) -> String {
    let mut last = (0, String::new());
    for _ in 0..50 {
        last = exec(node, id, script).await;
        if last.0 == 0 {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{script:?} kept failing: {last:?}");
}

async fn remove_pod(node: &Node, id: &str) {
    let mut rt = node.runtime().await;
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .unwrap_or_else(|e| panic!("StopPodSandbox: {e:?}\n{}", node.log_text()));
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .expect("RemovePodSandbox");
}

/// Interfaces of the suite's network namespace whose name starts with `prefix` (from
/// /proc/self/net/dev: the host's /sys shows the host's namespace, not ours).
fn links(prefix: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// No pin, mount, IPAM reservation, veth or pod file is left on the node.
fn assert_network_clean(node: &Node, net: &TestNet, what: &str) {
    assert!(
        berth_e2e::node::mounts_under(node.dir.path()).is_empty(),
        "{what}: mounts left: {:?}",
        berth_e2e::node::mounts_under(node.dir.path())
    );
    assert!(
        net.reserved().is_empty(),
        "{what}: IPs still reserved: {:?}",
        net.reserved()
    );
    // The kernel may finish tearing a namespace's devices down just after the call returns.
    for _ in 0..100 {
        if links("veth").is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        links("veth").is_empty(),
        "{what}: veths left: {:?}",
        links("veth")
    );
    assert!(
        dir_entries(&node.state.join("ns")).is_empty(),
        "{what}: pins left"
    );
    assert!(
        dir_entries(&node.root.join("cni")).is_empty(),
        "{what}: CNI cache left"
    );
    assert!(
        dir_entries(&node.root.join("sandboxes")).is_empty(),
        "{what}: pod files left"
    );
}

fn pods_talk_over_the_pod_network(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;

        let mut cfg = net_pod("alpha", &node);
        cfg.dns_config = Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["e2e.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        let a = run_pod(&node, cfg).await.unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}\n{}", node.log_text()));
        let b = run_pod(&node, net_pod("beta", &node)).await.unwrap();
        let (ip_a, ip_b) = (pod_ip(&node, &a).await, pod_ip(&node, &b).await);
        assert!(ip_a.starts_with(&net.prefix) && ip_b.starts_with(&net.prefix), "{ip_a} {ip_b}");
        assert_ne!(ip_a, ip_b);
        assert_eq!(net.reserved().len(), 2);

        // Pod A serves HTTP; its second container reaches it over localhost.
        let server = running(&node, &a, "web", &bb,
            "mkdir -p /www && echo hello-from-alpha > /www/index.html && exec httpd -f -p 8080 -h /www").await;
        let side = running(&node, &a, "side", &bb, "sleep 3600").await;
        let out = exec_until_ok(&node, &side, "wget -qO- http://127.0.0.1:8080/").await;
        assert_eq!(out, "hello-from-alpha\n");
        // One /dev/shm per pod (containerd's sandbox shm): both containers see it.
        exec(&node, &side, "echo shared > /dev/shm/note").await;
        assert_eq!(exec(&node, &server, "cat /dev/shm/note").await.1, "shared\n");
        // One UTS namespace per pod: both containers have the pod's hostname.
        assert_eq!(exec(&node, &server, "hostname").await.1, "alpha\n");
        assert_eq!(exec(&node, &side, "hostname; cat /etc/hostname").await.1, "alpha\nalpha\n");
        // Pod B reaches pod A by IP.
        let client = running(&node, &b, "client", &bb, "sleep 3600").await;
        let out = exec_until_ok(&node, &client, &format!("wget -qO- http://{ip_a}:8080/")).await;
        assert_eq!(out, "hello-from-alpha\n");
        // The pod sees its own address on eth0.
        let (_, addrs) = exec(&node, &side, "ip -4 -o addr show eth0").await;
        assert!(addrs.contains(&format!("{ip_a}/16")), "{addrs}");

        // resolv.conf from the DNS config; the host's when none is given. hosts: the pod.
        let (_, resolv) = exec(&node, &side, "cat /etc/resolv.conf").await;
        assert_eq!(resolv, "search e2e.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n");
        let (_, resolv_b) = exec(&node, &client, "cat /etc/resolv.conf").await;
        assert_eq!(resolv_b, std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
        let (_, hosts) = exec(&node, &side, "cat /etc/hosts").await;
        assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
        assert!(hosts.contains(&format!("{ip_a}\talpha")), "{hosts}");

        remove_pod(&node, &a).await;
        // The stopped pod's IP is gone from its status and from IPAM.
        assert_eq!(net.reserved().len(), 1);
        remove_pod(&node, &b).await;
        assert_network_clean(&node, &net, "after removing both pods");
    });
}

fn host_port_mapping(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let mut cfg = net_pod("ported", &node);
        cfg.port_mappings = vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 8080,
            host_port: 18080,
            host_ip: String::new(),
        }];
        let pod = run_pod(&node, cfg)
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}\n{}", node.log_text()));
        running(
            &node,
            &pod,
            "web",
            &bb,
            "mkdir -p /www && echo mapped > /www/index.html && exec httpd -f -p 8080 -h /www",
        )
        .await;
        // From the node (this suite's namespace): the host port on a node address.
        let url = format!("{}:18080", net.gateway());
        let mut body = String::new();
        for _ in 0..50 {
            if let Ok(b) = http_get(&url).await {
                body = b;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(body, "mapped\n", "GET {url}");
        remove_pod(&node, &pod).await;
        // The mapping is gone with the pod.
        assert!(http_get(&url).await.is_err());
        assert_network_clean(&node, &net, "after the mapped pod");
        // Ports the portmap plugin cannot use (issue 12): refused before any plugin runs,
        // nothing made. A mapping without a host port is not used, so not checked.
        for (container_port, host_port) in [(0, 18081), (8080, 70000), (65536, 18082)] {
            let mut cfg = net_pod("badport", &node);
            cfg.port_mappings = vec![PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port,
                host_port,
                host_ip: String::new(),
            }];
            let e = run_pod(&node, cfg).await.unwrap_err();
            assert_eq!(
                e.code(),
                Code::InvalidArgument,
                "{container_port}/{host_port}: {e:?}"
            );
            assert!(list_pods(&node, None).await.is_empty());
            assert_network_clean(&node, &net, "after a refused port mapping");
        }
        let mut cfg = net_pod("unmapped", &node);
        cfg.port_mappings = vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 0,
            host_port: 0,
            host_ip: String::new(),
        }];
        let pod = run_pod(&node, cfg).await.unwrap();
        remove_pod(&node, &pod).await;
    });
}

/// GET / from `addr`, the body.
async fn http_get(addr: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))??;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("read timeout"))??;
    let text = String::from_utf8_lossy(&out).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!("bad answer {text:?}"))),
    }
}

fn host_network_pod(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let mut cfg = net_pod("hostnet", &node);
        cfg.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options
            .as_mut()
            .unwrap()
            .network = NamespaceMode::Node as i32;
        let pod = run_pod(&node, cfg).await.unwrap();
        assert_eq!(
            pod_ip(&node, &pod).await,
            "",
            "a host-network pod has no IP of its own"
        );
        assert!(net.reserved().is_empty(), "no CNI for host-network pods");
        let c = running(&node, &pod, "c", &bb, "sleep 3600").await;
        let (_, ifaces) = exec(&node, &c, "ls /sys/class/net").await;
        let mut theirs: Vec<&str> = ifaces.split_whitespace().collect();
        theirs.sort();
        let mut ours = links("");
        ours.sort();
        assert_eq!(theirs, ours.iter().map(String::as_str).collect::<Vec<_>>());
        let (_, host) = exec(&node, &c, "hostname").await;
        assert_eq!(
            host.trim(),
            nix::unistd::gethostname().unwrap().to_string_lossy()
        );
        remove_pod(&node, &pod).await;
        assert_network_clean(&node, &net, "after the host-network pod");
    });
}

fn stop_after_kill9_releases_the_ip(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start().await;
        let net = install_network(&node);
        let pod = run_pod(&node, net_pod("survivor", &node)).await.unwrap();
        let ip = pod_ip(&node, &pod).await;
        assert_eq!(net.reserved(), vec![ip.clone()]);
        node.kill9();
        node.spawn().await;
        assert_eq!(
            pod_ip(&node, &pod).await,
            ip,
            "the pod keeps its IP across a restart"
        );
        remove_pod(&node, &pod).await;
        assert_network_clean(&node, &net, "after stop following kill -9");
    });
}

fn failures_leave_nothing(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        // No network config yet: FailedPrecondition, nothing made.
        let err = run_pod(&node, net_pod("early", &node)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        let net = install_network(&node);
        assert_network_clean(&node, &net, "without a network config");

        // A plugin that fails in the middle of the chain (after bridge and host-local ran):
        // everything the call did is undone.
        let conf = std::fs::read_to_string(node.cni_conf.join("10-pods.conflist")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&conf).unwrap();
        v["plugins"][1] =
            serde_json::json!({"type": "tuning", "sysctl": {"net.nonexistent.knob": "1"}});
        std::fs::write(node.cni_conf.join("10-pods.conflist"), v.to_string()).unwrap();
        let err = run_pod(&node, net_pod("broken", &node)).await.unwrap_err();
        assert_eq!(err.code(), Code::Internal, "{err:?}");
        assert!(err.message().contains("tuning"), "{err:?}");
        assert!(
            list_pods(&node, None).await.is_empty(),
            "no half-made pod is listed"
        );
        assert_network_clean(&node, &net, "after a failing plugin");

        // A missing plugin: the config is not usable.
        v["plugins"][1] = serde_json::json!({"type": "no-such-plugin"});
        std::fs::write(node.cni_conf.join("10-pods.conflist"), v.to_string()).unwrap();
        let err = run_pod(&node, net_pod("missing", &node)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("no-such-plugin"), "{err:?}");
        assert_network_clean(&node, &net, "after a missing plugin");
        // The name is free again.
        install_network(&node);
        let pod = run_pod(&node, net_pod("broken", &node)).await.unwrap();
        remove_pod(&node, &pod).await;
    });
}

/// kubelet's deadline passes while the CNI ADD still runs: the pod is made all the same, and
/// the retry (same name) gets it rather than "already exists" (issue 12 item 6).
fn a_timed_out_run_pod_sandbox_finishes_and_its_retry_gets_it(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        insert_test_plugin(&node, serde_json::json!({"sleep": 20}));
        let mut rt = node.runtime().await;
        let mut req = tonic::Request::new(RunPodSandboxRequest {
            config: Some(net_pod("slow", &node)),
            runtime_handler: String::new(),
        });
        req.set_timeout(Duration::from_secs(5));
        let err = rt.run_pod_sandbox(req).await.unwrap_err();
        assert!(
            matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{err:?}"
        );
        // kubelet retries the same pod.
        let started = std::time::Instant::now();
        let id = run_pod(&node, net_pod("slow", &node))
            .await
            .unwrap_or_else(|e| panic!("the retry: {e:?}\n{}", node.log_text()));
        assert!(
            started.elapsed() < Duration::from_secs(19),
            "the retry joined the running call instead of starting over"
        );
        let pods = list_pods(&node, None).await;
        assert_eq!(pods.len(), 1, "one pod: {pods:?}");
        assert_eq!(pods[0].id, id);
        assert_eq!(net.reserved(), vec![pod_ip(&node, &id).await]);
        // The result was received: the same name again is a duplicate now.
        let err = run_pod(&node, net_pod("slow", &node)).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
        remove_pod(&node, &id).await;
        assert_network_clean(&node, &net, "after the slow pod");
    });
}

/// A RunPodSandbox whose plugin fails ADD and then DEL too: the rollback still releases the
/// pins, the other plugins' work (IP, veth), the cache entry and the pod files.
fn a_rollback_whose_del_fails_undoes_the_rest(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let marker = insert_test_plugin(&node, serde_json::json!({"fail": true}));
        let err = run_pod(&node, net_pod("doomed", &node)).await.unwrap_err();
        assert_eq!(err.code(), Code::Internal, "{err:?}");
        assert!(err.message().contains("fails ADD"), "{err:?}");
        let calls = std::fs::read_to_string(&marker).unwrap();
        assert!(
            calls.starts_with("ADD\nDEL\n") && !calls[4..].contains("ADD"),
            "the failing plugin was asked to DEL: {calls:?}"
        );
        assert!(list_pods(&node, None).await.is_empty());
        assert_network_clean(&node, &net, "after a rollback whose DEL failed");
    });
}

/// berthd is killed while a RunPodSandbox waits on its CNI ADD: the pod was never recorded,
/// and the next start releases its pins, its network (CNI DEL from the cache) and its files.
fn start_up_sweeps_a_pod_cut_short_by_kill9(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start().await;
        let net = install_network(&node);
        let marker = insert_test_plugin(&node, serde_json::json!({"sleep": 5}));
        let config = net_pod("cut", &node);
        let call = {
            let mut rt = node.runtime().await;
            tokio::spawn(async move {
                rt.run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
            })
        };
        for _ in 0..200 {
            if std::fs::read_to_string(&marker).is_ok_and(|m| m.contains("ADD")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(net.reserved().len(), 1, "the bridge plugin ran");
        node.kill9();
        assert!(call.await.unwrap().is_err(), "the call died with berthd");
        node.spawn().await;
        assert!(list_pods(&node, None).await.is_empty());
        assert_network_clean(&node, &net, "after the start-up sweep");
        assert!(
            std::fs::read_to_string(&marker).unwrap().contains("DEL"),
            "the sweep asked the chain to DEL"
        );
        // The plugin still sleeping in the dead call's ADD ends on its own.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
}

fn fifty_pods_at_once(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let node = Arc::new(node);
        let mut tasks = Vec::new();
        for i in 0..50 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                let cfg = net_pod(&format!("many{i}"), &node);
                run_pod(&node, cfg).await
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(
                t.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}")),
            );
        }
        let mut ips = Vec::new();
        for id in &ids {
            ips.push(pod_ip(&node, id).await);
        }
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 50, "50 distinct IPs");
        assert!(ips.iter().all(|ip| ip.starts_with(&net.prefix)));
        assert_eq!(net.reserved().len(), 50);

        let mut tasks = Vec::new();
        for id in ids {
            let node = node.clone();
            tasks.push(tokio::spawn(async move { remove_pod(&node, &id).await }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(list_pods(&node, None).await.is_empty());
        assert_network_clean(&node, &net, "after 50 removals");
    });
}

/// critest's pods: no hostname and a ~70-byte name. As containerd, the UTS namespace, the pod's
/// hostname file and HOSTNAME keep the node's hostname; a given hostname is set as is, up to the
/// kernel's 64 bytes; a longer one is refused naming the field, and leaves nothing behind.
fn pod_hostname_as_containerd(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let host = nix::unistd::gethostname()
            .unwrap()
            .to_string_lossy()
            .into_owned();

        let long_name = "create-PodSandbox-for-container-0f5b9d8e-5c3a-4d7e-9b1a-2c6f8e4d3a21";
        let mut cfg = net_pod(long_name, &node);
        cfg.hostname = String::new();
        let pod = run_pod(&node, cfg)
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox without a hostname: {e:?}"));
        let c = running(&node, &pod, "c", &bb, "sleep 3600").await;
        let (_, out) = exec(&node, &c, "hostname; cat /etc/hostname; echo $HOSTNAME").await;
        assert_eq!(out, format!("{host}\n{host}\n{host}\n"));

        let exact = "h".repeat(64);
        let mut cfg = net_pod("exact", &node);
        cfg.hostname = exact.clone();
        let pod64 = run_pod(&node, cfg)
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox with a 64-byte hostname: {e:?}"));
        let c64 = running(&node, &pod64, "c", &bb, "sleep 3600").await;
        let (_, out) = exec(&node, &c64, "hostname; cat /etc/hostname").await;
        assert_eq!(out, format!("{exact}\n{exact}\n"));

        let mut cfg = net_pod("toolong", &node);
        cfg.hostname = "h".repeat(65);
        let err = run_pod(&node, cfg).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("hostname"), "{err:?}");

        remove_pod(&node, &pod).await;
        remove_pod(&node, &pod64).await;
        assert_network_clean(&node, &net, "after the hostname pods");
    });
}

fn pod_sysctls(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        // A node-level sysctl is refused, and nothing is made.
        let mut bad = net_pod("sysbad", &node);
        bad.linux.as_mut().unwrap().sysctls = [("kernel.panic".to_string(), "1".to_string())]
            .into_iter()
            .collect();
        let err = run_pod(&node, bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("kernel.panic"), "{err:?}");
        // Namespaced ones apply inside the pod only.
        let mut cfg = net_pod("sysok", &node);
        cfg.linux.as_mut().unwrap().sysctls = [
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            ),
            ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
        ]
        .into_iter()
        .collect();
        let pod = run_pod(&node, cfg).await.unwrap();
        let c = running(&node, &pod, "c", &bb, "sleep 3600").await;
        let (_, out) = exec(
            &node,
            &c,
            "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced",
        )
        .await;
        assert_eq!(out, "0\n1\n");
        let ours =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
        assert_ne!(ours.trim(), "0", "the node's value is untouched");
        remove_pod(&node, &pod).await;
        assert_network_clean(&node, &net, "after the sysctl pods");
    });
}

fn shared_pid_namespace(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let mut cfg = net_pod("shared", &node);
        let set_pid = |c: &mut Option<NamespaceOption>| {
            c.get_or_insert_with(Default::default).pid = NamespaceMode::Pod as i32;
        };
        set_pid(
            &mut cfg
                .linux
                .as_mut()
                .unwrap()
                .security_context
                .as_mut()
                .unwrap()
                .namespace_options,
        );
        let pod = run_pod(&node, cfg)
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}\n{}", node.log_text()));
        let mut ids = Vec::new();
        for (name, script) in [("first", "exec sleep 3601"), ("second", "exec sleep 3602")] {
            let mut c = container_config(name, &bb, &["sh", "-c", script]);
            let mut sec = LinuxContainerSecurityContext::default();
            set_pid(&mut sec.namespace_options);
            c.linux = Some(LinuxContainerConfig {
                security_context: Some(sec),
                ..Default::default()
            });
            let id = create_container(&node, &pod, c).await.unwrap();
            start_container(&node, &id).await;
            ids.push(id);
        }
        // Each container sees the other's processes; PID 1 is berth's pod init, no pause.
        let (_, ps) = exec(&node, &ids[1], "ps -o pid,args").await;
        assert!(
            ps.contains("sleep 3601") && ps.contains("sleep 3602"),
            "{ps}"
        );
        let (_, init) = exec(&node, &ids[0], "tr '\\0' ' ' < /proc/1/cmdline").await;
        assert!(init.contains("berth-shim pod-init"), "PID 1 is {init:?}");
        // It holds no capability, so the pod's processes may inspect it (as pause).
        let (_, caps) = exec(&node, &ids[0], "grep -E '^Cap(Prm|Eff|Bnd):' /proc/1/status | tr -d '\t'; readlink /proc/1/exe >/dev/null && echo readable").await;
        assert_eq!(caps, "CapPrm:0000000000000000\nCapEff:0000000000000000\nCapBnd:0000000000000000\nreadable\n");
        // Orphans are reaped by the pod's PID 1: no zombie stays.
        exec(&node, &ids[0], "(sleep 0.2 &) ; true").await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (_, stats) = exec(&node, &ids[1], "ps -o stat,args").await;
        assert!(
            !stats.lines().any(|l| l.trim_start().starts_with('Z')),
            "{stats}"
        );

        // Stop: the pod init goes with the pod; nothing is left.
        remove_pod(&node, &pod).await;
        for _ in 0..100 {
            if berth_e2e::node::shims_of(node.dir.path()).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            berth_e2e::node::shims_of(node.dir.path()).is_empty(),
            "pod init or shims left"
        );
        assert_network_clean(&node, &net, "after the shared-PID pod");
    });
}

fn pod_stats(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let pod = run_pod(&node, net_pod("measured", &node)).await.unwrap();
        let c = running(&node, &pod, "c", &bb, "sleep 3600").await;
        // Traffic over eth0 (to the bridge) and some CPU in the pod's cgroup.
        exec_until_ok(
            &node,
            &c,
            &format!("ping -c 3 -i 0.2 -W 1 {}", net.gateway()),
        )
        .await;
        exec(
            &node,
            &c,
            "i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done",
        )
        .await;

        let s = node
            .runtime()
            .await
            .pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("PodSandboxStats: {e:?}"))
            .into_inner()
            .stats
            .unwrap();
        assert_eq!(s.attributes.as_ref().unwrap().id, pod);
        let linux = s.linux.unwrap();
        assert!(linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
        assert!(linux.memory.unwrap().working_set_bytes.unwrap().value > 0);
        assert!(linux.process.unwrap().process_count.unwrap().value >= 1);
        let netu = linux.network.expect("network stats");
        let eth0 = netu.default_interface.expect("eth0");
        assert_eq!(eth0.name, "eth0");
        assert!(eth0.rx_bytes.unwrap().value > 0 && eth0.tx_bytes.unwrap().value > 0);
        assert!(netu.interfaces.iter().all(|i| i.name != "lo"));
        assert_eq!(linux.containers.len(), 1);
        assert_eq!(linux.containers[0].attributes.as_ref().unwrap().id, c);

        let listed = node
            .runtime()
            .await
            .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
                filter: Some(PodSandboxStatsFilter {
                    label_selector: [("app".to_string(), "measured".to_string())]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert_eq!(listed.len(), 1);
        let err = node
            .runtime()
            .await
            .pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: "nonexistent".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);

        // A pod without a cgroup parent (crictl's minimal pod.json): its containers' sum.
        let mut bare = net_pod("bare", &node);
        bare.linux.as_mut().unwrap().cgroup_parent.clear();
        let bare = run_pod(&node, bare).await.unwrap();
        let bc = running(&node, &bare, "c", &bb, "sleep 3600").await;
        let s = node
            .runtime()
            .await
            .pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: bare.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        let linux = s.linux.unwrap();
        let c_mem = linux.containers[0]
            .memory
            .as_ref()
            .unwrap()
            .working_set_bytes
            .unwrap()
            .value;
        assert!(c_mem > 0);
        assert_eq!(
            linux.memory.unwrap().working_set_bytes.unwrap().value,
            c_mem
        );
        assert!(linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
        assert_eq!(linux.containers[0].attributes.as_ref().unwrap().id, bc);
        remove_pod(&node, &bare).await;

        remove_pod(&node, &pod).await;
        assert_network_clean(&node, &net, "after the measured pod");
    });
}
