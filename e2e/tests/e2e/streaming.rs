//! End-to-end, the streaming server: Exec, Attach and PortForward URLs used by independent
//! SPDY/3.1 and WebSocket clients (e2e/src/spdy.rs, e2e/src/ws.rs), against a real berthd.

use std::sync::Arc;
use std::time::Duration;

use berth_e2e::cri::*;
use berth_e2e::images::RuntimeEnv;
use berth_e2e::node::Node;
use berth_e2e::registry::http_request;
use berth_e2e::{spdy, ws};
use k8s_cri::v1::*;
use tonic::Code;

/// What every test of the suite shares.
pub type Env = RuntimeEnv;

type TestFn = fn(&Env);

/// The suite's tests; the harness names them `streaming::<name>`.
pub const TESTS: &[(&str, TestFn)] = &[
    (
        "spdy_exec_output_and_exit_codes",
        spdy_exec_output_and_exit_codes,
    ),
    ("spdy_exec_stdin_and_tty", spdy_exec_stdin_and_tty),
    ("spdy_exec_client_gone_kills", spdy_exec_client_gone_kills),
    ("spdy_attach_tty", spdy_attach_tty),
    ("spdy_port_forward_in_pod", spdy_port_forward_in_pod),
    ("fifty_concurrent_execs", fifty_concurrent_execs),
    (
        "tokens_single_use_and_unknown",
        tokens_single_use_and_unknown,
    ),
    ("websocket_exec_protocols", websocket_exec_protocols),
    ("websocket_port_forward", websocket_port_forward),
];

/// The suite's environment: a runtime, and a registry holding the runtime image set.
pub fn setup() -> Env {
    RuntimeEnv::start()
}

/// A PortForward URL for port 8080 of `pod`.
async fn port_forward_url(node: &Node, pod: &str) -> String {
    node.runtime()
        .await
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: vec![8080],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url
}

/// A node with busybox, one host-network pod and a running `sleep` container in it.
async fn node_with_container(env: &Env, name: &str) -> (Node, String, String) {
    let node = Node::start().await;
    pull_ok(&node, &env.set.busybox.reference()).await;
    let mut cfg = pod_config(name, NamespaceMode::Pod);
    cfg.log_directory = node.dir.path().join("logs").display().to_string();
    let pod = run_pod(&node, cfg).await.expect("RunPodSandbox");
    let id = create_container(
        &node,
        &pod,
        container_config("main", &env.set.busybox.reference(), &["sleep", "3600"]),
    )
    .await
    .expect("CreateContainer");
    start_container(&node, &id).await;
    (node, pod, id)
}

async fn exec_url(node: &Node, id: &str, cmd: &[&str], stdin: bool, tty: bool) -> String {
    node.runtime()
        .await
        .exec(ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        })
        .await
        .unwrap_or_else(|e| panic!("Exec: {e:?}"))
        .into_inner()
        .url
}

async fn remove_pod(node: &Node, pod: &str) {
    let mut rt = node.runtime().await;
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("RemovePodSandbox");
    assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
}

