//! Image verbs: `images`, `inspecti`, `rmi`, `imagefsinfo`.

use k8s_cri::v1::{ImageFsInfoRequest, ImageStatusRequest, ListImagesRequest, RemoveImageRequest};

use crate::client::Clients;
use crate::image_spec;
use crate::output::{Format, human, short_id};

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Only image ids.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub async fn images(c: &mut Clients, a: ImagesArgs) -> anyhow::Result<()> {
    let list = c
        .img
        .list_images(ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images;
    if a.quiet {
        for i in &list {
            println!("{}", i.id);
        }
        return Ok(());
    }
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<50} {:<20} {:<15} {:>10}",
        "IMAGE", "TAG", "IMAGE ID", "SIZE"
    );
    for i in &list {
        let names: Vec<(String, String)> = if i.repo_tags.is_empty() {
            i.repo_digests
                .iter()
                .map(|d| {
                    (
                        d.split('@').next().unwrap_or(d).to_string(),
                        "<none>".into(),
                    )
                })
                .collect()
        } else {
            i.repo_tags
                .iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((n, tag)) if !tag.contains('/') => (n.to_string(), tag.to_string()),
                    _ => (t.clone(), "<none>".into()),
                })
                .collect()
        };
        for (name, tag) in names {
            println!(
                "{:<50} {:<20} {:<15} {:>10}",
                name,
                tag,
                short_id(&i.id),
                human(i.size)
            );
        }
    }
    Ok(())
}

pub async fn inspecti(c: &mut Clients, image: String) -> anyhow::Result<()> {
    let r = c
        .img
        .image_status(ImageStatusRequest {
            image: image_spec(&image),
            verbose: true,
        })
        .await?
        .into_inner();
    let Some(status) = r.image else {
        anyhow::bail!("no such image: {image}");
    };
    let mut out = serde_json::json!({ "status": status });
    if let Some(info) = r.info.get("info") {
        out["info"] = serde_json::from_str(info).unwrap_or_default();
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub async fn rmi(c: &mut Clients, images: Vec<String>) -> anyhow::Result<()> {
    for image in images {
        let r = c
            .img
            .image_status(ImageStatusRequest {
                image: image_spec(&image),
                verbose: false,
            })
            .await?
            .into_inner();
        let Some(found) = r.image else {
            anyhow::bail!("no such image: {image}");
        };
        c.img
            .remove_image(RemoveImageRequest {
                image: image_spec(&image),
            })
            .await?;
        println!("Deleted: {image} ({})", found.id);
    }
    Ok(())
}

pub async fn imagefsinfo(c: &mut Clients) -> anyhow::Result<()> {
    let r = c
        .img
        .image_fs_info(ImageFsInfoRequest {})
        .await?
        .into_inner();
    println!("{}", serde_json::to_string_pretty(&r)?);
    Ok(())
}
