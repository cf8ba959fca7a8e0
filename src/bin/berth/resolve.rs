//! Containers and pods named on the command line: a full id, a unique id prefix, or a name
//! (a container's metadata name; a pod's metadata name).

use k8s_cri::v1::{Container, ListContainersRequest, ListPodSandboxRequest, PodSandbox};

use crate::client::Clients;

/// The label on every pod `berth run` made: `rm` removes such a pod with its container.
pub use berth_proto::labels::RUN_POD as RUN_LABEL;

fn pick<'a, T>(
    what: &str,
    key: &str,
    items: &'a [T],
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> anyhow::Result<&'a T> {
    if let Some(exact) = items.iter().find(|i| id(i) == key) {
        return Ok(exact);
    }
    let by_name: Vec<&T> = items.iter().filter(|i| name(i) == key).collect();
    if by_name.len() == 1 {
        return Ok(by_name[0]);
    }
    if by_name.len() > 1 {
        anyhow::bail!("{} {what}s are named {key}: give an id", by_name.len());
    }
    let by_prefix: Vec<&T> = items.iter().filter(|i| id(i).starts_with(key)).collect();
    match by_prefix.len() {
        1 => Ok(by_prefix[0]),
        0 => anyhow::bail!("no such {what}: {key}"),
        n => anyhow::bail!("{key} is a prefix of {n} {what} ids: give more of it"),
    }
}

pub async fn containers(c: &mut Clients) -> anyhow::Result<Vec<Container>> {
    Ok(c.rt
        .list_containers(ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers)
}

pub async fn pods(c: &mut Clients) -> anyhow::Result<Vec<PodSandbox>> {
    Ok(c.rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items)
}

/// The container `key` names.
pub async fn container(c: &mut Clients, key: &str) -> anyhow::Result<Container> {
    let all = containers(c).await?;
    pick(
        "container",
        key,
        &all,
        |c| &c.id,
        |c| c.metadata.as_ref().map_or("", |m| m.name.as_str()),
    )
    .cloned()
}

/// Like [`container`], None when nothing matches (errors on ambiguity).
pub fn find_container(all: &[Container], key: &str) -> anyhow::Result<Option<Container>> {
    match pick(
        "container",
        key,
        all,
        |c| &c.id,
        |c| c.metadata.as_ref().map_or("", |m| m.name.as_str()),
    ) {
        Ok(c) => Ok(Some(c.clone())),
        Err(e) if e.to_string().starts_with("no such") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The pod `key` names.
pub fn find_pod(all: &[PodSandbox], key: &str) -> anyhow::Result<Option<PodSandbox>> {
    match pick(
        "pod",
        key,
        all,
        |p| &p.id,
        |p| p.metadata.as_ref().map_or("", |m| m.name.as_str()),
    ) {
        Ok(p) => Ok(Some(p.clone())),
        Err(e) if e.to_string().starts_with("no such") => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<(String, String)> {
        vec![
            ("abc123".into(), "web".into()),
            ("abd456".into(), "db".into()),
            ("ffe789".into(), "abd".into()),
        ]
    }

    fn get(key: &str) -> anyhow::Result<String> {
        let all = items();
        pick("container", key, &all, |i| &i.0, |i| &i.1).map(|i| i.0.clone())
    }

    #[test]
    fn ids_names_and_prefixes() {
        assert_eq!(get("abc123").unwrap(), "abc123");
        assert_eq!(get("web").unwrap(), "abc123");
        // A name wins over an id prefix.
        assert_eq!(get("abd").unwrap(), "ffe789");
        assert_eq!(
            get("ab4").unwrap_err().to_string(),
            "no such container: ab4"
        );
        assert!(get("a").unwrap_err().to_string().contains("prefix of 2"));
        assert_eq!(get("ffe").unwrap(), "ffe789");
    }
}
