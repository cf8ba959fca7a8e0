//! `run`: one pod per container, as docker's `run` over CRI: the image pulled when missing,
//! RunPodSandbox, CreateContainer, StartContainer, then (unless `-d`) attached to the terminal
//! (`-i`/`-t`) or following its log, exiting with its exit code (`--rm`: removed after).

use std::io::Read;

use anyhow::Context;
use k8s_cri::v1::*;

use crate::client::Clients;
use crate::creds::AuthArgs;
use crate::resolve::{self, RUN_LABEL};
use crate::stream::{self, SessionOpts};
use crate::{image_spec, lifecycle, logs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Network {
    /// The node's network namespace.
    Host,
    /// A network namespace of the pod's own, set up by CNI.
    Pod,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep stdin open and attach it.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Remove the container and its pod when it exits (with -d, berthd removes them).
    #[arg(long)]
    pub rm: bool,
    /// The container's name (and its pod's); a generated one otherwise.
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variables: KEY=VALUE, or KEY to pass this shell's value.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Bind mounts: HOST_PATH:CONTAINER_PATH[:ro|rw].
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,
    /// Published ports: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp|sctp] (pod network).
    #[arg(short = 'p', long = "publish", value_name = "HOST:CTR")]
    pub publish: Vec<String>,
    /// The pod's network.
    #[arg(long, value_enum, default_value = "pod")]
    pub network: Network,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// The pod's cgroup parent (berthd's default when empty).
    #[arg(long, env = "BERTH_CGROUP_PARENT", default_value = "")]
    pub cgroup_parent: String,
    /// Where pod log directories are made.
    #[arg(long, env = "BERTH_LOG_ROOT", default_value = "/var/log/berth")]
    pub log_root: String,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// The image.
    pub image: String,
    /// The command (the image's CMD otherwise).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(hex::encode(b))
}

fn parse_env(env: &[String]) -> Vec<KeyValue> {
    env.iter()
        .filter_map(|e| match e.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            None => std::env::var(e).ok().map(|v| (e.clone(), v)),
        })
        .map(|(key, value)| KeyValue { key, value })
        .collect()
}

fn parse_volume(v: &str) -> anyhow::Result<Mount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, ctr, readonly) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => anyhow::bail!("-v {v}: want HOST_PATH:CONTAINER_PATH[:ro|rw]"),
    };
    if !host.starts_with('/') || !ctr.starts_with('/') {
        anyhow::bail!("-v {v}: both paths must be absolute (named volumes do not exist here)");
    }
    Ok(Mount {
        container_path: ctr.to_string(),
        host_path: host.to_string(),
        readonly,
        ..Default::default()
    })
}

