//! What a running pull has done so far, per layer, for berth's own Pull API and the metrics:
//! one [`PullTracker`] per pull, which the pull updates as bytes arrive and any number of
//! watchers follow (a second client pulling the same reference joins the running pull).

use std::sync::Arc;

use tokio::sync::watch;

use crate::error::Kind;
use crate::metrics;

/// Where one layer of a pull is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    Waiting,
    Downloading,
    Extracting,
    Done,
    AlreadyPresent,
}

/// One layer of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    pub digest: String,
    pub total: u64,
    pub done: u64,
    pub state: LayerState,
}

/// How a pull ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    pub image_id: String,
    /// Whether anything (a layer or the config) was downloaded.
    pub downloaded: bool,
    /// Layer bytes this pull downloaded.
    pub downloaded_bytes: u64,
}

/// A failed pull as watchers see it: its kind (the gRPC code CRI would answer) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFailure {
    pub kind: Kind,
    pub message: String,
}

/// A pull's progress at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullStatus {
    /// The normalized reference.
    pub image: String,
    pub layers: Vec<LayerProgress>,
    /// Set once, when the pull ends.
    pub finished: Option<Result<PullOutcome, PullFailure>>,
    /// Whether the config blob was downloaded.
    pub config_downloaded: bool,
}

impl PullStatus {
    /// Layer bytes received so far.
    pub fn bytes_done(&self) -> u64 {
        self.layers.iter().map(|l| l.done).sum()
    }

    /// Layer bytes this pull downloads (layers already present excluded).
    pub fn bytes_total(&self) -> u64 {
        self.layers
            .iter()
            .filter(|l| l.state != LayerState::AlreadyPresent)
            .map(|l| l.total)
            .sum()
    }

    /// Whether this pull downloaded anything.
    pub fn downloaded(&self) -> bool {
        self.config_downloaded
            || self
                .layers
                .iter()
                .any(|l| l.state != LayerState::AlreadyPresent)
    }
}

/// The progress of one running pull.
pub struct PullTracker {
    tx: watch::Sender<PullStatus>,
}

impl PullTracker {
    /// A tracker for a pull of `image` (the normalized reference); the pull counts in
    /// `berth_image_pull_in_progress` until [`PullTracker::finish`].
    pub fn new(image: String) -> Arc<PullTracker> {
        let m = metrics::get();
        m.pull_in_progress.inc();
        m.pull_progress_bytes.with_label_values(&[&image]).set(0);
        Arc::new(PullTracker {
            tx: watch::Sender::new(PullStatus {
                image,
                ..Default::default()
            }),
        })
    }

    /// Follow this pull: the current status, then every change.
    pub fn subscribe(&self) -> watch::Receiver<PullStatus> {
        self.tx.subscribe()
    }

    /// The current status.
    pub fn status(&self) -> PullStatus {
        self.tx.borrow().clone()
    }

    /// The manifest is known: every layer, waiting.
    pub fn set_layers(&self, layers: impl IntoIterator<Item = (String, u64)>) {
        self.tx.send_modify(|s| {
            s.layers = layers
                .into_iter()
                .map(|(digest, total)| LayerProgress {
                    digest,
                    total,
                    done: 0,
                    state: LayerState::Waiting,
                })
                .collect();
        });
        self.publish_metrics();
    }

    /// The config blob was downloaded (not found in the content store).
    pub fn config_downloaded(&self) {
        self.tx.send_modify(|s| s.config_downloaded = true);
    }

    /// Layer `index` moved to `state`; a finished layer counts all its bytes.
    pub fn layer_state(&self, index: usize, state: LayerState) {
        self.tx.send_modify(|s| {
            if let Some(l) = s.layers.get_mut(index) {
                l.state = state;
                if state == LayerState::Done {
                    l.done = l.total;
                }
            }
        });
        self.publish_metrics();
    }

    /// Layer `index` has received `done` bytes.
    pub fn layer_bytes(&self, index: usize, done: u64) {
        self.tx.send_modify(|s| {
            if let Some(l) = s.layers.get_mut(index) {
                l.done = done;
            }
        });
        self.publish_metrics();
    }

    /// The pull ended: watchers see the result, the metrics drop it.
    pub fn finish(&self, result: Result<String, PullFailure>) {
        self.tx.send_modify(|s| {
            s.finished = Some(result.map(|image_id| PullOutcome {
                image_id,
                downloaded: s.downloaded(),
                downloaded_bytes: s.bytes_done(),
            }));
        });
        let m = metrics::get();
        m.pull_in_progress.dec();
        let image = self.tx.borrow().image.clone();
        let _ = m.pull_progress_bytes.remove_label_values(&[&image]);
        let _ = m.pull_expected_bytes.remove_label_values(&[&image]);
    }

    fn publish_metrics(&self) {
        let s = self.tx.borrow();
        let m = metrics::get();
        m.pull_progress_bytes
            .with_label_values(&[&s.image])
            .set(s.bytes_done() as i64);
        m.pull_expected_bytes
            .with_label_values(&[&s.image])
            .set(s.bytes_total() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_and_outcome() {
        let t = PullTracker::new("test.invalid/progress:1".into());
        let mut rx = t.subscribe();
        t.set_layers([("sha256:a".to_string(), 10), ("sha256:b".to_string(), 20)]);
        t.layer_state(0, LayerState::AlreadyPresent);
        t.layer_state(1, LayerState::Downloading);
        t.layer_bytes(1, 5);
        assert!(rx.has_changed().unwrap());
        let s = rx.borrow_and_update().clone();
        assert_eq!((s.bytes_done(), s.bytes_total()), (5, 20));
        let metric = |name: &str| {
            String::from_utf8(metrics::render())
                .unwrap()
                .lines()
                .find(|l| l.starts_with(name) && l.contains("test.invalid/progress:1"))
                .map(str::to_string)
        };
        assert_eq!(
            metric("berth_image_pull_progress_bytes").as_deref(),
            Some("berth_image_pull_progress_bytes{image=\"test.invalid/progress:1\"} 5")
        );
        t.layer_state(1, LayerState::Done);
        t.finish(Ok("sha256:id".into()));
        let end = t.status().finished.unwrap().unwrap();
        assert!(end.downloaded);
        assert_eq!(end.downloaded_bytes, 20);
        assert_eq!(metric("berth_image_pull_progress_bytes"), None);

        let present = PullTracker::new("test.invalid/present:1".into());
        present.set_layers([("sha256:a".to_string(), 10)]);
        present.layer_state(0, LayerState::AlreadyPresent);
        present.finish(Ok("sha256:id".into()));
        assert!(!present.status().finished.unwrap().unwrap().downloaded);
    }
}
