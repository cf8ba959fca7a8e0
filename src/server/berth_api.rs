//! berth's own API (`berth.v1`, proto/berth.proto), served beside CRI on the same socket for
//! what CRI cannot say: `Images.Pull` streams a pull's progress per layer.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::api::v1 as api;
use berth_proto::api::v1::images_server::{Images, ImagesServer};
use futures_util::Stream;
use k8s_cri::v1::AuthConfig;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::image::registry_auth;
use crate::daemon::Daemon;
use crate::error::{Error, status_message};
use crate::image::progress::{LayerState, PullStatus};

/// Progress messages are sent at most this often (the last one always).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// The `berth.v1.Images` service.
pub struct ImagesApi {
    daemon: Arc<Daemon>,
}

/// The gRPC service for one daemon.
pub fn service(daemon: Arc<Daemon>) -> ImagesServer<ImagesApi> {
    ImagesServer::new(ImagesApi { daemon })
        .max_decoding_message_size(super::MAX_MESSAGE)
        .max_encoding_message_size(super::MAX_MESSAGE)
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<api::PullProgress, Status>> + Send>>;

#[tonic::async_trait]
impl Images for ImagesApi {
    type PullStream = ProgressStream;

    async fn pull(
        &self,
        request: Request<api::PullRequest>,
    ) -> Result<Response<ProgressStream>, Status> {
        let req = request.into_inner();
        let image = req.image;
        let span = tracing::info_span!("api", method = "Pull", id = %image);
        let _entered = span.enter();
        if !self.daemon.is_ready() {
            return Err(Error::Recovering.into());
        }
        let auth = req.auth.map(|a| AuthConfig {
            username: a.username,
            password: a.password,
            auth: a.auth,
            server_address: String::new(),
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        });
        let auth = registry_auth(auth.as_ref()).map_err(Status::from)?;
        let tracker = self
            .daemon
            .images
            .pull_with_progress(&image, auth)
            .map_err(|e| Status::from(Error::from(e)))?;
        tracing::debug!("following a pull");
        Ok(Response::new(progress_stream(tracker.subscribe())))
    }
}

/// The pull's status now, then on every change (at most every [`PROGRESS_INTERVAL`]), ending
/// with its result or its error.
fn progress_stream(rx: watch::Receiver<PullStatus>) -> ProgressStream {
    Box::pin(futures_util::stream::unfold(
        (rx, true, false),
        |(mut rx, first, ended)| async move {
            if ended {
                return None;
            }
            if !first {
                tokio::time::sleep(PROGRESS_INTERVAL).await;
                if rx.changed().await.is_err() && rx.borrow().finished.is_none() {
                    let gone = Status::internal("the pull task ended without a result");
                    return Some((Err(gone), (rx, false, true)));
                }
            }
            let status = rx.borrow_and_update().clone();
            let item = match &status.finished {
                None => Ok(message(&status)),
                Some(Ok(outcome)) => {
                    let mut m = message(&status);
                    m.result = Some(api::PullResult {
                        image_ref: outcome.image_id.clone(),
                        downloaded: outcome.downloaded,
                        downloaded_bytes: outcome.downloaded_bytes,
                    });
                    Ok(m)
                }
                Some(Err(f)) => Err(Status::new(
                    f.kind.code(),
                    status_message(f.message.clone()),
                )),
            };
            let ended = status.finished.is_some();
            Some((item, (rx, false, ended)))
        },
    ))
}

fn message(s: &PullStatus) -> api::PullProgress {
    api::PullProgress {
        image: s.image.clone(),
        layers: s
            .layers
            .iter()
            .map(|l| api::LayerProgress {
                digest: l.digest.clone(),
                total_bytes: l.total,
                done_bytes: l.done,
                state: match l.state {
                    LayerState::Waiting => api::LayerState::Waiting,
                    LayerState::Downloading => api::LayerState::Downloading,
                    LayerState::Extracting => api::LayerState::Extracting,
                    LayerState::Done => api::LayerState::Done,
                    LayerState::AlreadyPresent => api::LayerState::AlreadyPresent,
                } as i32,
            })
            .collect(),
        result: None,
    }
}
