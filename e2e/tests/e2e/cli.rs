//! End-to-end, the `berth` CLI (the built target/debug/berth binary) against a real berthd:
//! docker's verbs over CRI (run, ps, logs, exec, stop, start, rm, images, rmi, inspect, stats,
//! events, port-forward), registry credentials from stdin and the environment (never argv),
//! and `run -it` through a real pty (tmux: send-keys, capture-pane, resize-window).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::cri::*;
use berth_e2e::images::RuntimeEnv;
use berth_e2e::node::{Node, berth_cli_binary};
use berth_e2e::registry::{Registry, RegistryOpts};

/// What every test of the suite shares.
pub type Env = RuntimeEnv;

type TestFn = fn(&Env);

/// The suite's tests; the harness names them `cli::<name>`.
pub const TESTS: &[(&str, TestFn)] = &[
    ("run_detached_lifecycle", run_detached_lifecycle),
    ("run_detached_rm", run_detached_rm),
    (
        "run_foreground_pulls_and_exits",
        run_foreground_pulls_and_exits,
    ),
    ("events_follow_run", events_follow_run),
    ("run_it_through_a_pty", run_it_through_a_pty),
    ("port_forward_to_pod", port_forward_to_pod),
    ("registry_credentials", registry_credentials),
];

pub fn setup() -> Env {
    RuntimeEnv::start()
}

/// The CLI pointed at one node, its pods under the e2e cgroup parent, logs in the node's dir.
struct Cli {
    socket: String,
    log_root: PathBuf,
}

impl Cli {
    fn new(node: &Node) -> Cli {
        Cli {
            socket: format!("unix://{}", node.socket.display()),
            log_root: node.dir.path().join("cli-logs"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berth_cli_binary());
        c.args(args)
            .env("BERTH_ADDRESS", &self.socket)
            .env("BERTH_CGROUP_PARENT", E2E_CGROUP_PARENT)
            .env("BERTH_LOG_ROOT", &self.log_root)
            .env_remove("BERTH_PASSWORD")
            .env_remove("BERTH_REGISTRY_AUTH")
            .stdin(Stdio::null());
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running berth")
    }

    /// (exit code, stdout, stderr)
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.output(args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "berth {args:?}: {out}{err}");
        out
    }

