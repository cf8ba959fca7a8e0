//! The end-to-end suites behind one harness (libtest-mimic, `harness = false`), one file each
//! next to this one: `cri` (images, pods, containers, the daemon's lifecycle), `resources`
//! (ExecSync, limits, stats, events; also run on a cgroup v2 kernel by `make test-cgroup2`),
//! `network` (CNI pod networking), `streaming` (Exec, Attach and PortForward over SPDY and
//! WebSocket), `cli` (the `berth` binary's docker verbs, through a tmux pty too), `metrics`
//! (CRI pod metrics, and Debian's prometheus scraping berthd), `systemd_driver` (the systemd
//! cgroup driver against a real systemd) and `systemd` (berthd installed as a systemd service),
//! both for `make test-systemd`, in e2e/cg2vm --systemd (elsewhere the systemd suite's tests are
//! reported ignored, "skipped: ..."), and `chaos` (random operations with berthd and shims
//! killed: `make chaos` only, never `make e2e`) and `fuzz` (mutated CRI requests: `make
//! fuzz-cri` only). One binary links the test bed once instead of ten times.
//!
//! Every test is named `<suite>::<test>`, so libtest's usual filter picks a suite or one test:
//!
//! ```text
//! cargo test -p berth-e2e --test e2e -- cri:: --test-threads=2      # one suite
//! cargo test -p berth-e2e --test e2e -- --exact network::pod_stats  # one test
//! cargo test -p berth-e2e --test e2e -- --list                      # every name, no setup
//! ```
//!
//! The process enters a private network namespace before any thread exists, and the suites run
//! one after another in it (`make e2e` runs each suite in a process of its own). A suite's
//! environment (a tokio runtime and a registry on loopback holding its images: `setup()` in its
//! file) is built only when one of its tests is selected, and dropped, with the e2e cgroup
//! parents, before the next suite starts. `--test-threads` applies within a suite, capped where
//! a suite needs it: `network` runs one test at a time, as its checks count the namespace's
//! veths and IP reservations.

mod chaos;
mod cli;
mod cri;
mod fuzz;
mod metrics;
mod network;
mod resources;
mod streaming;
mod systemd;
mod systemd_driver;

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use berth_e2e::cri::remove_cgroup_parents;
use berth_e2e::netns;
use berth_e2e::registry::install_crypto_provider;
use libtest_mimic::{Arguments, Completion, Conclusion, Trial};

/// One suite: tests that share an environment `E`.
struct Suite<E: 'static> {
    name: &'static str,
    /// At most this many of the suite's tests at once, whatever `--test-threads` says.
    max_threads: Option<usize>,
    setup: fn() -> E,
    tests: &'static [Test<E>],
    /// What the machine lacks for the suite (e.g. systemd as PID 1), checked before setup: then
    /// its tests are reported ignored ("skipped: <why>"), or fail when the environment variable
    /// named by `required_by` is `1` (the runner that set it promised the environment).
    unavailable: Option<fn() -> Option<String>>,
    required_by: Option<&'static str>,
}

