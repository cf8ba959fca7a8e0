//! berthd: the berth CRI daemon.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use berth::config::{Config, DEFAULT_CONFIG_PATH};
use berth::daemon::Daemon;
use berth::server::authority::AuthorityFix;
use clap::Parser;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;

/// berth: a Kubernetes container runtime (CRI v1).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Config file (TOML). Without it, /etc/berth/berth.toml is read if present.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Root directory for durable data (overrides `root`).
    #[arg(long)]
    root: Option<PathBuf>,
    /// State directory for runtime state (overrides `state`).
    #[arg(long)]
    state: Option<PathBuf>,
    /// CRI unix socket path (overrides `address`); a unix:// prefix is accepted.
    #[arg(long)]
    address: Option<String>,
    /// Log level or filter (overrides `log_level`; RUST_LOG overrides both).
    #[arg(long)]
    log_level: Option<String>,
    /// Log line format (overrides `log_format`).
    #[arg(long, value_enum)]
    log_format: Option<berth::config::LogFormat>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&config.log_level, config.log_format);
    // One TLS crypto provider for every registry client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berthd")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berthd: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("berthd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(p) => Config::load(p, true)?,
        None => Config::load(Path::new(DEFAULT_CONFIG_PATH), false)?,
    };
    if let Some(r) = &args.root {
        config.root = r.clone();
    }
    if let Some(s) = &args.state {
        config.state = s.clone();
    }
    if let Some(a) = &args.address {
        config.address = PathBuf::from(a.strip_prefix("unix://").unwrap_or(a));
    }
    if let Some(f) = args.log_format {
        config.log_format = f;
    }
    if let Some(l) = &args.log_level {
        config.log_level = l.clone();
    }
    config.validate()?;
    Ok(config)
}

fn init_tracing(level: &str, format: berth::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        berth::config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        berth::config::LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let address = config.address.clone();
    let metrics_address = config.metrics.address.clone();
    let metrics_limits = config.metrics.limits();
    let streaming_limits = config.streaming.limits();
    let collection_period = config.metrics.collection_period();
    // The metrics endpoint serves during recovery (its /healthz says 503 until CRI is served),
    // once this berthd holds the root.
    let root_lock = Daemon::lock_root(&config)?;
    let health = berth::metrics::Health::default();
    let metrics = if metrics_address.is_empty() {
        None
    } else {
        let addr = metrics_address
            .parse()
            .with_context(|| format!("metrics address {metrics_address}"))?;
        let l = berth::metrics::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint {metrics_address}"))?;
        Some(tokio::spawn(berth::metrics::serve(
            l,
            metrics_limits,
            health.clone(),
        )))
    };
    let daemon = Daemon::open_locked(config, root_lock).await?;
    let listener = bind_socket(&address).await?;
    let streaming = tokio::spawn(daemon.streaming.clone().serve(
        std::sync::Arc::new(berth::daemon::streaming_runtime::DaemonRuntime::new(
            daemon.clone(),
        )),
        streaming_limits,
    ));
    let collection = tokio::spawn(berth::daemon::pod_metrics::collect_forever(
        std::sync::Arc::downgrade(&daemon),
        collection_period,
    ));
    let auto_remove = tokio::spawn(berth::daemon::auto_remove::run_forever(
        std::sync::Arc::downgrade(&daemon),
    ));
    daemon.set_ready();
    health.set_serving();
    let (runtime_svc, image_svc) = berth::server::services(daemon.clone());
    let berth_api = berth::server::berth_api::service(daemon.clone());
    tracing::info!(
        address = %address.display(),
        metrics = %metrics_address,
        streaming = %daemon.streaming.local_addr(),
        version = env!("CARGO_PKG_VERSION"),
        "berthd serving CRI"
    );
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    // systemd (Type=notify): recovery is done and the CRI socket is bound.
    let notifier = berth::sd_notify::Notifier::from_env();
    if let Err(e) = notifier.ready(&format!("serving CRI on {}", address.display())) {
        tracing::warn!("{e}");
    }
    let shutdown = async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
        }
        if let Err(e) = notifier.stopping("shutting down") {
            tracing::warn!("{e}");
        }
    };
    let served = tonic::transport::Server::builder()
        .add_service(runtime_svc)
        .add_service(image_svc)
        .add_service(berth_api)
        .serve_with_incoming_shutdown(
            // Every gRPC client's `:authority` (see berth::server::authority).
            UnixListenerStream::new(listener).map(|c| c.map(AuthorityFix::new)),
            shutdown,
        )
        .await;
    if let Some(m) = metrics {
        m.abort();
    }
    collection.abort();
    auto_remove.abort();
    streaming.abort();
    let _ = std::fs::remove_file(&address);
    // No container left: no cgroup of berth's left either (running ones keep theirs).
    if let Ok(h) = berth_cgroups::helper::host_hierarchies() {
        let default_parent = berth::cgroup_driver::DEFAULT_PARENT.trim_start_matches('/');
        berth_cgroups::helper::remove_empty_parents(
            &h,
            &[berth_cgroups::helper::HELPERS_DIR, default_parent],
        );
    }
    served.context("serving CRI")?;
    tracing::info!("berthd stopped");
    Ok(())
}

/// Bind the CRI socket; a stale socket file is replaced, a live one is an error.
async fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!(
                "{} is served by another process; is another berthd running?",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(listener)
}
