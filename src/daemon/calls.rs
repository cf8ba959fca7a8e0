//! Calls that finish even when their client goes away, and whose retries get the result.
//!
//! kubelet gives every CRI call a deadline (2 minutes by default, less in critest) and cancels
//! the handler when it passes or when the connection drops. A RunPodSandbox cancelled between its
//! CNI ADD and its record would leave half a pod; one cancelled after would leave a pod nobody
//! knows about, and kubelet's retry (same name) would be refused with "already exists" for ever
//! (containerd's long-standing bug). So the mutating calls run as their own tasks, keyed by what
//! makes a retry the same call (the pod's or container's name, or the id acted on):
//!
//! - the work runs to completion (or to its own rollback) whatever happens to the caller;
//! - a second call with the same key while the first runs waits for it and gets its result;
//! - a result nobody received (the caller was cancelled) is kept, when the calls are made with
//!   [`Calls::keeping`], for the retry that comes for it (CRI-O's resource store); the first
//!   caller that receives a result claims it, so a later call with the same key is a new call;
//! - a failure is never kept: a retry after it runs again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::error::{DomainError, Error, Kind};

/// The outcome of a call, as every caller waiting on it receives it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    kind: Kind,
    message: String,
}

impl DomainError for Failure {
    fn kind(&self) -> Kind {
        self.kind
    }
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Failure {
        Failure {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

type Outcome<T> = Option<Result<T, Failure>>;

struct Pending<T> {
    /// Tells this call from a later one with the same key.
    generation: u64,
    outcome: watch::Receiver<Outcome<T>>,
}

struct Table<T> {
    next: u64,
    pending: HashMap<String, Pending<T>>,
}

/// The calls of one kind in flight, or finished and not yet received.
pub struct Calls<T> {
    table: Arc<Mutex<Table<T>>>,
    /// Whether a success nobody received waits for a retry.
    keep: bool,
}

impl<T: Clone + Send + Sync + 'static> Calls<T> {
    /// Calls whose unreceived successes wait for their retry (the creating calls).
    pub fn keeping() -> Calls<T> {
        Calls::new(true)
    }

    /// Calls whose results go only to the callers waiting when they finish (idempotent calls:
    /// a later retry just runs again).
    pub fn joining() -> Calls<T> {
        Calls::new(false)
    }

    fn new(keep: bool) -> Calls<T> {
        Calls {
            table: Arc::new(Mutex::new(Table {
                next: 0,
                pending: HashMap::new(),
            })),
            keep,
        }
    }

    // Every change under the lock is one insert or remove: a poisoned lock is used as is.
    fn lock(table: &Mutex<Table<T>>) -> MutexGuard<'_, Table<T>> {
        table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `work` as the call `key`, or join the call `key` already running (or finished and
    /// unreceived): `work` is then dropped unstarted.
    pub async fn run<F>(&self, key: &str, work: F) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let (generation, mut outcome) = {
            let mut table = Self::lock(&self.table);
            match table.pending.get(key) {
                Some(p) => (p.generation, p.outcome.clone()),
                None => {
                    table.next += 1;
                    let generation = table.next;
                    let (tx, rx) = watch::channel(None);
                    table.pending.insert(
                        key.to_string(),
                        Pending {
                            generation,
                            outcome: rx.clone(),
                        },
                    );
                    let shared = self.table.clone();
                    let keep = self.keep;
                    let owned_key = key.to_string();
                    tokio::spawn(async move {
                        let result = work.await.map_err(|e| Failure::from(&e));
                        // Failures are not kept; nor, for joining calls, successes.
                        if result.is_err() || !keep {
                            Self::forget_generation(&shared, &owned_key, generation);
                        }
                        let _ = tx.send(Some(result));
                    });
                    (generation, rx)
                }
            }
        };
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        // Received: a later call with this key is a new call.
        Self::forget_generation(&self.table, key, generation);
        match result {
            Some(r) => r.map_err(Error::from),
            // The task panicked before it answered.
            None => Err(Error::Internal(format!(
                "call {key} ended without an answer"
            ))),
        }
    }

    fn forget_generation(table: &Mutex<Table<T>>, key: &str, generation: u64) {
        let mut table = Self::lock(table);
        if table
            .pending
            .get(key)
            .is_some_and(|p| p.generation == generation)
        {
            table.pending.remove(key);
        }
    }

    /// Drop kept results for which `gone` holds (their object was removed since).
    pub fn forget(&self, gone: impl Fn(&T) -> bool) {
        Self::lock(&self.table)
            .pending
            .retain(|_, p| !matches!(&*p.outcome.borrow(), Some(Ok(v)) if gone(v)));
    }

    /// How many calls are running or waiting to be received.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        Self::lock(&self.table).pending.len()
    }

    /// Whether no call is running or waiting to be received.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn counted(
        runs: &Arc<AtomicUsize>,
        result: Result<u32, Error>,
        delay_ms: u64,
    ) -> impl Future<Output = Result<u32, Error>> + Send + 'static {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            result
        }
    }

    #[tokio::test]
    async fn a_cancelled_call_finishes_and_its_retry_gets_the_result() {
        let calls = Calls::<u32>::keeping();
        let runs = Arc::new(AtomicUsize::new(0));
        // The client gives up after 20 ms; the work takes 100 ms.
        let first = tokio::time::timeout(
            Duration::from_millis(20),
            calls.run("pod", counted(&runs, Ok(7), 100)),
        )
        .await;
        assert!(first.is_err(), "the first call timed out");
        // The retry, while the work still runs, joins it: no second run.
        let retry = calls.run("pod", counted(&runs, Ok(8), 0)).await;
        assert_eq!(retry.ok(), Some(7));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Received: the next call with the key is a new call.
        assert!(calls.is_empty());
        let again = calls.run("pod", counted(&runs, Ok(9), 0)).await;
        assert_eq!(again.ok(), Some(9));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreceived_success_waits_for_its_retry_until_forgotten() {
        let calls = Calls::<u32>::keeping();
        let runs = Arc::new(AtomicUsize::new(0));
        let first = tokio::time::timeout(
            Duration::from_millis(10),
            calls.run("pod", counted(&runs, Ok(7), 50)),
        )
        .await;
        assert!(first.is_err());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.len(), 1, "the finished, unreceived result is kept");
        calls.forget(|v| *v == 7);
        assert!(calls.is_empty());
        let retry = calls.run("pod", counted(&runs, Ok(8), 0)).await;
        assert_eq!(retry.ok(), Some(8));
    }

    #[tokio::test]
    async fn failures_reach_every_waiter_and_are_not_kept() {
        let calls = Arc::new(Calls::<u32>::keeping());
        let runs = Arc::new(AtomicUsize::new(0));
        let a = {
            let calls = calls.clone();
            let work = counted(&runs, Err(Error::FailedPrecondition("no".into())), 50);
            tokio::spawn(async move { calls.run("pod", work).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let b = calls.run("pod", counted(&runs, Ok(1), 0)).await;
        let a = a.await.expect("joined");
        for r in [a, b] {
            let e = r.expect_err("the shared failure");
            assert_eq!(
                (e.kind(), e.to_string()),
                (Kind::FailedPrecondition, "no".into())
            );
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(calls.is_empty());
        // A retry after the failure runs again.
        assert_eq!(
            calls.run("pod", counted(&runs, Ok(2), 0)).await.ok(),
            Some(2)
        );
    }

    #[tokio::test]
    async fn joining_calls_keep_nothing() {
        let calls = Calls::<()>::joining();
        let first = tokio::time::timeout(
            Duration::from_millis(10),
            calls.run("stop", async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(())
            }),
        )
        .await;
        assert!(first.is_err());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(calls.is_empty());
    }
}
