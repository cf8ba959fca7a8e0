//! ExecSync: run a command in a running container and collect its output.
//!
//! berthd starts `berth-shim exec` (straight into exec, so no fork happens in this process);
//! that single-threaded helper joins the container's namespaces and cgroup, takes its identity
//! and privileges and runs the command as its child (see shim/src/executor/exec.rs). The
//! helper's stdout/stderr are the command's; it exits with the command's status. A command that
//! could not be started is reported through an error file, so it is an error, not an exit code.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ContainerError, ContainerState, Containers, io_err};
use crate::ids::new_id;

/// Most bytes kept of each of stdout and stderr (the rest is read and dropped).
pub const MAX_OUTPUT: usize = 16 << 20;

/// What ExecSync returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Read a stream to EOF, keeping at most `MAX_OUTPUT` bytes.
async fn read_capped<R: AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Removes the error file however the call ends.
struct ErrorFile(PathBuf);

impl Drop for ErrorFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Containers {
    /// Where exec helpers leave their error files (emptied at start).
    pub(super) fn exec_dir(&self) -> PathBuf {
        self.state_dir.join("exec")
    }

    /// ExecSync: run `cmd` in container `id`; `timeout` None waits as long as it takes. On
    /// timeout the command is killed and the call fails with DeadlineExceeded.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ContainerError> {
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(ContainerError::InvalidArgument("cmd is empty".into()));
        }
        let rec = self.refresh(&self.get(id)?.id).await?;
        if rec.state != ContainerState::Running || rec.pid == 0 {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let dir = self.exec_dir();
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let name = new_id().map_err(io_err("generating an exec id"))?;
        let error_file = ErrorFile(dir.join(format!("{}.err", &name[..16])));

        let mut child = tokio::process::Command::new(&self.shim_binary)
            .arg("exec")
            .arg("--bundle")
            .arg(self.bundle(&rec.id))
            .arg("--pid")
            .arg(rec.pid.to_string())
            .arg("--error-file")
            .arg(&error_file.0)
            .arg("--")
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err(format!(
                "starting {} exec",
                self.shim_binary.display()
            )))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ContainerError::Io {
                context: "exec helper without stdio pipes".into(),
                source: std::io::Error::other("missing pipe"),
            });
        };
        let run = async {
            let (out, err, status) =
                tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
            (out, err, status)
        };
        let (stdout, stderr, status) = match timeout {
            Some(t) => match tokio::time::timeout(t, run).await {
                Ok(r) => r,
                Err(_) => {
                    // The helper dies; its child follows (PDEATHSIG) wherever it is.
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Err(ContainerError::DeadlineExceeded(format!(
                        "command {cmd:?} in container {} timed out after {}s",
                        rec.id,
                        t.as_secs_f64()
                    )));
                }
            },
            None => run.await,
        };
        let status = status.map_err(io_err("waiting for the exec helper"))?;
        if let Ok(message) = std::fs::read_to_string(&error_file.0) {
            let message = format!("exec in container {}: {message}", rec.id);
            return Err(match status.code() {
                Some(126) | Some(127) => ContainerError::InvalidArgument(message),
                _ => ContainerError::ExecFailed(message),
            });
        }
        let exit_code = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(c), _) => c,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 255,
        };
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }
}
