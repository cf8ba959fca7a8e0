//! `port-forward POD [LOCAL:]REMOTE...`: listen on loopback and relay each connection to the
//! pod's port over the streaming server (one PortForward URL a connection).

use anyhow::Context;
use k8s_cri::v1::PortForwardRequest;
use tokio::net::TcpListener;

use crate::client::Clients;
use crate::resolve;

#[derive(Debug, clap::Args)]
pub struct PortForwardArgs {
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
    /// A pod (id, prefix or name), or a container whose pod it is.
    pub pod: String,
    /// LOCAL:REMOTE (or PORT for the same on both sides; LOCAL 0 picks a free port).
    #[arg(required = true)]
    pub ports: Vec<String>,
}

fn parse(spec: &str) -> anyhow::Result<(u16, u16)> {
    let bad = || format!("{spec}: want LOCAL:REMOTE or PORT");
    Ok(match spec.split_once(':') {
        Some((l, r)) => (
            if l.is_empty() {
                0
            } else {
                l.parse().with_context(bad)?
            },
            r.parse().with_context(bad)?,
        ),
        None => {
            let p = spec.parse().with_context(bad)?;
            (p, p)
        }
    })
}

pub async fn run(c: &mut Clients, a: PortForwardArgs) -> anyhow::Result<()> {
    let pods = resolve::pods(c).await?;
    let pod = match resolve::find_pod(&pods, &a.pod)? {
        Some(p) => p.id,
        None => {
            let all = resolve::containers(c).await?;
            resolve::find_container(&all, &a.pod)?
                .with_context(|| format!("no such pod: {}", a.pod))?
                .pod_sandbox_id
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for spec in &a.ports {
        let (local, remote) = parse(spec)?;
        let listener = TcpListener::bind((a.address.as_str(), local))
            .await
            .with_context(|| format!("listening on {}:{local}", a.address))?;
        println!("Forwarding from {} -> {remote}", listener.local_addr()?);
        let mut rt = c.rt.clone();
        let pod = pod.clone();
        tasks.spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await?;
                let url = rt
                    .port_forward(PortForwardRequest {
                        pod_sandbox_id: pod.clone(),
                        port: vec![remote.into()],
                    })
                    .await?
                    .into_inner()
                    .url;
                println!("Handling connection for {remote}");
                tokio::spawn(async move {
                    if let Err(e) = crate::stream::forward(&url, remote, tcp).await {
                        eprintln!("berth: {e:#}");
                    }
                });
            }
            #[allow(unreachable_code)]
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn specs() {
        assert_eq!(super::parse("8080:80").unwrap(), (8080, 80));
        assert_eq!(super::parse("80").unwrap(), (80, 80));
        assert_eq!(super::parse(":80").unwrap(), (0, 80));
        assert!(super::parse("x:80").is_err());
    }
}
