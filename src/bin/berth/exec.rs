//! `exec`: run a command in a running container over the streaming server (`-i` stdin, `-t` a
//! terminal in raw mode with resizes), or with ExecSync (`--sync`, or `--timeout`).

use std::io::Write;

use k8s_cri::v1::{ExecRequest, ExecSyncRequest};

use crate::client::Clients;
use crate::resolve;
use crate::stream::{self, SessionOpts};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Keep stdin open and send it.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// ExecSync: output when the command ends (no stdin, no terminal).
    #[arg(short, long)]
    pub sync: bool,
    /// Seconds before the command is killed (0: no limit); implies --sync.
    #[arg(long, default_value_t = 0)]
    pub timeout: i64,
    /// Container id, unique prefix or name.
    pub id: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// Returns the command's exit status.
pub async fn run(c: &mut Clients, a: ExecArgs) -> anyhow::Result<i32> {
    let id = resolve::container(c, &a.id).await?.id;
    if a.sync || a.timeout > 0 {
        if a.interactive || a.tty {
            anyhow::bail!("--sync (or --timeout) runs without stdin or a terminal: drop -i/-t");
        }
        let r =
            c.rt.exec_sync(ExecSyncRequest {
                container_id: id,
                cmd: a.cmd,
                timeout: a.timeout,
            })
            .await?
            .into_inner();
        std::io::stdout().write_all(&r.stdout)?;
        std::io::stderr().write_all(&r.stderr)?;
        std::io::stdout().flush()?;
        return Ok(r.exit_code);
    }
    let url =
        c.rt.exec(ExecRequest {
            container_id: id,
            cmd: a.cmd,
            tty: a.tty,
            stdin: a.interactive,
            stdout: true,
            stderr: !a.tty,
        })
        .await?
        .into_inner()
        .url;
    let code = stream::session(
        &url,
        SessionOpts {
            stdin: a.interactive,
            tty: a.tty,
        },
    )
    .await?;
    Ok(code.unwrap_or(0))
}
