//! GetContainerEvents: the daemon's lifecycle events as CRI events, each with the pod's status
//! and its containers' statuses as they are when the event is sent.

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1::{
    ContainerEventResponse, ContainerEventType, ContainerFilter, ContainerStatusRequest,
    GetEventsRequest, PodSandboxStatusRequest,
};
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use super::{container_status, pod_sandbox_status};
use crate::daemon::Daemon;
use crate::error::Error;
use crate::events::{Event, EventKind};

/// The stream GetContainerEvents answers.
pub type EventStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

fn event_type(k: EventKind) -> ContainerEventType {
    match k {
        EventKind::Created => ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => ContainerEventType::ContainerDeletedEvent,
    }
}

async fn response(daemon: &Daemon, e: Event) -> ContainerEventResponse {
    let pod_sandbox_status = pod_sandbox_status::handle(
        daemon,
        PodSandboxStatusRequest {
            pod_sandbox_id: e.sandbox_id.clone(),
            verbose: false,
        },
    )
    .await
    .ok()
    .and_then(|r| r.status);
    let filter = ContainerFilter {
        pod_sandbox_id: e.sandbox_id.clone(),
        ..Default::default()
    };
    let mut containers_statuses = Vec::new();
    for rec in daemon.containers.list(Some(&filter)) {
        let req = ContainerStatusRequest {
            container_id: rec.id,
            verbose: false,
        };
        if let Ok(r) = container_status::handle(daemon, req).await
            && let Some(s) = r.status
        {
            containers_statuses.push(s);
        }
    }
    ContainerEventResponse {
        container_id: e.id,
        container_event_type: event_type(e.kind) as i32,
        created_at: e.at,
        pod_sandbox_status,
        containers_statuses,
    }
}

/// Events from now on, until the client goes away.
pub async fn handle(daemon: Arc<Daemon>, _req: GetEventsRequest) -> Result<EventStream, Error> {
    let rx = daemon.events.subscribe();
    Ok(Box::pin(futures_util::stream::unfold(
        (daemon, rx),
        |(daemon, mut rx)| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        let r = response(&daemon, e).await;
                        return Some((Ok::<_, Status>(r), (daemon, rx)));
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(
                            "a GetContainerEvents client fell behind: {n} events dropped"
                        );
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    )))
}
