//! The startup handshake. berthd starts `berth-shim` (or `berth-shim pod-init`) with a pipe on
//! stdout and reads it to EOF; the shim daemonizes and writes exactly one line when the
//! container is created (or could not be): `ok <init-pid>` or `error <message>`.

/// What a starting shim answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Created; the init's host pid (the pod's PID 1 for `pod-init`).
    Ok(u32),
    /// Not created, and why (what berthd shows the user).
    Error(String),
}

/// A pipe's content that is no handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the shim exited without a handshake")]
    Missing,
    #[error("bad pid in {0:?}")]
    BadPid(String),
    #[error("unexpected handshake {0:?}")]
    Unexpected(String),
}

impl Handshake {
    /// The line the shim writes, newline included; the message is kept on that one line.
    pub fn line(&self) -> String {
        let mut text = match self {
            Handshake::Ok(pid) => format!("ok {pid}"),
            Handshake::Error(msg) => format!("error {msg}"),
        }
        .replace('\n', " ");
        text.push('\n');
        text
    }

    /// Read the handshake from everything berthd read off the pipe.
    pub fn parse(out: &str) -> Result<Handshake, HandshakeError> {
        let line = out.lines().next().unwrap_or_default().trim();
        if let Some(pid) = line.strip_prefix("ok ") {
            return pid
                .trim()
                .parse()
                .map(Handshake::Ok)
                .map_err(|_| HandshakeError::BadPid(line.to_string()));
        }
        if let Some(msg) = line.strip_prefix("error ") {
            return Ok(Handshake::Error(msg.to_string()));
        }
        Err(if line.is_empty() {
            HandshakeError::Missing
        } else {
            HandshakeError::Unexpected(line.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes() {
        assert_eq!(Handshake::parse("ok 4242\n").unwrap(), Handshake::Ok(4242));
        assert!(matches!(
            Handshake::parse("error exec: \"nope\": executable file not found\n"),
            Ok(Handshake::Error(m)) if m.contains("executable file not found")
        ));
        assert_eq!(Handshake::parse(""), Err(HandshakeError::Missing));
        assert!(matches!(
            Handshake::parse("ok x"),
            Err(HandshakeError::BadPid(_))
        ));
        assert!(matches!(
            Handshake::parse("hello"),
            Err(HandshakeError::Unexpected(_))
        ));
    }

    #[test]
    fn one_line_each_way() {
        assert_eq!(Handshake::Ok(7).line(), "ok 7\n");
        let e = Handshake::Error("mounting\nproc: EPERM".into());
        assert_eq!(e.line(), "error mounting proc: EPERM\n");
        assert_eq!(
            Handshake::parse(&e.line()).unwrap(),
            Handshake::Error("mounting proc: EPERM".into())
        );
        assert_eq!(
            Handshake::parse(&Handshake::Ok(1).line()).unwrap(),
            Handshake::Ok(1)
        );
    }
}