    /// The `ps -a --format json` entry of a container name.
    fn ps_entry(&self, name: &str) -> Option<serde_json::Value> {
        let out = self.ok(&["ps", "-a", "--format", "json"]);
        let v: Vec<serde_json::Value> = serde_json::from_str(&out).expect("ps JSON");
        v.into_iter().find(|c| c["name"] == name)
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_detached_lifecycle(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let cli = Cli::new(&node);
        let bb = env.set.busybox.reference();
        cli.ok(&["pull", &bb]);
        let script = "trap 'exit 143' TERM; echo hello; echo oops >&2; i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done";
        let id = cli.ok(&[
            "run", "-d", "--name", "web", "--network", "host", "-e", "GREETING=hi there",
            "-v", &format!("{}:/hostdir:ro", node.dir.path().display()),
            &bb, "sh", "-c", script,
        ]);
        let id = id.trim().to_string();
        assert_eq!(id.len(), 64, "{id}");
        // A name already in use is refused.
        let (code, _, err) = cli.run(&["run", "-d", "--name", "web", "--network", "host", &bb]);
        assert_ne!(code, 0);
        assert!(err.contains("already in use"), "{err}");
        // ps: a table and JSON, running.
        let table = cli.ok(&["ps"]);
        assert!(table.starts_with("CONTAINER"), "{table}");
        let line = table.lines().find(|l| l.contains(&id[..13])).expect(&table);
        assert!(line.contains("Up ") && line.contains("web"), "{line}");
        let e = cli.ps_entry("web").expect("web in ps");
        assert_eq!((e["state"].as_str(), e["id"].as_str()), (Some("Running"), Some(id.as_str())));
        // logs: both streams, tail, since.
        wait_for("three ticks", || cli.ok(&["logs", "web"]).contains("tick2"));
        let o = cli.output(&["logs", "web"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with("hello\ntick0\n"), "{out}");
        assert_eq!(String::from_utf8_lossy(&o.stderr), "oops\n");
        let tail = cli.ok(&["logs", "--tail", "2", &id[..12]]);
        assert_eq!(tail.lines().count(), 2, "{tail}");
        assert!(tail.lines().all(|l| l.starts_with("tick")), "{tail}");
        assert_eq!(cli.ok(&["logs", "--since", "2099-01-01T00:00:00Z", "web"]), "");
        let stamped = cli.ok(&["logs", "--timestamps", "web"]);
        let tick2 = stamped.lines().find(|l| l.ends_with(" tick2")).expect(&stamped);
        let since = tick2.split(' ').next().unwrap();
        let recent = cli.ok(&["logs", "--since", since, "web"]);
        assert!(recent.starts_with("tick2\n"), "{recent}");
        assert!(cli.ok(&["logs", "--since", "1h", "web"]).starts_with("hello\n"));
        // logs -f follows until the container stops (below).
        let mut follow = cli.command(&["logs", "-f", "--tail", "0", "web"]);
        let follow = follow.stdout(Stdio::piped()).spawn().expect("logs -f");
        // exec: streaming by default, stdin with -i, the exit code passed through; --sync too.
        let (code, out, _) = cli.run(&["exec", "web", "sh", "-c", "echo $GREETING; exit 4"]);
        assert_eq!((code, out.as_str()), (4, "hi there\n"));
        let mut child = cli
            .command(&["exec", "-i", "web", "sh", "-c", "tr a-z A-Z; ls /hostdir >/dev/null && echo mounted"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "SHOUT\nmounted\n");
        assert!(o.status.success());
        let (code, out, _) = cli.run(&["exec", "--sync", &id[..8], "sh", "-c", "echo sync; exit 2"]);
        assert_eq!((code, out.as_str()), (2, "sync\n"));
        let (code, _, err) = cli.run(&["exec", "web", "sh", "-c", "touch /hostdir/x"]);
        assert_ne!(code, 0, "a read-only volume");
        assert!(err.contains("Read-only"), "{err}");
        // inspect: container, pod, image; JSON arrays.
        let v: serde_json::Value = serde_json::from_str(&cli.ok(&["inspect", "web"])).unwrap();
        assert_eq!(v[0]["type"], "container");
        assert_eq!(v[0]["status"]["id"], id.as_str());
        assert_eq!(v[0]["info"]["config"]["envs"][0]["value"], "hi there");
        let pod = v[0]["info"]["sandboxID"].as_str().unwrap().to_string();
        let v: serde_json::Value =
            serde_json::from_str(&cli.ok(&["inspect", "--type", "pod", "web"])).unwrap();
        assert_eq!((v[0]["type"].as_str(), v[0]["status"]["id"].as_str()), (Some("pod"), Some(pod.as_str())));
        assert_eq!(v[0]["status"]["labels"]["io.berth.cli/run"], "true");
        let v: serde_json::Value = serde_json::from_str(&cli.ok(&["inspect", &bb])).unwrap();
        assert_eq!(v[0]["status"]["id"], env.set.busybox.image_id());
        let (code, _, err) = cli.run(&["inspect", "nothing-like-this"]);
        assert!(code != 0 && err.contains("no such object"), "{err}");
        // stats --no-stream: a table and JSON with the container's memory.
        let s = cli.ok(&["stats", "--no-stream"]);
        assert!(s.starts_with("CONTAINER") && s.contains("web"), "{s}");
        let v: serde_json::Value =
            serde_json::from_str(&cli.ok(&["stats", "--no-stream", "--format", "json", "web"])).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
        assert!(v[0]["memory_working_set_bytes"].as_u64().unwrap() > 0, "{v}");
        // images / --format json.
        assert!(cli.ok(&["images"]).contains(&env.set.busybox.image_id()[7..20]));
        let v: serde_json::Value = serde_json::from_str(&cli.ok(&["images", "--format", "json"])).unwrap();
        assert!(v.as_array().unwrap().iter().any(|i| i["id"] == env.set.busybox.image_id()));
        // rm refuses a running container; stop; ps hides it, ps -a shows the exit.
        let (code, _, err) = cli.run(&["rm", "web"]);
        assert!(code != 0 && err.contains("running"), "{err}");
        assert_eq!(cli.ok(&["stop", "-t", "1", "web"]).trim(), "web");
        assert!(!cli.ok(&["ps"]).contains("web"));
        let e = cli.ps_entry("web").expect("exited web in ps -a");
        assert_eq!(e["state"], "Exited");
        assert_eq!(e["exit_code"], 143);
        let followed = follow.wait_with_output().expect("logs -f ends");
        assert!(followed.status.success());
        assert!(String::from_utf8_lossy(&followed.stdout).contains("tick"));
        // start: runs it again (the next attempt in the same pod).
        cli.ok(&["start", "web"]);
        let e = cli.ps_entry("web").expect("web again");
        assert_eq!((e["state"].as_str(), e["attempt"].as_u64()), (Some("Running"), Some(1)));
        assert_eq!(e["pod_sandbox_id"], pod.as_str());
        wait_for("the new attempt logs", || cli.ok(&["logs", "web"]).starts_with("hello"));
        // rm -f: the container and the pod run made, with its log directory.
        cli.ok(&["rm", "-f", "web"]);
        assert!(cli.ps_entry("web").is_none());
        assert!(!cli.ok(&["pods"]).contains(&pod[..13]));
        assert_eq!(dir_entries(&cli.log_root), Vec::<PathBuf>::new());
        // rmi.
        cli.ok(&["rmi", &bb]);
        assert!(!cli.ok(&["images"]).contains(&env.set.busybox.image_id()[7..20]));
        assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
    });
}

/// `run -d --rm` (docker's AutoRemove): berthd removes the container, its pod and its logs when
/// it exits, also when it exited while berthd was down; a plain `run -d` stays.
fn run_detached_rm(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start().await;
        let cli = Cli::new(&node);
        let bb = env.set.busybox.reference();
        cli.ok(&["pull", &bb]);
        cli.ok(&[
            "run",
            "-d",
            "--name",
            "kept",
            "--network",
            "host",
            &bb,
            "true",
        ]);
        let gone = cli.ok(&[
            "run",
            "-d",
            "--rm",
            "--name",
            "gone",
            "--network",
            "host",
            &bb,
            "sh",
            "-c",
            "echo bye; sleep 1; exit 3",
        ]);
        assert_eq!(gone.trim().len(), 64, "{gone}");
        wait_for("kept exits", || {
            cli.ps_entry("kept").is_some_and(|e| e["state"] == "Exited")
        });
        wait_for("gone is removed", || cli.ps_entry("gone").is_none());
        let pods: Vec<serde_json::Value> =
            serde_json::from_str(&cli.ok(&["pods", "--format", "json"])).expect("pods JSON");
        let pod_named = |name: &str| pods.iter().any(|p| p["name"] == name);
        assert!(!pod_named("gone"), "the pod run made is removed: {pods:?}");
        assert!(pod_named("kept"), "{pods:?}");
        let ids = cli.ok(&["pods", "-q"]);
        assert_eq!(
            ids.lines().collect::<Vec<_>>(),
            [pods[0]["id"].as_str().unwrap()]
        );
        let table = cli.ok(&["pods"]);
        assert!(
            table.starts_with("POD ID") && table.contains("kept"),
            "{table}"
        );
        let logs: Vec<String> = dir_entries(&cli.log_root)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            logs.len() == 1 && logs[0].starts_with("berth_kept_"),
            "only kept's log directory is left: {logs:?}"
        );
        // Exited while berthd was down: removed when it is back.
        let later = cli.ok(&[
            "run",
            "-d",
            "--rm",
            "--name",
            "later",
            "--network",
            "host",
            &bb,
            "sleep",
            "2",
        ]);
        node.kill9();
        // The shim's exit record (`<state>/shims/<id prefix>/exit`).
        let exit_record = node
            .state
            .join("shims")
            .join(&later.trim()[..16])
            .join("exit");
        wait_for("later exits while berthd is down", || exit_record.exists());
        node.spawn().await;
        wait_for("later is removed after the restart", || {
            cli.ps_entry("later").is_none()
        });
        assert!(
            cli.ps_entry("kept").is_some(),
            "a container without --rm stays"
        );
        cli.ok(&["rm", "-f", "kept"]);
        assert_eq!(dir_entries(&cli.log_root), Vec::<PathBuf>::new());
    });
}