fn spdy_exec_output_and_exit_codes(env: &Env) {
    env.rt.block_on(async {
        let (node, pod, id) = node_with_container(env, "sexec").await;
        let url = exec_url(
            &node,
            &id,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            false,
            false,
        )
        .await;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let out = spdy::run_exec(&url, None, false)
            .await
            .expect("exec session");
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(
            out.exit_code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.status)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.status).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");

        let url = exec_url(&node, &id, &["echo", "fine"], false, false).await;
        let out = spdy::run_exec(&url, None, false).await.unwrap();
        assert_eq!(
            (out.stdout.as_slice(), out.exit_code()),
            (&b"fine\n"[..], Some(0))
        );

        // A command that cannot run: a failure status, not an exit code.
        let url = exec_url(&node, &id, &["no-such-command"], false, false).await;
        let out = spdy::run_exec(&url, None, false).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.status).unwrap();
        assert_eq!(v["status"], "Failure");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains("executable file not found"),
            "{v}"
        );

        // Validation at the RPC.
        let err = node
            .runtime()
            .await
            .exec(ExecRequest {
                container_id: id.clone(),
                cmd: vec!["true".into()],
                tty: true,
                stdin: false,
                stdout: true,
                stderr: true,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = node
            .runtime()
            .await
            .exec(ExecRequest {
                container_id: "nonexistent".into(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        remove_pod(&node, &pod).await;
    });
}

fn spdy_exec_stdin_and_tty(env: &Env) {
    env.rt.block_on(async {
        let (node, pod, id) = node_with_container(env, "sstdin").await;
        // stdin piped through, EOF when the client closes it.
        let data = vec![b'x'; 200_000];
        let url = exec_url(&node, &id, &["wc", "-c"], true, false).await;
        let out = spdy::run_exec(&url, Some(&data), false).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200000");
        assert_eq!(out.exit_code(), Some(0));

        // A terminal: resize seen by stty, the exit code of the shell.
        let url = exec_url(&node, &id, &["sh"], true, true).await;
        let mut s = spdy::exec(&url, true, true, false, true, spdy::Options::default())
            .await
            .unwrap();
        let resize = s.resize.take().expect("resize stream with a tty");
        resize.send((132, 43)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let out = spdy::finish(s, Some(b"stty size; tty; exit 5\n"))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains("43 132"), "{text:?}");
        assert!(text.contains("/dev/pts/"), "{text:?}");
        assert_eq!(out.exit_code(), Some(5), "{text:?}");
        remove_pod(&node, &pod).await;
    });
}

fn spdy_exec_client_gone_kills(env: &Env) {
    env.rt.block_on(async {
        let (node, pod, id) = node_with_container(env, "sgone").await;
        // A command that forks, in a container whose PID 1 (`sleep`) never reaps.
        let url = exec_url(
            &node,
            &id,
            &["sh", "-c", "sleep 1234 & sleep 1234 & wait"],
            false,
            false,
        )
        .await;
        let s = spdy::exec(&url, false, true, true, false, spdy::Options::default())
            .await
            .unwrap();
        let mut seen = false;
        for _ in 0..50 {
            if sleep_running(&node, &id).await {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(seen, "the exec never ran");
        s.conn.close();
        drop(s);
        let mut gone = false;
        for _ in 0..100 {
            if !sleep_running(&node, &id).await {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "the command outlived its client");
        // Nothing of it is left, not even a zombie, besides PID 1 and the checking shell (the
        // helper may still be reaping: give it a moment, zombies of a PID 1 that never reaps
        // would stay forever).
        let mut left = Vec::new();
        for _ in 0..50 {
            left = leftovers(&node, &id).await;
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(left.is_empty(), "left in the container: {left:?}");
        remove_pod(&node, &pod).await;
    });
}

/// The container's processes besides PID 1 and the check itself, and any zombie.
async fn leftovers(node: &Node, id: &str) -> Vec<String> {
    let r = node
        .runtime()
        .await
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), PROC_STATS.into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    proc_leftovers(&String::from_utf8_lossy(&r.stdout))
}

/// Whether `sleep 1234` runs in the container.
async fn sleep_running(node: &Node, id: &str) -> bool {
    let r = node
        .runtime()
        .await
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["ps".into(), "-o".into(), "args".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync ps")
        .into_inner();
    String::from_utf8_lossy(&r.stdout)
        .lines()
        .any(|l| l.trim() == "sleep 1234")
}

fn spdy_attach_tty(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let mut cfg = pod_config("sattach", NamespaceMode::Pod);
        cfg.log_directory = node.dir.path().join("logs").display().to_string();
        let pod = run_pod(&node, cfg).await.unwrap();
        let mut c = container_config("shell", &bb, &["sh"]);
        c.tty = true;
        c.stdin = true;
        let id = create_container(&node, &pod, c).await.unwrap();
        start_container(&node, &id).await;
        let attach = |stdin: bool| {
            let node = &node;
            let id = id.clone();
            async move {
                node.runtime()
                    .await
                    .attach(AttachRequest {
                        container_id: id,
                        stdin,
                        tty: true,
                        stdout: true,
                        stderr: false,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("Attach: {e:?}"))
                    .into_inner()
                    .url
            }
        };
        // A watcher, and a second attacher that types.
        let mut watcher = spdy::exec(
            &attach(false).await,
            false,
            true,
            false,
            true,
            spdy::Options::default(),
        )
        .await
        .unwrap();
        let mut typist = spdy::exec(
            &attach(true).await,
            true,
            true,
            false,
            true,
            spdy::Options::default(),
        )
        .await
        .unwrap();
        typist
            .stdin
            .as_ref()
            .unwrap()
            .send(b"echo attached-$((6*7))\n".to_vec())
            .await
            .unwrap();
        for (who, s) in [("typist", &mut typist), ("watcher", &mut watcher)] {
            let mut seen = String::new();
            let found = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(d) = s.stdout.recv().await {
                    seen.push_str(&String::from_utf8_lossy(&d));
                    if seen.contains("attached-42") {
                        return true;
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
            assert!(found, "{who} saw {seen:?}");
        }
        // The output is still logged.
        let st = container_status(&node, &id).await;
        let mut logged = false;
        for _ in 0..50 {
            if std::fs::read_to_string(&st.log_path)
                .unwrap_or_default()
                .contains("attached-42")
            {
                logged = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(logged, "attach output missing from the CRI log");
        // The shell exits: the attach ends with success.
        typist
            .stdin
            .as_ref()
            .unwrap()
            .send(b"exit 0\n".to_vec())
            .await
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), watcher.error)
            .await
            .expect("attach ended")
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&status).unwrap_or_default();
        assert_eq!(v["status"], "Success", "{v}");
        drop(typist);
        remove_pod(&node, &pod).await;
    });
}

fn spdy_port_forward_in_pod(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let pod = run_pod(&node, net_pod("sforward", &node)).await.unwrap();
        let id = create_container(
            &node,
            &pod,
            container_config(
                "web",
                &bb,
                &["sh", "-c", "mkdir -p /www && echo forwarded > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"],
            ),
        )
        .await
        .unwrap();
        start_container(&node, &id).await;
        let url = port_forward_url(&node, &pod).await;
        let conn = spdy::port_forward(&url).await.unwrap();
        let mut body = String::new();
        for attempt in 0..30 {
            let mut pc = spdy::open_port(&conn, 8080, attempt).await.unwrap();
            pc.data.write(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            let got = String::from_utf8_lossy(&pc.data.read_to_end().await).to_string();
            if got.contains("forwarded") {
                body = got;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(body.contains("200") && body.ends_with("forwarded\n"), "{body:?}");
        // Nothing listens on 9: the error stream says so.
        let mut pc = spdy::open_port(&conn, 9, 100).await.unwrap();
        let msg = String::from_utf8_lossy(&pc.error.read_to_end().await).to_string();
        assert!(msg.contains("localhost:9"), "{msg:?}");
        conn.close();
        // A token issued while the pod was ready, used after it stopped (issue 12): no pod
        // network any more, and never the node's. Something listens on the node's localhost.
        let url = port_forward_url(&node, &pod).await;
        node.runtime()
            .await
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .expect("StopPodSandbox");
        let on_node = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node_port = on_node.local_addr().unwrap().port();
        let node_server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut s, _)) = on_node.accept().await {
                let _ = s.write_all(b"node-only\n").await;
            }
        });
        let conn = spdy::port_forward(&url).await.unwrap();
        let mut pc = spdy::open_port(&conn, node_port, 200).await.unwrap();
        let data = String::from_utf8_lossy(&pc.data.read_to_end().await).to_string();
        let msg = String::from_utf8_lossy(&pc.error.read_to_end().await).to_string();
        assert!(!data.contains("node-only"), "forwarded to the node: {data:?}");
        assert!(msg.contains("not ready"), "{msg:?}");
        conn.close();
        node_server.abort();
        remove_pod(&node, &pod).await;
        assert!(net.reserved().is_empty());
    });
}

fn fifty_concurrent_execs(env: &Env) {
    env.rt.block_on(async {
        let (node, pod, id) = node_with_container(env, "sfifty").await;
        let node = Arc::new(node);
        let mut tasks = Vec::new();
        for i in 0..50 {
            let node = node.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let script = format!("sleep 0.5; echo session-{i}");
                let url = exec_url(&node, &id, &["sh", "-c", &script], false, false).await;
                let out = spdy::run_exec(&url, None, false)
                    .await
                    .expect("exec session");
                (i, out)
            }));
        }
        for t in tasks {
            let (i, out) = t.await.unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("session-{i}\n")
            );
            assert_eq!(out.exit_code(), Some(0));
        }
        // The CRI server kept answering meanwhile, and still does.
        node.runtime()
            .await
            .version(VersionRequest::default())
            .await
            .unwrap();
        remove_pod(&node, &pod).await;
    });
}

