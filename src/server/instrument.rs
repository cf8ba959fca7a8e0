//! The one layer every CRI call passes through: refuse calls until recovery has finished,
//! open a span with the object id, record latency and errors, map the error to a gRPC status.

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Response, Status};
use tracing::Instrument;

use crate::daemon::Daemon;
use crate::error::Error;
use crate::metrics;

/// Run one CRI call.
pub async fn call<T, F>(
    daemon: &Daemon,
    method: &'static str,
    id: &str,
    work: F,
) -> Result<Response<T>, Status>
where
    F: Future<Output = Result<T, Error>>,
{
    let span = tracing::info_span!("cri", method, id = %id);
    async move {
        let started = Instant::now();
        let result = if daemon.is_ready() {
            work.await
        } else {
            Err(Error::Recovering)
        };
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(e) => e.code(),
        };
        let label = format!("{code:?}");
        let m = metrics::get();
        m.cri_duration
            .with_label_values(&[method, &label])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(v) => {
                tracing::debug!(elapsed_us = started.elapsed().as_micros() as u64, "ok");
                Ok(Response::new(v))
            }
            Err(e) => {
                m.cri_errors.with_label_values(&[method, &label]).inc();
                if code == Code::Internal || code == Code::Unknown {
                    tracing::error!(code = %label, error = %e, "failed");
                } else {
                    tracing::info!(code = %label, error = %e, "failed");
                }
                Err(Status::from(e))
            }
        }
    }
    .instrument(span)
    .await
}
