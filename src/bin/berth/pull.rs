//! `pull`: berth's own `Images.Pull` (berth.v1), one progress line per layer while berthd
//! pulls; CRI PullImage when the socket does not serve it (another runtime).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use berth_proto::api::v1 as api;
use k8s_cri::v1::PullImageRequest;

use crate::client::Clients;
use crate::{creds, image_spec};

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    pub image: String,
    #[command(flatten)]
    pub auth: creds::AuthArgs,
}

pub async fn run(c: &mut Clients, a: PullArgs) -> anyhow::Result<()> {
    let auth = a.auth.resolve()?;
    let request = api::PullRequest {
        image: a.image.clone(),
        auth: auth.as_ref().map(|a| api::Auth {
            username: a.username.clone(),
            password: a.password.clone(),
            auth: a.auth.clone(),
            identity_token: a.identity_token.clone(),
            registry_token: a.registry_token.clone(),
        }),
    };
    let mut stream = match api::images_client::ImagesClient::new(c.ch.clone())
        .pull(request)
        .await
    {
        Ok(s) => s.into_inner(),
        Err(s) if s.code() == tonic::Code::Unimplemented => {
            // Not berthd: CRI cannot say whether anything was downloaded.
            let r = c
                .img
                .pull_image(PullImageRequest {
                    image: image_spec(&a.image),
                    auth,
                    sandbox_config: None,
                })
                .await?
                .into_inner();
            println!("Pulled {} ({})", a.image, r.image_ref);
            return Ok(());
        }
        Err(s) => return Err(s.into()),
    };
    let mut view = View::new(std::io::stdout().is_terminal());
    while let Some(m) = stream.message().await? {
        view.show(&m);
        if let Some(r) = m.result {
            if r.downloaded {
                println!("Downloaded newer image for {}", m.image);
            } else {
                println!("Image is up to date for {}", m.image);
            }
            println!("{}", r.image_ref);
            return Ok(());
        }
    }
    anyhow::bail!("the pull stream ended without a result")
}

/// The layer lines: redrawn in place on a terminal, a line per change otherwise.
struct View {
    tty: bool,
    drawn: usize,
    started: Instant,
    last: HashMap<String, (u64, i32)>,
}

impl View {
    fn new(tty: bool) -> View {
        View {
            tty,
            drawn: 0,
            started: Instant::now(),
            last: HashMap::new(),
        }
    }

    fn show(&mut self, m: &api::PullProgress) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let lines: Vec<(String, String)> = m
            .layers
            .iter()
            .map(|l| (l.digest.clone(), line(l, secs)))
            .collect();
        let mut out = std::io::stdout().lock();
        if self.tty {
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.drawn);
            }
            for (_, text) in &lines {
                let _ = writeln!(out, "\x1b[2K{text}");
            }
            self.drawn = lines.len();
        } else {
            for (l, (digest, text)) in m.layers.iter().zip(&lines) {
                let now = (l.done_bytes, l.state);
                if self.last.get(digest) != Some(&now) {
                    self.last.insert(digest.clone(), now);
                    let _ = writeln!(out, "{text}");
                }
            }
        }
        let _ = out.flush();
    }
}

fn line(l: &api::LayerProgress, secs: f64) -> String {
    let short = l.digest.strip_prefix("sha256:").unwrap_or(&l.digest);
    let short = &short[..short.len().min(12)];
    let state = match l.state() {
        api::LayerState::Waiting | api::LayerState::Unspecified => "Waiting",
        api::LayerState::Downloading => "Downloading",
        api::LayerState::Extracting => "Extracting",
        api::LayerState::Done => "Pull complete",
        api::LayerState::AlreadyPresent => "Already exists",
    };
    match l.state() {
        api::LayerState::Downloading => format!(
            "{short}: {state} {}/{} {}/s",
            size(l.done_bytes),
            size(l.total_bytes),
            size((l.done_bytes as f64 / secs) as u64)
        ),
        _ => format!("{short}: {state} {}", size(l.total_bytes)),
    }
}

fn size(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2}GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}kB", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}
