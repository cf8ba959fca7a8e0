//! The container's process: its command, environment, working directory, user, terminal and
//! the flags of its security context, merged the way Docker and containerd merge the request,
//! the image config and their defaults.

use oci_spec::runtime::UserBuilder;

use super::draft::Draft;
use super::error::SpecError;
use super::request::Request;
use crate::container::user::{self, UserRequest};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command, as Docker and containerd merge it: the request's command and args, else the
/// image's entrypoint with the request's args, else the image's entrypoint and cmd.
pub fn with_args(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let c = req.config;
    let entrypoint = req.image_strings("Entrypoint");
    let args: Vec<String> = if !c.command.is_empty() {
        c.command.iter().chain(c.args.iter()).cloned().collect()
    } else if !c.args.is_empty() {
        entrypoint.iter().chain(c.args.iter()).cloned().collect()
    } else {
        entrypoint
            .iter()
            .chain(req.image_strings("Cmd").iter())
            .cloned()
            .collect()
    };
    if args.is_empty() {
        return Err(SpecError::Invalid(
            "no command specified: neither the container config nor the image has one".into(),
        ));
    }
    draft.process.set_args(Some(args));
    Ok(())
}

/// The environment: HOSTNAME, then the image's, then the request's (a later key replaces an
/// earlier one), and a default PATH.
pub fn with_env(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let mut env: Vec<String> = Vec::new();
    let mut set_env = |kv: String| {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    set_env(format!("HOSTNAME={}", req.sandbox.hostname()));
    for e in req.image_strings("Env") {
        set_env(e);
    }
    for kv in &req.config.envs {
        if kv.key.is_empty() {
            return Err(SpecError::Invalid(
                "an environment variable has no name".into(),
            ));
        }
        set_env(format!("{}={}", kv.key, kv.value));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.to_string());
    }
    draft.process.set_env(Some(env));
    Ok(())
}

/// The working directory: the request's, else the image's, else `/`.
pub fn with_cwd(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let cwd = match req.config.working_dir.as_str() {
        "" => match req.image_string("WorkingDir") {
            "" => "/",
            image => image,
        },
        requested => requested,
    };
    if !cwd.starts_with('/') {
        return Err(SpecError::Invalid(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }
    draft.process.set_cwd(cwd.into());
    Ok(())
}

/// The user, resolved against the image's /etc/passwd and /etc/group; as runc and containerd,
/// HOME from the user's passwd entry (else /) unless the environment has one.
pub fn with_user(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let sec = &req.sec;
    let identity = user::resolve(
        req.input.rootfs,
        &UserRequest {
            image_user: req.image_string("User").to_string(),
            run_as_user: sec.run_as_user.as_ref().map(|v| v.value),
            run_as_username: sec.run_as_username.clone(),
            run_as_group: sec.run_as_group.as_ref().map(|v| v.value),
            supplemental_groups: sec.supplemental_groups.clone(),
            strict_groups: sec.supplemental_groups_policy
                == k8s_cri::v1::SupplementalGroupsPolicy::Strict as i32,
        },
    )?;
    draft.process.set_user(
        UserBuilder::default()
            .uid(identity.uid)
            .gid(identity.gid)
            .additional_gids(identity.additional_gids)
            .build()?,
    );
    let env = draft.process.env_mut().get_or_insert_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = identity.home.unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    Ok(())
}

/// A terminal when the request asks for one, with TERM=xterm unless the environment has a TERM
/// (as runc and containerd).
pub fn with_terminal(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let tty = req.config.tty;
    draft.process.set_terminal(Some(tty));
    let env = draft.process.env_mut().get_or_insert_default();
    if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    Ok(())
}

/// `no_new_privs` from the security context.
pub fn with_no_new_privileges(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    draft
        .process
        .set_no_new_privileges(Some(req.sec.no_new_privs));
    Ok(())
}

/// The OOM score adjustment, when the request sets one.
pub fn with_oom_score_adj(req: &Request<'_>, draft: &mut Draft) -> Result<(), SpecError> {
    let adj = req.resources.oom_score_adj;
    if adj != 0 {
        let adj = i32::try_from(adj)
            .map_err(|_| SpecError::Invalid(format!("oom_score_adj {adj} is out of range")))?;
        draft.process.set_oom_score_adj(Some(adj));
    }
    Ok(())
}
