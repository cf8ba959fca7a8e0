//! v1 `devices`: the device rules (`linux.resources.devices`) as lines of `devices.allow` and
//! `devices.deny`, in order.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use crate::common::write_file;
use crate::controller::Controller;
use crate::error::{Error, Result};

pub struct Devices;

impl Controller for Devices {
    fn name(&self) -> &'static str {
        "devices"
    }

    fn what(&self) -> &'static str {
        "device rules"
    }

    fn needs(&self, r: &LinuxResources) -> bool {
        r.devices().as_deref().is_some_and(|d| !d.is_empty())
    }

    fn apply(&self, dir: &Path, r: &LinuxResources) -> Result<()> {
        for rule in r.devices().iter().flatten() {
            let (file, line) = v1_device_rule(rule)?;
            write_file(dir, file, &line)?;
        }
        Ok(())
    }
}

/// A device rule as a line for v1's devices.allow / devices.deny.
pub fn v1_device_rule(rule: &LinuxDeviceCgroup) -> Result<(&'static str, String)> {
    let file = if rule.allow() {
        "devices.allow"
    } else {
        "devices.deny"
    };
    let access = rule
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    if !access.chars().all(|c| "rwm".contains(c)) {
        return Err(Error::InvalidSpec(format!(
            "device rule access {access:?} is not a subset of \"rwm\""
        )));
    }
    let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        // The kernel reads "a" as every device and every access, whatever follows.
        LinuxDeviceType::A => return Ok((file, "a".into())),
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => {
            return Err(Error::InvalidSpec(
                "device rules cannot name FIFOs (type \"p\")".into(),
            ));
        }
    };
    let num = |n: Option<i64>| match n {
        None | Some(-1) => Ok("*".to_string()),
        Some(n) if n >= 0 => Ok(n.to_string()),
        Some(n) => Err(Error::InvalidSpec(format!("device number {n} is negative"))),
    };
    Ok((
        file,
        format!(
            "{typ} {}:{} {access}",
            num(rule.major())?,
            num(rule.minor())?
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rules_in_v1_format() {
        let rule = |json: &str| -> LinuxDeviceCgroup { serde_json::from_str(json).unwrap() };
        let line = |json: &str| v1_device_rule(&rule(json)).unwrap();
        assert_eq!(
            line(r#"{"allow": false, "access": "rwm"}"#),
            ("devices.deny", "a".to_string())
        );
        assert_eq!(
            line(r#"{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}"#),
            ("devices.allow", "c 1:3 rwm".to_string())
        );
        assert_eq!(
            line(r#"{"allow": true, "type": "c", "access": "m"}"#),
            ("devices.allow", "c *:* m".to_string())
        );
        assert_eq!(
            line(r#"{"allow": true, "type": "b", "major": 8, "access": "r"}"#),
            ("devices.allow", "b 8:* r".to_string())
        );
        assert_eq!(
            line(r#"{"allow": true, "type": "c", "major": 136}"#),
            ("devices.allow", "c 136:* rwm".to_string())
        );
        assert!(v1_device_rule(&rule(r#"{"allow": true, "type": "c", "access": "x"}"#)).is_err());
        assert!(v1_device_rule(&rule(r#"{"allow": true, "type": "p"}"#)).is_err());
        assert!(v1_device_rule(&rule(r#"{"allow": true, "type": "c", "major": -5}"#)).is_err());
    }
}
