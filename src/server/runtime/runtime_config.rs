//! RuntimeConfig: the cgroup driver kubelet should use (KEP-4033).

use k8s_cri::v1::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse,
};

use crate::daemon::Daemon;
use crate::error::Error;

/// berth manages cgroups through cgroupfs (DESIGN.md: the systemd driver follows later).
pub async fn handle(
    _daemon: &Daemon,
    _req: RuntimeConfigRequest,
) -> Result<RuntimeConfigResponse, Error> {
    Ok(RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: CgroupDriver::Cgroupfs as i32,
        }),
    })
}
