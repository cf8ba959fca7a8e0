use base64::Engine;
use k8s_cri::v1::{AuthConfig, PullImageRequest, PullImageResponse};
use oci_client::secrets::RegistryAuth;

use super::convert::image_name;
use crate::daemon::Daemon;
use crate::error::Error;

pub async fn pull_image(
    daemon: &Daemon,
    req: PullImageRequest,
) -> Result<PullImageResponse, Error> {
    let name = image_name(&req.image);
    let auth = registry_auth(req.auth.as_ref())?;
    let image_ref = daemon.images.pull(&name, auth).await?;
    Ok(PullImageResponse { image_ref })
}

/// CRI credentials → registry credentials. A registry token is a bearer token; an identity
/// token is sent as the password (the form token-exchanging registries accept).
pub(crate) fn registry_auth(auth: Option<&AuthConfig>) -> Result<RegistryAuth, Error> {
    let Some(a) = auth else {
        return Ok(RegistryAuth::Anonymous);
    };
    if !a.registry_token.is_empty() {
        // It travels as an HTTP header: one that cannot be is refused here.
        if http::HeaderValue::from_str(&format!("Bearer {}", a.registry_token)).is_err() {
            return Err(Error::InvalidArgument(
                "registry_token holds characters an HTTP header cannot carry".into(),
            ));
        }
        return Ok(RegistryAuth::Bearer(a.registry_token.clone()));
    }
    if !a.identity_token.is_empty() {
        let user = if a.username.is_empty() {
            "<token>".to_string()
        } else {
            a.username.clone()
        };
        return Ok(RegistryAuth::Basic(user, a.identity_token.clone()));
    }
    if !a.username.is_empty() || !a.password.is_empty() {
        return Ok(RegistryAuth::Basic(a.username.clone(), a.password.clone()));
    }
    if !a.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|e| Error::InvalidArgument(format!("auth is not base64: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| Error::InvalidArgument("auth is not UTF-8".into()))?;
        let (user, pass) = text.split_once(':').ok_or_else(|| {
            Error::InvalidArgument("auth must encode \"username:password\"".into())
        })?;
        return Ok(RegistryAuth::Basic(user.to_string(), pass.to_string()));
    }
    Ok(RegistryAuth::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_forms() {
        assert_eq!(registry_auth(None).unwrap(), RegistryAuth::Anonymous);
        let basic = AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        assert_eq!(
            registry_auth(Some(&basic)).unwrap(),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        let encoded = AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("u:p:x"),
            ..Default::default()
        };
        assert_eq!(
            registry_auth(Some(&encoded)).unwrap(),
            RegistryAuth::Basic("u".into(), "p:x".into())
        );
        let token = AuthConfig {
            registry_token: "t".into(),
            ..Default::default()
        };
        assert_eq!(
            registry_auth(Some(&token)).unwrap(),
            RegistryAuth::Bearer("t".into())
        );
        // A token no HTTP header can carry is refused, never handed to the client library
        // (which panics on it).
        let odd = AuthConfig {
            registry_token: "\u{202e}\u{7f}\u{1}".into(),
            ..Default::default()
        };
        assert!(matches!(
            registry_auth(Some(&odd)),
            Err(Error::InvalidArgument(_))
        ));
        let bad = AuthConfig {
            auth: "!!".into(),
            ..Default::default()
        };
        assert!(matches!(
            registry_auth(Some(&bad)),
            Err(Error::InvalidArgument(_))
        ));
    }
}
