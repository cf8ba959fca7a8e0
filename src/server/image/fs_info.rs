use k8s_cri::v1::{FilesystemIdentifier, FilesystemUsage, ImageFsInfoResponse, UInt64Value};

use crate::daemon::Daemon;
use crate::error::Error;

/// Bytes and inodes used by unpacked image layers, recorded when each layer was unpacked.
pub fn image_fs_info(daemon: &Daemon) -> Result<ImageFsInfoResponse, Error> {
    let (mountpoint, bytes, inodes) = daemon.images.fs_usage();
    let timestamp = berth_sys::time::now_nanos();
    Ok(ImageFsInfoResponse {
        image_filesystems: vec![FilesystemUsage {
            timestamp,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: mountpoint.display().to_string(),
            }),
            used_bytes: Some(UInt64Value { value: bytes }),
            inodes_used: Some(UInt64Value { value: inodes }),
        }],
        container_filesystems: Vec::new(),
    })
}