fn run_foreground_pulls_and_exits(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let cli = Cli::new(&node);
        let bb = env.set.busybox.reference();
        // Not pulled yet: run pulls it, streams the output and exits with the command's code.
        let (code, out, err) = cli.run(&[
            "run",
            "--rm",
            "--network",
            "host",
            &bb,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 5",
        ]);
        assert_eq!(code, 5, "{out}{err}");
        assert_eq!(out, "out\n");
        assert!(
            err.contains("Unable to find image") && err.ends_with("err\n"),
            "{err}"
        );
        // --rm left nothing: no container, no pod.
        assert_eq!(cli.ok(&["ps", "-a", "-q"]), "");
        assert_eq!(cli.ok(&["pods"]).lines().count(), 1);
        // Without --rm the exited container stays, with its code; stdin with -i.
        let mut child = cli
            .command(&[
                "run",
                "-i",
                "--name",
                "cat",
                "--network",
                "host",
                &bb,
                "sh",
                "-c",
                "cat; exit 7",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"piped through\n")
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(7));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "piped through\n");
        assert_eq!(cli.ps_entry("cat").unwrap()["exit_code"], 7);
        cli.ok(&["rm", "cat"]);
        assert_eq!(cli.ok(&["pods"]).lines().count(), 1);
        // Bad arguments are refused before anything is made.
        let (code, _, err) = cli.run(&["run", "-v", "vol:/data", &bb]);
        assert!(code != 0 && err.contains("absolute"), "{err}");
        let (code, _, _) = cli.run(&["run", "-d", "--rm", &bb]);
        assert_ne!(code, 0);
        assert_eq!(cli.ok(&["pods"]).lines().count(), 1);
    });
}

