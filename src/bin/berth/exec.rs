//! `exec`: run a command in a running container.

use std::io::Write;

use k8s_cri::v1::ExecSyncRequest;

use crate::client::Clients;

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Seconds before the command is killed (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub timeout: i64,
    /// Container id (or a unique prefix).
    pub id: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// ExecSync; returns the command's exit status.
pub async fn run(c: &mut Clients, a: ExecArgs) -> anyhow::Result<i32> {
    let r =
        c.rt.exec_sync(ExecSyncRequest {
            container_id: a.id,
            cmd: a.cmd,
            timeout: a.timeout,
        })
        .await?
        .into_inner();
    std::io::stdout().write_all(&r.stdout)?;
    std::io::stderr().write_all(&r.stderr)?;
    std::io::stdout().flush()?;
    Ok(r.exit_code)
}
