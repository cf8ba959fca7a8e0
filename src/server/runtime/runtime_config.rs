use k8s_cri::v1::{CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigResponse};

use crate::error::Error;

/// berth manages cgroups through cgroupfs (DESIGN.md: the systemd driver follows later).
pub fn runtime_config() -> Result<RuntimeConfigResponse, Error> {
    Ok(RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: CgroupDriver::Cgroupfs as i32,
        }),
    })
}
