//! The final `metav1.Status` of a remote-command session, as kubelet writes it on the error
//! stream: success, a non-zero exit code, or a failure with a message.

use bytes::Bytes;

/// The error channel's `metav1.Status` for an exit code (success for 0), as kubelet writes it.
pub fn status_json(exit_code: i32) -> Bytes {
    if exit_code == 0 {
        return Bytes::from_static(br#"{"metadata":{},"status":"Success"}"#);
    }
    Bytes::from(
        serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [exit code {exit_code}], exit code {exit_code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]},
        })
        .to_string(),
    )
}

/// The error channel's `metav1.Status` for a failure that is not an exit code.
pub fn failure_json(message: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::TerminalSize;

    #[test]
    fn statuses() {
        assert_eq!(
            &status_json(0)[..],
            br#"{"metadata":{},"status":"Success"}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&status_json(3)).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let t: TerminalSize = serde_json::from_str(r#"{"Width":80,"Height":24}"#).unwrap();
        assert_eq!((t.width, t.height), (80, 24));
    }
}
