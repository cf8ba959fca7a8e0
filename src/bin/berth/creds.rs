//! Registry credentials for pulls: never from the command line.
//!
//! In order: `--password-stdin` (with `--username`, as `docker login`), `BERTH_PASSWORD` (with
//! `--username`), a prompt on /dev/tty without echo (with `--username`), or
//! `BERTH_REGISTRY_AUTH` (base64 of `USER:PASSWORD`, the `auth` field of docker's config.json,
//! passed to CRI's `AuthConfig.auth` as is). A `--creds USER:PASSWORD` is refused.

use std::io::{BufRead, Write};

use anyhow::Context;
use k8s_cri::v1::AuthConfig;
use nix::sys::termios::{self, LocalFlags, SetArg};

/// The credential flags `pull` and `run` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// Registry user name; the password comes from --password-stdin, BERTH_PASSWORD or a prompt.
    #[arg(long)]
    pub username: Option<String>,
    /// Read the registry password from standard input (one line).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Registry user name (crictl's flag). A password here is refused: it would sit in argv.
    #[arg(long, value_name = "USER")]
    pub creds: Option<String>,
}

/// Where a password may come from besides argv.
pub struct Sources<'a> {
    pub stdin: &'a mut dyn BufRead,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub prompt: &'a dyn Fn(&str) -> anyhow::Result<String>,
}

impl AuthArgs {
    /// The AuthConfig for a pull, from the process's real sources.
    pub fn resolve(&self) -> anyhow::Result<Option<AuthConfig>> {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        self.resolve_from(Sources {
            stdin: &mut lock,
            env: &|k| std::env::var(k).ok().filter(|v| !v.is_empty()),
            prompt: &prompt_password,
        })
    }

    pub fn resolve_from(&self, src: Sources<'_>) -> anyhow::Result<Option<AuthConfig>> {
        if let Some(c) = &self.creds
            && c.contains(':')
        {
            anyhow::bail!(
                "--creds USER:PASSWORD puts the password on the command line, where every user \
                 of the node can read it: give --username (or --creds USER) and the password on \
                 --password-stdin, in BERTH_PASSWORD or at the prompt"
            );
        }
        let user = match (&self.username, &self.creds) {
            (Some(_), Some(_)) => anyhow::bail!("give --username or --creds, not both"),
            (Some(u), None) | (None, Some(u)) => Some(u.clone()),
            (None, None) => None,
        };
        let Some(user) = user else {
            if self.password_stdin {
                anyhow::bail!("--password-stdin needs --username");
            }
            return Ok((src.env)("BERTH_REGISTRY_AUTH").map(|auth| AuthConfig {
                auth,
                ..Default::default()
            }));
        };
        if user.is_empty() {
            anyhow::bail!("empty user name");
        }
        let password = if self.password_stdin {
            let mut s = String::new();
            src.stdin
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            let s = s.strip_suffix('\n').unwrap_or(&s);
            s.strip_suffix('\r').unwrap_or(s).to_string()
        } else if let Some(p) = (src.env)("BERTH_PASSWORD") {
            p
        } else {
            (src.prompt)(&format!("Password for {user}: "))?
        };
        if password.is_empty() {
            anyhow::bail!("empty password");
        }
        Ok(Some(AuthConfig {
            username: user,
            password,
            ..Default::default()
        }))
    }
}

/// Ask on the controlling terminal with echo off (restored whatever happens).
fn prompt_password(prompt: &str) -> anyhow::Result<String> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask for the password: use --password-stdin or BERTH_PASSWORD")?;
    let saved = termios::tcgetattr(&tty).context("reading the terminal's mode")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tty.write_all(prompt.as_bytes())?;
    tty.flush()?;
    termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).context("turning echo off")?;
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let restored = termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
    read.context("reading the password")?;
    restored.context("restoring the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        a: &AuthArgs,
        stdin: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Option<AuthConfig>> {
        let mut input = std::io::Cursor::new(stdin.as_bytes().to_vec());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        resolve_with(a, &mut input, &lookup)
    }

    fn resolve_with(
        a: &AuthArgs,
        input: &mut dyn BufRead,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<AuthConfig>> {
        a.resolve_from(Sources {
            stdin: input,
            env,
            prompt: &|_| Ok("prompted".to_string()),
        })
    }

    fn user(u: &str) -> AuthArgs {
        AuthArgs {
            username: Some(u.into()),
            ..Default::default()
        }
    }

    #[test]
    fn password_on_argv_is_refused() {
        let a = AuthArgs {
            creds: Some("me:secret".into()),
            ..Default::default()
        };
        let e = resolve(&a, "", &[]).unwrap_err().to_string();
        assert!(e.contains("command line"), "{e}");
    }

    #[test]
    fn sources_in_order() {
        assert!(resolve(&AuthArgs::default(), "", &[]).unwrap().is_none());
        let env = resolve(
            &AuthArgs::default(),
            "",
            &[("BERTH_REGISTRY_AUTH", "bWU6cHc=")],
        )
        .unwrap()
        .unwrap();
        assert_eq!((env.auth.as_str(), env.username.as_str()), ("bWU6cHc=", ""));
        let mut a = user("me");
        a.password_stdin = true;
        let s = resolve(&a, "from stdin\n", &[("BERTH_PASSWORD", "env")])
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.username.as_str(), s.password.as_str()),
            ("me", "from stdin")
        );
        let s = resolve(&user("me"), "", &[("BERTH_PASSWORD", "env")])
            .unwrap()
            .unwrap();
        assert_eq!(s.password, "env");
        let creds_user = AuthArgs {
            creds: Some("me".into()),
            ..Default::default()
        };
        let s = resolve(&creds_user, "", &[]).unwrap().unwrap();
        assert_eq!(
            (s.username.as_str(), s.password.as_str()),
            ("me", "prompted")
        );
        a.password_stdin = true;
        assert!(resolve(&a, "\n", &[]).is_err(), "empty password");
    }
}
