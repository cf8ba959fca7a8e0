//! `pull`: PullImage (unary).

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
    let r = c
        .img
        .pull_image(PullImageRequest {
            image: image_spec(&a.image),
            auth,
            sandbox_config: None,
        })
        .await?
        .into_inner();
    println!("Image is up to date for {}", r.image_ref);
    Ok(())
}
