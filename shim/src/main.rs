//! berth-shim: `berth-shim --id ID --bundle DIR --socket PATH --log PATH --exit-file PATH
//! [--log-format text|json] [--shim-log PATH]` (its own log: see `berth_shim::log`).
//!
//! Startup, all while single-threaded: validate the bundle, daemonize, become a child
//! subreaper, bind the socket, open the container log, create the container init (CREATED),
//! write `ok <init-pid>` or `error <message>` to the handshake pipe; only then start a
//! current-thread tokio runtime serving the Shim API. No fork or clone ever happens after that.
//!
//! `berth-shim exec ...` is the other mode: a short-lived, single-threaded helper that runs one
//! command in a running container (see `executor::exec`); berthd starts it straight into exec,
//! so no clone or setns ever happens in a process with a runtime.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use berth_proto::args::{ExecArgs, Mode, PodInitArgs, ShimArgs, StdinMode};
use berth_proto::handshake::Handshake;
use berth_shim::daemon;
use berth_shim::executor::{self, Container, InitProcess};
use berth_shim::io::LogFile;
use berth_shim::server::{self, ServeOptions};

fn main() -> ExitCode {
    match Mode::of(std::env::args_os().nth(1).as_deref()) {
        Mode::Shim => {}
        Mode::Exec => return exec_main(),
        Mode::PodInit => return pod_init_main(),
        Mode::PodUserns => return pod_userns_main(),
    }
    daemon::close_inherited_fds();
    let handshake = match daemon::take_handshake_pipe() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("berth-shim: no handshake pipe on stdout: {e}");
            return ExitCode::from(2);
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let args = match ShimArgs::parse(std::env::args_os().skip(1), &cwd) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-shim: {e}\n{}", ShimArgs::USAGE);
            daemon::write_handshake(handshake, &Handshake::Error(e.to_string()));
            return ExitCode::from(2);
        }
    };
    // Every line from here on is tagged with the container (the span stays entered).
    let _span = match berth_shim::log::init(
        &args.id,
        args.log_format.unwrap_or_default(),
        args.shim_log.as_deref(),
    ) {
        Ok(span) => span,
        Err(e) => {
            daemon::write_handshake(handshake, &Handshake::Error(format!("shim log: {e}")));
            return ExitCode::from(1);
        }
    };
    match run(args, handshake) {
        Ok(()) => ExitCode::SUCCESS,
        Err(()) => ExitCode::from(1),
    }
}

/// `berth-shim exec`: run a command in a running container and exit with its status. Errors
/// before the command runs go to the error file (and stderr), with exit code 126/127 for a
/// command that cannot be executed, 1 otherwise, as `runc exec` reports them.
fn exec_main() -> ExitCode {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let args = match ExecArgs::parse(std::env::args_os().skip(1), &cwd) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-shim exec: {e}\n{}", ExecArgs::USAGE);
            return ExitCode::from(2);
        }
    };
    let fail = |e: executor::exec::StartError| {
        if let Err(w) = executor::exec::write_error_file(&args.error_file, &e) {
            eprintln!(
                "berth-shim exec: {} (and writing {}: {w})",
                e.message,
                args.error_file.display()
            );
        }
        ExitCode::from(u8::try_from(e.code).unwrap_or(1))
    };
    let container = match Container::load("exec", &args.bundle) {
        Ok(c) => c,
        Err(e) => {
            return fail(executor::exec::StartError {
                code: 1,
                message: e.to_string(),
            });
        }
    };
    let req = executor::exec::ExecRequest {
        // The parser keeps pids within i32.
        pid: i32::try_from(args.pid).unwrap_or(i32::MAX),
        args: args.command.clone(),
        console_socket: args.console_socket.clone(),
        console_size: args.console_size,
    };
    match executor::exec::run(&container, &req) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => fail(e),
    }
}

/// `berth-shim pod-init --pin PATH`: PID 1 of a pod's shared PID namespace (see pod_init.rs).
fn pod_init_main() -> ExitCode {
    daemon::close_inherited_fds();
    let handshake = match daemon::take_handshake_pipe() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("berth-shim pod-init: no handshake pipe on stdout: {e}");
            return ExitCode::from(2);
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let args = match PodInitArgs::parse(std::env::args_os().skip(1), &cwd) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-shim pod-init: {e}\n{}", PodInitArgs::USAGE);
            daemon::write_handshake(
                handshake,
                &Handshake::Error(format!("{e} ({})", PodInitArgs::USAGE)),
            );
            return ExitCode::from(2);
        }
    };
    ExitCode::from(u8::try_from(berth_shim::pod_init::run(&args.pin, handshake)).unwrap_or(1))
}

