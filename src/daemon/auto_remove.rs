//! `berth run -d --rm` (docker's AutoRemove): berthd removes a container labelled
//! [`LABEL`]` = "true"` once it has exited, and with it the pod `berth run` made for it
//! ([`RUN_POD_LABEL`], berth-proto's [`berth_proto::labels`]) when no other container is left there, with the CRI log berthd wrote
//! and the log directories that leaves empty. A detached client is not around to do it, so the
//! daemon does, as dockerd does; kubelet never sets these labels.
//!
//! The watch follows the container Stopped events; at start-up, and whenever it fell behind
//! the event channel, it sweeps every exited container so labelled (exits while berthd was
//! away or unheard).

use std::path::Path;
use std::sync::{Arc, Weak};

use tokio::sync::broadcast::error::RecvError;

use super::Daemon;
use crate::container::{ContainerRecord, ContainerState};
use crate::events::EventKind;

use berth_proto::labels::{AUTO_REMOVE as LABEL, RUN_POD as RUN_POD_LABEL};

fn marked(rec: &ContainerRecord) -> bool {
    rec.config.labels.get(LABEL).is_some_and(|v| v == "true")
}

/// Follow the daemon's events until it goes away.
pub async fn run_forever(daemon: Weak<Daemon>) {
    let Some(d) = daemon.upgrade() else { return };
    // Subscribed before the sweep: an exit between the two is heard, not lost.
    let mut events = d.events.subscribe();
    sweep(&d).await;
    drop(d);
    loop {
        let event = events.recv().await;
        let Some(d) = daemon.upgrade() else { return };
        match event {
            Ok(e) if !e.pod && e.kind == EventKind::Stopped => {
                if let Ok(rec) = d.containers.get(&e.id) {
                    remove(&d, rec).await;
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => sweep(&d).await,
            Err(RecvError::Closed) => return,
        }
    }
}

/// Remove every exited container that asked for it.
async fn sweep(d: &Arc<Daemon>) {
    let exited = d
        .containers
        .list(None)
        .into_iter()
        .filter(|r| r.state == ContainerState::Exited && marked(r));
    for rec in exited.collect::<Vec<_>>() {
        remove(d, rec).await;
    }
}

async fn remove(d: &Arc<Daemon>, rec: ContainerRecord) {
    if rec.state != ContainerState::Exited || !marked(&rec) {
        return;
    }
    let pod = d.sandboxes.get(&rec.sandbox_id).ok();
    if let Err(e) = d.remove_container(&rec.id).await {
        tracing::warn!(container = %rec.id, error = %e, "auto-remove: removing the exited container");
        return;
    }
    tracing::info!(container = %rec.id, exit_code = rec.exit_code, "auto-removed the exited container");
    if let Some(log) = &rec.log_path {
        remove_log(
            log,
            pod.as_ref().map(|p| Path::new(&p.config.log_directory)),
        );
    }
    let Some(pod) = pod else { return };
    let made_by_run = pod
        .config
        .labels
        .get(RUN_POD_LABEL)
        .is_some_and(|v| v == "true");
    if !made_by_run || !d.pod_containers(&pod.id).is_empty() {
        return;
    }
    let removed = match d.stop_pod(&pod.id).await {
        Ok(()) => d.remove_pod(&pod.id).await,
        Err(e) => Err(e),
    };
    match removed {
        Ok(()) => {
            tracing::info!(pod = %pod.id, "auto-removed the pod of the exited container");
            remove_empty_dir(Path::new(&pod.config.log_directory));
        }
        Err(e) => tracing::warn!(pod = %pod.id, error = %e, "auto-remove: removing the pod"),
    }
}

/// The container's CRI log, then its directories up to (not including) the pod's log directory
/// while they are empty.
fn remove_log(log: &Path, pod_log_dir: Option<&Path>) {
    match std::fs::remove_file(log) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(log = %log.display(), error = %e, "auto-remove: removing the container log");
            return;
        }
    }
    let Some(top) = pod_log_dir.filter(|p| !p.as_os_str().is_empty()) else {
        return;
    };
    let mut dir = log.parent();
    while let Some(d) = dir {
        if !d.starts_with(top) || d == top {
            break;
        }
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// `rmdir`: a directory that still holds anything (other containers' logs) stays.
fn remove_empty_dir(dir: &Path) {
    if !dir.as_os_str().is_empty() {
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_and_the_directories_it_leaves_empty_go_up_to_the_pods() {
        let t = tempfile::tempdir().unwrap();
        let pod = t.path().join("pod");
        let log = pod.join("ctr/0.log");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, "x").unwrap();
        std::fs::write(pod.join("other.log"), "y").unwrap();
        remove_log(&log, Some(&pod));
        assert!(!log.exists());
        assert!(!pod.join("ctr").exists());
        assert!(pod.join("other.log").exists());
        remove_empty_dir(&pod);
        assert!(pod.exists(), "a directory with other logs stays");
    }

    #[test]
    fn nothing_outside_the_pods_log_directory_is_touched() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = t.path().join("elsewhere");
        let log = elsewhere.join("0.log");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(&log, "x").unwrap();
        remove_log(&log, Some(&t.path().join("pod")));
        assert!(!log.exists());
        assert!(elsewhere.exists(), "a directory outside the pod's stays");
    }
}