fn events_follow_run(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let cli = Cli::new(&node);
        let bb = env.set.busybox.reference();
        cli.ok(&["pull", &bb]);
        let mut events = cli
            .command(&["events", "--format", "json"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("berth events");
        let pid = events.id();
        let lines = BufReader::new(events.stdout.take().unwrap());
        let id = cli.ok(&[
            "run",
            "-d",
            "--name",
            "ev",
            "--network",
            "host",
            &bb,
            "sh",
            "-c",
            "exit 0",
        ]);
        let id = id.trim().to_string();
        cli.ok(&["rm", "-f", "ev"]);
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for l in lines.lines() {
                let Ok(l) = l else { break };
                let v: serde_json::Value = serde_json::from_str(&l).expect("event JSON");
                if v["container_id"] == id.as_str() {
                    seen.push(v["type"].as_str().unwrap_or("").to_string());
                    assert_eq!(v["name"], "ev");
                }
                if seen.last().map(String::as_str) == Some("delete") {
                    break;
                }
            }
            seen
        });
        let start = Instant::now();
        while !reader.is_finished() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Kill our own child by its pid.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = events.wait();
        let seen = reader.join().unwrap();
        assert_eq!(seen, ["create", "start", "stop", "delete"]);
    });
}

/// A private tmux server (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            .output()
            .expect("tmux (Debian package tmux)")
    }

    fn pane(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    fn wait_pane(&self, what: &str, f: impl Fn(&str) -> bool) {
        let start = Instant::now();
        loop {
            let p = self.pane();
            if f(&p) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "waiting for {what}:\n{p}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.cmd(&["kill-server"]);
    }
}

fn run_it_through_a_pty(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let cli = Cli::new(&node);
        let bb = env.set.busybox.reference();
        cli.ok(&["pull", &bb]);
        let exit_file = node.dir.path().join("exit-code");
        let script = format!(
            "BERTH_ADDRESS='{}' BERTH_CGROUP_PARENT='{}' BERTH_LOG_ROOT='{}' '{}' run -it --rm --name tty --network host '{}' sh; echo $? > '{}'; sleep 60",
            cli.socket,
            E2E_CGROUP_PARENT,
            cli.log_root.display(),
            berth_cli_binary().display(),
            bb,
            exit_file.display()
        );
        let tmux = Tmux {
            socket: format!("berth-e2e-{}", std::process::id()),
        };
        let o = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "80", "-y", "24", &script]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // The shell's prompt (Enter until one shows: the first may come before the attach).
        let start = Instant::now();
        while !tmux.pane().contains("/ #") {
            assert!(start.elapsed() < Duration::from_secs(20), "no prompt:\n{}", tmux.pane());
            std::thread::sleep(Duration::from_millis(500));
            tmux.cmd(&["send-keys", "-t", "t", "Enter"]);
        }
        // Typed input runs, its output comes back; the terminal is the container's.
        tmux.cmd(&["send-keys", "-t", "t", "echo $((6*7)) && tty", "Enter"]);
        tmux.wait_pane("the command's output", |p| {
            p.lines().any(|l| l.trim() == "42") && p.contains("/dev/pts/")
        });
        assert_eq!(cli.ps_entry("tty").unwrap()["state"], "Running");
        // The window's size reaches the container's terminal, and a resize follows.
        tmux.cmd(&["send-keys", "-t", "t", "stty size", "Enter"]);
        tmux.wait_pane("24 80", |p| p.lines().any(|l| l.trim() == "24 80"));
        let o = tmux.cmd(&["resize-window", "-t", "t", "-x", "100", "-y", "30"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(300));
        tmux.cmd(&["send-keys", "-t", "t", "clear; stty size", "Enter"]);
        tmux.wait_pane("30 100", |p| p.lines().any(|l| l.trim() == "30 100"));
        // Ctrl-C goes to the container (raw mode), not to berth.
        tmux.cmd(&["send-keys", "-t", "t", "sleep 30", "Enter"]);
        std::thread::sleep(Duration::from_millis(300));
        tmux.cmd(&["send-keys", "-t", "t", "C-c"]);
        tmux.cmd(&["send-keys", "-t", "t", "echo still-$((1+1))", "Enter"]);
        tmux.wait_pane("the shell after ^C", |p| p.contains("still-2"));
        // exit 3: berth exits 3, and --rm removed the container and its pod.
        tmux.cmd(&["send-keys", "-t", "t", "exit 3", "Enter"]);
        wait_for("berth to exit", || {
            std::fs::read_to_string(&exit_file).is_ok_and(|s| s.ends_with('\n'))
        });
        assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "3");
        assert!(cli.ps_entry("tty").is_none());
        assert_eq!(cli.ok(&["pods"]).lines().count(), 1);
    });
}