/// `berth-shim pod-userns`: pin a pod's user namespace and the namespaces it owns; `ok` on
/// stdout, or the reason on stderr and exit 1.
fn pod_userns_main() -> ExitCode {
    use berth_proto::args::PodUsernsArgs;
    use berth_shim::pod_userns;
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let args = match PodUsernsArgs::parse(std::env::args_os().skip(1), &cwd) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-shim pod-userns: {e}\n{}", PodUsernsArgs::USAGE);
            return ExitCode::from(2);
        }
    };
    match pod_userns::run(&args) {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Everything after the command line; the error has already been logged and handed to berthd.
fn run(args: ShimArgs, handshake: OwnedFd) -> Result<(), ()> {
    let fail = |handshake: OwnedFd, msg: String| -> Result<(), ()> {
        tracing::error!("creating the container: {msg}");
        daemon::write_handshake(handshake, &Handshake::Error(msg));
        Err(())
    };
    let container = match Container::load(&args.id, &args.bundle) {
        Ok(c) => c,
        Err(e) => return fail(handshake, e.to_string()),
    };
    if UnixStream::connect(&args.socket).is_ok() {
        return fail(
            handshake,
            format!("a shim is already serving {}", args.socket.display()),
        );
    }

    if let Err(e) = daemon::daemonize() {
        return fail(handshake, format!("daemonizing: {e}"));
    }
    // From here on this is the detached shim. Its pid first: berthd kills it by this if the
    // handshake never comes.
    daemon::cloexec_inherited_fds();
    let dir = args.state_dir();
    if let Err(e) = fs::create_dir_all(&dir) {
        return fail(handshake, format!("creating {}: {e}", dir.display()));
    }
    let pid_file = berth_proto::paths::pid_file_beside(&args.socket);
    if let Err(e) = fs::write(&pid_file, std::process::id().to_string()) {
        return fail(handshake, format!("writing {}: {e}", pid_file.display()));
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        return fail(handshake, format!("PR_SET_CHILD_SUBREAPER: {e}"));
    }
    let listener = match bind(&args.socket) {
        Ok(l) => l,
        Err(e) => {
            return fail(
                handshake,
                format!("listening on {}: {e}", args.socket.display()),
            );
        }
    };
    let cleanup = |init: Option<&InitProcess>| {
        if let Some(init) = init {
            let _ = nix::sys::signal::kill(init.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(init.pid, None);
        }
        let _ = fs::remove_file(&args.socket);
    };
    let log = match LogFile::open(&args.log) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            cleanup(None);
            return fail(
                handshake,
                format!("opening the log {}: {e}", args.log.display()),
            );
        }
    };

    let created_at = server::now_nanos();
    let init = match executor::create(
        &container,
        args.stdin.is_some(),
        &[handshake.as_fd(), listener.as_fd()],
    ) {
        Ok(i) => i,
        Err(e) => {
            cleanup(None);
            return fail(handshake, e.to_string());
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            cleanup(Some(&init));
            return fail(handshake, format!("starting the runtime: {e}"));
        }
    };
    tracing::info!(pid = init.pid.as_raw(), "container created");
    let pid = u32::try_from(init.pid.as_raw()).unwrap_or(0);
    daemon::write_handshake(handshake, &Handshake::Ok(pid));

    let opts = ServeOptions {
        id: args.id.clone(),
        exit_file: args.exit_file.clone(),
        created_at,
        stdin: args.stdin.is_some(),
        stdin_once: args.stdin == Some(StdinMode::Once),
    };
    let served = runtime.block_on(server::serve(init, log, listener, opts));
    let _ = fs::remove_file(&args.socket);
    match served {
        Ok(()) => {
            tracing::info!("shim exiting");
            Ok(())
        }
        Err(e) => {
            tracing::error!("serving: {e}");
            Err(())
        }
    }
}

/// Bind the API socket (0600), replacing a stale one.
fn bind(socket: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        fs::create_dir_all(dir)?;
    }
    match fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(socket)?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}