/// A test's name within its suite, and the test.
type Test<E> = (&'static str, fn(&E));

fn main() -> ExitCode {
    // Before any thread exists: every suite lives in this process's own network namespace.
    netns::enter_private_netns();
    install_crypto_provider();
    let args = Arguments::from_args();
    // The order `make e2e` has always used.
    let conclusions = [
        run(
            &args,
            Suite {
                name: "cri",
                max_threads: None,
                setup: cri::setup,
                tests: cri::TESTS,
                unavailable: None,
                required_by: None,
            },
        ),
        run(
            &args,
            Suite {
                name: "resources",
                max_threads: None,
                setup: resources::setup,
                tests: resources::TESTS,
                unavailable: None,
                required_by: None,
            },
        ),
        run(
            &args,
            Suite {
                name: "network",
                max_threads: Some(1),
                setup: network::setup,
                tests: network::TESTS,
                unavailable: None,
                required_by: None,
            },
        ),
        run(
            &args,
            Suite {
                name: "streaming",
                max_threads: None,
                setup: streaming::setup,
                tests: streaming::TESTS,
                unavailable: None,
                required_by: None,
            },
        ),
        run(
            &args,
            Suite {
                name: "cli",
                max_threads: None,
                setup: cli::setup,
                tests: cli::TESTS,
                unavailable: None,
                required_by: None,
            },
        ),
        run(
            &args,
            Suite {
                name: "metrics",
                max_threads: None,
                setup: metrics::setup,
                tests: metrics::TESTS,
                unavailable: None,
                required_by: None,
            },
        ),
        run(
            &args,
            Suite {
                name: "systemd_driver",
                max_threads: Some(1),
                setup: systemd_driver::setup,
                tests: systemd_driver::TESTS,
                unavailable: None,
                required_by: None,
            },
        ),
        run(
            &args,
            Suite {
                name: "chaos",
                max_threads: Some(1),
                setup: chaos::setup,
                tests: chaos::TESTS,
                unavailable: None,
                required_by: None,
            },
        ),
        run(
            &args,
            Suite {
                name: "fuzz",
                max_threads: Some(1),
                setup: fuzz::setup,
                tests: fuzz::TESTS,
                unavailable: None,
                required_by: None,
            },
        ),
        run(
            &args,
            Suite {
                name: "systemd",
                max_threads: Some(1),
                setup: systemd::setup,
                tests: systemd::TESTS,
                unavailable: Some(systemd::unavailable),
                required_by: Some(systemd::REQUIRED_BY),
            },
        ),
    ];
    let ran: Vec<Conclusion> = conclusions.into_iter().flatten().collect();
    if ran.is_empty() {
        // Nothing selected: libtest's usual "running 0 tests" report.
        return libtest_mimic::run(&args, Vec::new()).exit_code();
    }
    if ran.iter().any(Conclusion::has_failed) {
        ExitCode::from(101)
    } else {
        ExitCode::SUCCESS
    }
}

/// Run the suite's selected tests (none selected: nothing is built, None). The environment is
/// set before the first test runs, so every test may count on it.
fn run<E: Send + Sync + 'static>(args: &Arguments, suite: Suite<E>) -> Option<Conclusion> {
    let env: Arc<OnceLock<E>> = Arc::default();
    let trials: Vec<Trial> = suite
        .tests
        .iter()
        .map(|&(name, test)| {
            let env = env.clone();
            Trial::test(format!("{}::{name}", suite.name), move || {
                test(
                    env.get()
                        .expect("the suite's environment is set before its tests"),
                );
                Ok(())
            })
        })
        .collect();
    if trials.iter().all(|t| args.is_filtered_out(t)) {
        return None;
    }
    if args.list {
        return Some(libtest_mimic::run(args, trials));
    }
    if let Some(why) = suite.unavailable.and_then(|f| f()) {
        let required = suite
            .required_by
            .filter(|var| std::env::var(var).is_ok_and(|v| v == "1"));
        let trials = trials
            .iter()
            .map(|t| {
                let why = why.clone();
                match required {
                    Some(var) => Trial::test(t.name(), move || {
                        Err(format!("{why}, but {var}=1 says this machine has it").into())
                    }),
                    None => Trial::ignorable_test(t.name(), move || {
                        Ok(Completion::ignored_with(format!("skipped: {why}")))
                    }),
                }
            })
            .collect();
        return Some(libtest_mimic::run(args, trials));
    }
    // The cell's only set, so it cannot fail.
    let _ = env.set((suite.setup)());
    let mut args = args.clone();
    if let Some(max) = suite.max_threads {
        args.test_threads = Some(args.test_threads.map_or(max, |n| n.min(max)));
    }
    let conclusion = libtest_mimic::run(&args, trials);
    // The trials are gone: this was the last reference, so the registry and runtime stop here.
    drop(env);
    remove_cgroup_parents();
    Some(conclusion)
}