fn port_forward_to_pod(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let net = install_network(&node);
        let cli = Cli::new(&node);
        let bb = env.set.busybox.reference();
        cli.ok(&["pull", &bb]);
        cli.ok(&[
            "run", "-d", "--name", "www", &bb, "sh", "-c",
            "mkdir -p /www && echo through-cli > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www",
        ]);
        let mut pf = cli
            .command(&["port-forward", "www", "0:8080"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("port-forward");
        let pid = pf.id();
        let mut lines = BufReader::new(pf.stdout.take().unwrap());
        let mut first = String::new();
        lines.read_line(&mut first).unwrap();
        // "Forwarding from 127.0.0.1:PORT -> 8080"
        let addr = first
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("{first}"))
            .to_string();
        let mut body = String::new();
        for _ in 0..50 {
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                use std::io::Read;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                body.clear();
                let _ = s.read_to_string(&mut body);
                if body.ends_with("through-cli\n") {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = pf.wait();
        assert!(body.starts_with("HTTP/1.") && body.ends_with("through-cli\n"), "{body}");
        cli.ok(&["rm", "-f", "www"]);
        assert!(net.reserved().is_empty());
    });
}

fn registry_credentials(env: &Env) {
    env.rt.block_on(async {
        let reg = Registry::start(RegistryOpts::with_htpasswd("berth", "s3cret"));
        let set = berth_e2e::images::push_standard_set(&reg).await;
        let node = Node::start().await;
        let cli = Cli::new(&node);
        let image = set.busybox.reference();
        // A password on the command line is refused before anything is sent.
        let (code, _, err) = cli.run(&["pull", "--creds", "berth:s3cret", &image]);
        assert!(code != 0 && err.contains("command line"), "{err}");
        let (code, _, err) = cli.run(&["pull", &image]);
        assert!(code != 0 && err.contains("Unauthenticated"), "{err}");
        // --password-stdin, as docker login.
        let mut child = cli
            .command(&["pull", "--username", "berth", "--password-stdin", &image])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"wrong\n").unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("PermissionDenied"));
        let mut child = cli
            .command(&["pull", "--username", "berth", "--password-stdin", &image])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        assert!(String::from_utf8_lossy(&o.stdout).contains(set.busybox.image_id()));
        // BERTH_PASSWORD with --username (--creds USER is the same).
        let o = cli
            .command(&["pull", "--creds", "berth", &set.shared_a.reference()])
            .env("BERTH_PASSWORD", "s3cret")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // BERTH_REGISTRY_AUTH, the docker config's base64 form; run pulls with it.
        let o = cli
            .command(&[
                "run",
                "--rm",
                "--network",
                "host",
                &set.shared_b.reference(),
                "true",
            ])
            .env(
                "BERTH_REGISTRY_AUTH",
                berth_e2e::registry::base64(b"berth:s3cret"),
            )
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            cli.ok(&["images"])
                .contains(&set.shared_b.image_id()[7..20])
        );
        // No terminal, no password source: the prompt says what to use instead.
        // setsid: no controlling terminal to prompt on.
        let o = Command::new("setsid")
            .arg("-w")
            .arg(berth_cli_binary())
            .args([
                "--address",
                &cli.socket,
                "pull",
                "--username",
                "berth",
                &image,
            ])
            .env_remove("BERTH_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains("--password-stdin"), "{err}");
    });
}
