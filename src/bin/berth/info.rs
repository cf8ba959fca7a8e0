//! `version` and `info`: the runtime's name, versions and conditions.

use k8s_cri::v1::{StatusRequest, VersionRequest};

use crate::client::Clients;

pub async fn version(c: &mut Clients) -> anyhow::Result<()> {
    let v = c.rt.version(VersionRequest::default()).await?.into_inner();
    println!("Version:  {}", v.version);
    println!("RuntimeName:  {}", v.runtime_name);
    println!("RuntimeVersion:  {}", v.runtime_version);
    println!("RuntimeApiVersion:  {}", v.runtime_api_version);
    Ok(())
}

pub async fn info(c: &mut Clients) -> anyhow::Result<()> {
    let s =
        c.rt.status(StatusRequest { verbose: true })
            .await?
            .into_inner();
    let mut info = serde_json::Map::new();
    for (k, v) in &s.info {
        let parsed = serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.clone()));
        info.insert(k.clone(), parsed);
    }
    let out = serde_json::json!({ "status": s.status, "info": info });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
