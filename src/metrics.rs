//! Prometheus metrics for the hot paths, and the endpoint serving `/metrics` and `/healthz`.

use std::net::SocketAddr;
use std::sync::OnceLock;

use crate::http_limits::{Gate, HttpLimits};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every berth metric.
pub struct Metrics {
    pub registry: Registry,
    /// CRI call latency by method and gRPC code.
    pub cri_duration: HistogramVec,
    /// CRI calls that failed, by method and gRPC code.
    pub cri_errors: IntCounterVec,
    /// Whole-pull duration by result.
    pub pull_duration: HistogramVec,
    /// Compressed bytes of pulled images.
    pub pull_bytes: IntCounter,
    /// Compressed size of each pulled image.
    pub pull_size: Histogram,
    /// Per-layer download+decompress+unpack duration.
    pub unpack_duration: Histogram,
    /// Pulls running now.
    pub pull_in_progress: IntGauge,
    /// Layer bytes received so far by each image being pulled.
    pub pull_progress_bytes: IntGaugeVec,
    /// Layer bytes each image being pulled downloads in all (layers already present excluded).
    pub pull_expected_bytes: IntGaugeVec,
    /// Steps of the pod and container paths (rootfs, spec, shim spawn, CNI ADD/DEL, store...).
    pub phase_duration: HistogramVec,
}

/// Time one step of a hot path into `berth_phase_duration_seconds{phase}`.
pub fn phase(name: &str, started: std::time::Instant) {
    get()
        .phase_duration
        .with_label_values(&[name])
        .observe(started.elapsed().as_secs_f64());
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let cri_duration = HistogramVec::new(
        HistogramOpts::new(
            "berth_cri_request_duration_seconds",
            "Latency of CRI calls by method and gRPC code.",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
        &["method", "code"],
    )?;
    let cri_errors = IntCounterVec::new(
        Opts::new(
            "berth_cri_request_errors_total",
            "CRI calls that failed, by method and gRPC code.",
        ),
        &["method", "code"],
    )?;
    let pull_duration = HistogramVec::new(
        HistogramOpts::new(
            "berth_image_pull_duration_seconds",
            "Duration of whole image pulls, by result.",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
        &["result"],
    )?;
    let pull_bytes = IntCounter::new(
        "berth_image_pull_bytes_total",
        "Bytes (manifests, config, compressed layers) of successfully pulled images.",
    )?;
    let pull_size = Histogram::with_opts(
        HistogramOpts::new(
            "berth_image_pull_size_bytes",
            "Size (manifests, config, compressed layers) of each successfully pulled image.",
        )
        .buckets(prometheus::exponential_buckets(1024.0 * 1024.0, 4.0, 8)?),
    )?;
    let unpack_duration = Histogram::with_opts(
        HistogramOpts::new(
            "berth_layer_unpack_duration_seconds",
            "Duration of one layer's streamed download, decompression and unpack.",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
    )?;
    let phase_duration = HistogramVec::new(
        HistogramOpts::new(
            "berth_phase_duration_seconds",
            "Duration of the steps of the pod and container paths.",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
        &["phase"],
    )?;
    let pull_in_progress = IntGauge::new(
        "berth_image_pull_in_progress",
        "Image pulls running now (CRI PullImage and berth's Pull API).",
    )?;
    let pull_progress_bytes = IntGaugeVec::new(
        Opts::new(
            "berth_image_pull_progress_bytes",
            "Layer bytes received so far, per image being pulled (gone when the pull ends).",
        ),
        &["image"],
    )?;
    let pull_expected_bytes = IntGaugeVec::new(
        Opts::new(
            "berth_image_pull_expected_bytes",
            "Layer bytes to download in all, per image being pulled (layers already present excluded).",
        ),
        &["image"],
    )?;
    registry.register(Box::new(pull_in_progress.clone()))?;
    registry.register(Box::new(pull_progress_bytes.clone()))?;
    registry.register(Box::new(pull_expected_bytes.clone()))?;
    registry.register(Box::new(phase_duration.clone()))?;
    registry.register(Box::new(cri_duration.clone()))?;
    registry.register(Box::new(cri_errors.clone()))?;
    registry.register(Box::new(pull_duration.clone()))?;
    registry.register(Box::new(pull_bytes.clone()))?;
    registry.register(Box::new(pull_size.clone()))?;
    registry.register(Box::new(unpack_duration.clone()))?;
    register_process_metrics(&registry)?;
    Ok(Metrics {
        registry,
        cri_duration,
        cri_errors,
        pull_duration,
        pull_bytes,
        pull_size,
        unpack_duration,
        pull_in_progress,
        pull_progress_bytes,
        pull_expected_bytes,
        phase_duration,
    })
}

/// berthd's own `process_*` metrics (crate::process_metrics), read at each scrape.
fn register_process_metrics(registry: &Registry) -> Result<(), prometheus::Error> {
    registry.register(Box::new(crate::process_metrics::ProcessCollector::new()?))
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    // The names and label sets above are constants; a failure here is a programming error.
    METRICS.get_or_init(|| build().expect("metric definitions are valid"))
}

/// The text exposition of every metric.
pub fn render() -> Vec<u8> {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&get().registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    buf
}

/// Whether berthd serves CRI (recovery is over), for `/healthz`; shared by the endpoint and
/// the daemon's start-up.
#[derive(Debug, Clone, Default)]
pub struct Health(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Health {
    /// Recovery is over and CRI is served: `/healthz` answers 200 from now on.
    pub fn set_serving(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_serving(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// `GET /healthz`: 200 "ok" once berthd serves CRI, 503 before (during recovery).
fn healthz(health: &Health) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    let (status, body) = if health.is_serving() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering\n")
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    health: Health,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let get = req.method() == hyper::Method::GET;
    let resp = if req.uri().path() == "/metrics" && get {
        Response::builder()
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(render())))
    } else if req.uri().path() == "/healthz" && get {
        healthz(&health)
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found\n")))
    };
    Ok(resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// Bind the metrics endpoint (so a taken port fails startup, not later).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serve `GET /metrics` and `GET /healthz` on `listener` until the task is dropped, within
/// `limits`.
pub async fn serve(listener: tokio::net::TcpListener, limits: HttpLimits, health: Health) {
    let gate = Gate::new(limits);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = gate.admit() else {
            tracing::debug!("metrics: connection limit reached, closing a new connection");
            continue;
        };
        let builder = gate.builder();
        let health = health.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, health.clone()));
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(error = %e, "metrics connection");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::http_limits::tests::{LIMITS, check_server};

    #[tokio::test]
    async fn slow_headers_and_too_many_connections_are_closed() {
        let l = super::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(super::serve(l, LIMITS, Default::default()));
        check_server(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        server.abort();
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn healthz_is_503_until_serving_and_metrics_has_process_metrics() {
        let l = super::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let health = super::Health::default();
        let server = tokio::spawn(super::serve(l, LIMITS, health.clone()));
        let r = get(addr, "/healthz").await;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        health.set_serving();
        let r = get(addr, "/healthz").await;
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok\n"), "{r}");
        let r = get(addr, "/metrics").await;
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_cpu_seconds_total",
            "process_start_time_seconds",
            "process_threads",
            "process_virtual_memory_bytes",
        ] {
            assert!(r.contains(&format!("\n{name} ")), "{name} missing:\n{r}");
        }
        server.abort();
    }
}
