//! RuntimeConfig: the cgroup driver kubelet should use (KEP-4033).

use k8s_cri::v1::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse,
};

use crate::daemon::Daemon;
use crate::error::Error;

/// The node's `[cgroup] driver`: kubelet uses the same one.
pub async fn handle(
    _daemon: &Daemon,
    _req: RuntimeConfigRequest,
) -> Result<RuntimeConfigResponse, Error> {
    Ok(RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: match crate::cgroup_driver::kind() {
                crate::config::CgroupDriver::Cgroupfs => CgroupDriver::Cgroupfs,
                crate::config::CgroupDriver::Systemd => CgroupDriver::Systemd,
            } as i32,
        }),
    })
}
