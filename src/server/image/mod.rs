//! CRI ImageService.

mod convert;
mod fs_info;
mod list;
mod pull;

pub(crate) use pull::registry_auth;
mod remove;
mod status;

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use self::convert::image_name;
use super::instrument::call;
use crate::daemon::Daemon;

/// The ImageService implementation.
pub struct ImageServer {
    daemon: Arc<Daemon>,
}

impl ImageServer {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ImageServer { daemon }
    }
}

#[tonic::async_trait]
impl ImageService for ImageServer {
    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let req = request.into_inner();
        call(&self.daemon, "ListImages", "", async {
            list::list_images(&self.daemon, req)
        })
        .await
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let req = request.into_inner();
        let id = image_name(&req.image);
        call(&self.daemon, "ImageStatus", &id, async {
            status::image_status(&self.daemon, req)
        })
        .await
    }

    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let req = request.into_inner();
        let id = image_name(&req.image);
        call(
            &self.daemon,
            "PullImage",
            &id,
            pull::pull_image(&self.daemon, req),
        )
        .await
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let req = request.into_inner();
        let id = image_name(&req.image);
        call(
            &self.daemon,
            "RemoveImage",
            &id,
            remove::remove_image(&self.daemon, req),
        )
        .await
    }

    async fn image_fs_info(
        &self,
        _request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        call(&self.daemon, "ImageFsInfo", "", async {
            fs_info::image_fs_info(&self.daemon)
        })
        .await
    }
}