fn tokens_single_use_and_unknown(env: &Env) {
    env.rt.block_on(async {
        let (node, pod, id) = node_with_container(env, "stokens").await;
        let url = exec_url(&node, &id, &["true"], false, false).await;
        let out = spdy::run_exec(&url, None, false).await.unwrap();
        assert_eq!(out.exit_code(), Some(0));
        // Used once: gone.
        let (addr, path) = spdy::split_url(&url).unwrap();
        let get = |path: String| {
            let addr = addr.clone();
            async move {
                tokio::task::spawn_blocking(move || http_request(&addr, None, "GET", &path, &[]))
                    .await
                    .unwrap()
                    .expect("GET")
                    .status
            }
        };
        assert_eq!(get(path).await, 404);
        assert_eq!(get(format!("/exec/{}", "0".repeat(32))).await, 404);
        // Without an upgrade, a fresh token is refused (and used up).
        let url = exec_url(&node, &id, &["true"], false, false).await;
        let (_, path) = spdy::split_url(&url).unwrap();
        assert_eq!(get(path.clone()).await, 400);
        assert_eq!(get(path).await, 404);

        // Tokens expire: with a 1 s TTL, a URL used 2 s later is gone.
        let mut node = node;
        node.stop();
        let mut conf = std::fs::read_to_string(&node.config).unwrap();
        conf.push_str("[streaming]\ntoken_ttl_secs = 1\n");
        std::fs::write(&node.config, conf).unwrap();
        node.spawn().await;
        let url = exec_url(&node, &id, &["true"], false, false).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (addr, path) = spdy::split_url(&url).unwrap();
        let status =
            tokio::task::spawn_blocking(move || http_request(&addr, None, "GET", &path, &[]))
                .await
                .unwrap()
                .expect("GET")
                .status;
        assert_eq!(status, 404, "an expired token");
        let err = spdy::run_exec(&url, None, false).await;
        assert!(err.is_err(), "an expired URL does not upgrade");
        remove_pod(&node, &pod).await;
    });
}