fn parse_port(p: &str) -> anyhow::Result<PortMapping> {
    let (spec, proto) = match p.rsplit_once('/') {
        Some((s, "tcp")) => (s, Protocol::Tcp),
        Some((s, "udp")) => (s, Protocol::Udp),
        Some((s, "sctp")) => (s, Protocol::Sctp),
        Some(_) => anyhow::bail!("-p {p}: the protocol is tcp, udp or sctp"),
        None => (p, Protocol::Tcp),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (ctr, host, ip) = match parts.as_slice() {
        [c, h] => (*c, *h, ""),
        [c, h, ip] => (*c, *h, *ip),
        _ => anyhow::bail!("-p {p}: want [HOST_IP:]HOST_PORT:CONTAINER_PORT"),
    };
    let port = |s: &str| -> anyhow::Result<i32> {
        let n: u16 = s
            .parse()
            .with_context(|| format!("-p {p}: bad port {s:?}"))?;
        Ok(n.into())
    };
    Ok(PortMapping {
        protocol: proto as i32,
        container_port: port(ctr)?,
        host_port: port(host)?,
        host_ip: ip.trim_matches(['[', ']']).to_string(),
    })
}

/// Pull `image` unless the runtime has it.
pub async fn ensure_image(c: &mut Clients, image: &str, auth: &AuthArgs) -> anyhow::Result<()> {
    let have = c
        .img
        .image_status(ImageStatusRequest {
            image: image_spec(image),
            verbose: false,
        })
        .await?
        .into_inner()
        .image;
    if have.is_none() {
        eprintln!("Unable to find image '{image}' locally");
        let r = c
            .img
            .pull_image(PullImageRequest {
                image: image_spec(image),
                auth: auth.resolve()?,
                sandbox_config: None,
            })
            .await?
            .into_inner();
        eprintln!("Pulled {}", r.image_ref);
    }
    Ok(())
}

pub async fn run(c: &mut Clients, a: RunArgs) -> anyhow::Result<i32> {
    let env = parse_env(&a.env);
    let mounts = a
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut ports = a
        .publish
        .iter()
        .map(|p| parse_port(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.network == Network::Host && !ports.is_empty() {
        eprintln!("WARNING: published ports are discarded when using host network mode");
        ports.clear();
    }
    let name = match &a.name {
        Some(n) => n.clone(),
        None => format!("berth_{}", random_hex(4)?),
    };
    if name.is_empty() || name.contains('/') {
        anyhow::bail!("--name {name:?}: not a valid name");
    }
    let all = resolve::containers(c).await?;
    if all
        .iter()
        .any(|x| x.metadata.as_ref().is_some_and(|m| m.name == name))
    {
        anyhow::bail!("the container name {name:?} is already in use");
    }
    ensure_image(c, &a.image, &a.auth).await?;

    let uid = random_hex(16)?;
    let log_dir = std::path::Path::new(&a.log_root).join(format!("berth_{name}_{uid}"));
    let network = match a.network {
        Network::Host => NamespaceMode::Node,
        Network::Pod => NamespaceMode::Pod,
    };
    let pod_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid,
            namespace: "berth".into(),
            attempt: 0,
        }),
        hostname: if a.network == Network::Pod {
            name.chars().take(63).collect()
        } else {
            String::new()
        },
        log_directory: log_dir.display().to_string(),
        port_mappings: ports,
        labels: [(RUN_LABEL.to_string(), "true".to_string())].into(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: a.cgroup_parent.clone(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: network as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod =
        c.rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.clone(),
            attempt: 0,
        }),
        image: image_spec(&a.image),
        command: a.entrypoint.iter().cloned().collect(),
        args: a.cmd.clone(),
        working_dir: a.workdir.clone().unwrap_or_default(),
        envs: env,
        mounts,
        labels: container_labels(a.detach && a.rm),
        log_path: format!("{name}/0.log"),
        stdin: a.interactive,
        stdin_once: a.interactive,
        tty: a.tty,
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    };
    let created =
        c.rt.create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(config),
            sandbox_config: Some(pod_config),
        })
        .await;
    let id = match created {
        Ok(r) => r.into_inner().container_id,
        Err(e) => {
            lifecycle::remove_pod(c, &pod).await;
            return Err(e.into());
        }
    };
    if let Err(e) =
        c.rt.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
    {
        if a.rm {
            lifecycle::remove(c, &id, &pod, true).await?;
        }
        return Err(e.into());
    }
    if a.detach {
        // With --rm, berthd removes it when it exits (the AUTO_REMOVE label).
        println!("{id}");
        return Ok(0);
    }
    let attached = if a.interactive || a.tty {
        attach_session(c, &id, a.interactive, a.tty).await
    } else {
        logs::follow_to_end(c, &id).await
    };
    let code = match attached {
        Ok(()) => lifecycle::wait_exit(c, &id).await,
        Err(e) => Err(e),
    };
    if a.rm {
        lifecycle::remove(c, &id, &pod, true).await?;
    }
    code
}

/// The container's labels: made by `run`; with `-d --rm`, removed by berthd when it exits (in
/// the foreground this client removes it, after reading its exit code).
fn container_labels(auto_remove: bool) -> std::collections::HashMap<String, String> {
    let mut labels = std::collections::HashMap::from([(RUN_LABEL.to_string(), "true".to_string())]);
    if auto_remove {
        labels.insert(
            berth_proto::labels::AUTO_REMOVE.to_string(),
            "true".to_string(),
        );
    }
    labels
}

/// Attach this terminal to a running container (Attach over the streaming server).
pub async fn attach_session(
    c: &mut Clients,
    id: &str,
    stdin: bool,
    tty: bool,
) -> anyhow::Result<()> {
    let url =
        c.rt.attach(AttachRequest {
            container_id: id.to_string(),
            stdin,
            tty,
            stdout: true,
            stderr: !tty,
        })
        .await?
        .into_inner()
        .url;
    stream::session(&url, SessionOpts { stdin, tty }).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_and_ports() {
        let m = parse_volume("/srv:/data:ro").unwrap();
        assert_eq!(
            (m.host_path.as_str(), m.container_path.as_str(), m.readonly),
            ("/srv", "/data", true)
        );
        assert!(parse_volume("vol:/data").is_err());
        assert!(parse_volume("/a:/b:zz").is_err());
        let p = parse_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("127.0.0.1", 8080, 80)
        );
        assert_eq!(p.protocol, Protocol::Udp as i32);
        let p = parse_port("8080:80").unwrap();
        assert_eq!((p.host_ip.as_str(), p.host_port, p.protocol), ("", 8080, 0));
        assert!(parse_port("80").is_err());
        assert!(parse_port("x:80").is_err());
    }

    #[test]
    fn env_forms() {
        let e = parse_env(&[
            "A=1".into(),
            "B=x=y".into(),
            "BERTH_SURELY_UNSET_VAR".into(),
        ]);
        let kv: Vec<(&str, &str)> = e
            .iter()
            .map(|k| (k.key.as_str(), k.value.as_str()))
            .collect();
        assert_eq!(kv, [("A", "1"), ("B", "x=y")]);
    }
}
