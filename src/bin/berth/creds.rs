//! Registry credentials for pulls.

use anyhow::Context;
use k8s_cri::v1::AuthConfig;

/// `--creds USER:PASSWORD` as an AuthConfig.
pub fn from_creds(creds: Option<String>) -> anyhow::Result<Option<AuthConfig>> {
    Ok(match creds {
        Some(c) => {
            let (u, p) = c.split_once(':').context("--creds must be USER:PASSWORD")?;
            Some(AuthConfig {
                username: u.to_string(),
                password: p.to_string(),
                ..Default::default()
            })
        }
        None => None,
    })
}
