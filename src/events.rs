//! Container and pod lifecycle events for GetContainerEvents (kubelet's evented PLEG).
//!
//! The domain publishes small [`Event`]s on a broadcast channel as things happen (created,
//! started, stopped — seen by a watcher on the shim, deleted); the server turns each into a CRI
//! `ContainerEventResponse` with the current statuses when it sends it. Pod events carry the
//! sandbox id as their container id, as containerd's do. A subscriber that falls behind by more
//! than [`CAPACITY`] events loses the oldest ones (and is told so in the log).

use tokio::sync::broadcast;

/// Events kept for a slow subscriber.
pub const CAPACITY: usize = 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The container's id, or the sandbox's for a pod event.
    pub id: String,
    pub sandbox_id: String,
    /// Whether `id` is a sandbox.
    pub pod: bool,
    pub kind: EventKind,
    /// Unix nanoseconds.
    pub at: i64,
}

/// The channel every publisher shares.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Events {
    fn publish(&self, id: &str, sandbox_id: &str, pod: bool, kind: EventKind) {
        let at = berth_sys::time::now_nanos();
        // No subscriber is fine: nobody is listening.
        let _ = self.tx.send(Event {
            id: id.to_string(),
            sandbox_id: sandbox_id.to_string(),
            pod,
            kind,
            at,
        });
    }

    pub fn container(&self, id: &str, sandbox_id: &str, kind: EventKind) {
        self.publish(id, sandbox_id, false, kind);
    }

    pub fn pod(&self, sandbox_id: &str, kind: EventKind) {
        self.publish(sandbox_id, sandbox_id, true, kind);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_events_in_order() {
        let e = Events::default();
        e.container("c1", "p1", EventKind::Created); // before anyone listens: dropped
        let mut rx = e.subscribe();
        e.pod("p1", EventKind::Started);
        e.container("c1", "p1", EventKind::Stopped);
        let a = rx.recv().await.unwrap();
        assert_eq!(
            (a.id.as_str(), a.pod, a.kind),
            ("p1", true, EventKind::Started)
        );
        let b = rx.recv().await.unwrap();
        assert_eq!(
            (b.id.as_str(), b.sandbox_id.as_str(), b.pod, b.kind),
            ("c1", "p1", false, EventKind::Stopped)
        );
    }
}