fn websocket_exec_protocols(env: &Env) {
    env.rt.block_on(async {
        let (node, pod, id) = node_with_container(env, "wexec").await;
        // v5 (kubectl): stdin ended by the close signal, exit code in the status.
        let url = exec_url(
            &node,
            &id,
            &["sh", "-c", "wc -c; echo err >&2; exit 4"],
            true,
            false,
        )
        .await;
        let out = ws::run_exec(
            &url,
            &["v5.channel.k8s.io", "v4.channel.k8s.io"],
            Some(&[b'z'; 70_000]),
            None,
        )
        .await
        .expect("v5 exec");
        assert_eq!(out.protocol, "v5.channel.k8s.io");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "70000");
        assert_eq!(out.stderr, b"err\n");
        let v: serde_json::Value = serde_json::from_slice(&out.status).unwrap();
        assert_eq!(v["details"]["causes"][0]["message"], "4", "{v}");
        // v4 (crictl --websocket-exec) and its base64 variant.
        for proto in ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"] {
            let url = exec_url(&node, &id, &["echo", "hello"], false, false).await;
            let out = ws::run_exec(&url, &[proto], None, None).await.expect(proto);
            assert_eq!(out.protocol, proto);
            assert_eq!(out.stdout, b"hello\n", "{proto}");
            assert_eq!(
                &out.status[..],
                br#"{"metadata":{},"status":"Success"}"#,
                "{proto}"
            );
        }
        // A terminal over WebSocket: the resize reaches the pty.
        let url = exec_url(
            &node,
            &id,
            &["sh", "-c", "sleep 0.3; stty size"],
            false,
            true,
        )
        .await;
        let out = ws::run_exec(&url, &["v5.channel.k8s.io"], None, Some((120, 33)))
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "33 120");
        remove_pod(&node, &pod).await;
    });
}

fn websocket_port_forward(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let pod = run_pod(&node, net_pod("wforward", &node)).await.unwrap();
        let id = create_container(
            &node,
            &pod,
            container_config(
                "web",
                &bb,
                &["sh", "-c", "mkdir -p /www && echo over-ws > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"],
            ),
        )
        .await
        .unwrap();
        start_container(&node, &id).await;
        let mut body = Vec::new();
        for _ in 0..30 {
            let url = port_forward_url(&node, &pod).await;
            let (data, _) = ws::port_forward_once(&url, 8080, b"GET / HTTP/1.0\r\n\r\n", b"over-ws\n")
                .await
                .unwrap();
            if String::from_utf8_lossy(&data).contains("over-ws") {
                body = data;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(String::from_utf8_lossy(&body).ends_with("over-ws\n"), "{:?}", String::from_utf8_lossy(&body));
        remove_pod(&node, &pod).await;
        assert!(net.reserved().is_empty());
    });
}
