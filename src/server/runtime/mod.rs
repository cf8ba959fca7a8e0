//! CRI RuntimeService. Calls that later work implements answer UNIMPLEMENTED, never a fake
//! success.

mod container;
mod events;
mod exec;
mod runtime_config;
mod sandbox;
mod stats;
mod status;
mod streaming;
mod version;

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use super::instrument::call;
use crate::daemon::Daemon;
use crate::error::Error;

/// The RuntimeService implementation.
pub struct RuntimeServer {
    daemon: Arc<Daemon>,
}

impl RuntimeServer {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        RuntimeServer { daemon }
    }

    async fn unimplemented<T>(
        &self,
        method: &'static str,
        id: &str,
    ) -> Result<Response<T>, Status> {
        call(&self.daemon, method, id, async {
            Err(Error::Unimplemented(format!(
                "{method} is not implemented by berth yet"
            )))
        })
        .await
    }
}

type EventStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for RuntimeServer {
    async fn version(
        &self,
        request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        let req = request.into_inner();
        call(&self.daemon, "Version", "", async { version::version(req) }).await
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let name = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_default();
        call(
            &self.daemon,
            "RunPodSandbox",
            &name,
            sandbox::run(&self.daemon, req),
        )
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let id = req.pod_sandbox_id.clone();
        call(
            &self.daemon,
            "StopPodSandbox",
            &id,
            sandbox::stop(&self.daemon, req),
        )
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        let req = request.into_inner();
        let id = req.pod_sandbox_id.clone();
        call(
            &self.daemon,
            "RemovePodSandbox",
            &id,
            sandbox::remove(&self.daemon, req),
        )
        .await
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        let req = request.into_inner();
        let id = req.pod_sandbox_id.clone();
        call(&self.daemon, "PodSandboxStatus", &id, async {
            sandbox::status(&self.daemon, req)
        })
        .await
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        let req = request.into_inner();
        call(&self.daemon, "ListPodSandbox", "", async {
            sandbox::list(&self.daemon, req)
        })
        .await
    }

    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let req = request.into_inner();
        let id = req.pod_sandbox_id.clone();
        call(
            &self.daemon,
            "CreateContainer",
            &id,
            container::create(&self.daemon, req),
        )
        .await
    }

    async fn start_container(
        &self,
        request: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(
            &self.daemon,
            "StartContainer",
            &id,
            container::start(&self.daemon, req),
        )
        .await
    }

    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(
            &self.daemon,
            "StopContainer",
            &id,
            container::stop(&self.daemon, req),
        )
        .await
    }

    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(
            &self.daemon,
            "RemoveContainer",
            &id,
            container::remove(&self.daemon, req),
        )
        .await
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let req = request.into_inner();
        let id = String::new();
        call(&self.daemon, "ListContainers", &id, async {
            container::list(&self.daemon, req)
        })
        .await
    }

    async fn container_status(
        &self,
        request: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(
            &self.daemon,
            "ContainerStatus",
            &id,
            container::status(&self.daemon, req),
        )
        .await
    }

    async fn update_container_resources(
        &self,
        request: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(
            &self.daemon,
            "UpdateContainerResources",
            &id,
            stats::update_resources(&self.daemon, req),
        )
        .await
    }

    async fn reopen_container_log(
        &self,
        request: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(
            &self.daemon,
            "ReopenContainerLog",
            &id,
            container::reopen_log(&self.daemon, req),
        )
        .await
    }

    async fn exec_sync(
        &self,
        request: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(
            &self.daemon,
            "ExecSync",
            &id,
            exec::exec_sync(&self.daemon, req),
        )
        .await
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(
            &self.daemon,
            "Exec",
            &id,
            streaming::exec(&self.daemon, req),
        )
        .await
    }

    async fn attach(
        &self,
        request: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(
            &self.daemon,
            "Attach",
            &id,
            streaming::attach(&self.daemon, req),
        )
        .await
    }

    async fn port_forward(
        &self,
        request: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        let req = request.into_inner();
        let id = req.pod_sandbox_id.clone();
        call(
            &self.daemon,
            "PortForward",
            &id,
            streaming::port_forward(&self.daemon, req),
        )
        .await
    }

    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(
            &self.daemon,
            "ContainerStats",
            &id,
            stats::container_stats(&self.daemon, req),
        )
        .await
    }

    async fn list_container_stats(
        &self,
        request: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        call(
            &self.daemon,
            "ListContainerStats",
            "",
            stats::list_container_stats(&self.daemon, request.into_inner()),
        )
        .await
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        let req = request.into_inner();
        let id = req.pod_sandbox_id.clone();
        call(
            &self.daemon,
            "PodSandboxStats",
            &id,
            stats::pod_sandbox_stats(&self.daemon, req),
        )
        .await
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        call(
            &self.daemon,
            "ListPodSandboxStats",
            "",
            stats::list_pod_sandbox_stats(&self.daemon, request.into_inner()),
        )
        .await
    }

    async fn update_runtime_config(
        &self,
        request: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        let req = request.into_inner();
        call(&self.daemon, "UpdateRuntimeConfig", "", async {
            status::update_runtime_config(&self.daemon, req)
        })
        .await
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let req = request.into_inner();
        call(&self.daemon, "Status", "", async {
            status::status(&self.daemon, req)
        })
        .await
    }

    async fn checkpoint_container(
        &self,
        request: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        self.unimplemented("CheckpointContainer", &request.get_ref().container_id)
            .await
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        if !self.daemon.is_ready() {
            return Err(Status::unavailable("berthd is starting (recovering state)"));
        }
        Ok(Response::new(events::stream(self.daemon.clone())))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        self.unimplemented("ListMetricDescriptors", "").await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        self.unimplemented("ListPodSandboxMetrics", "").await
    }

    async fn runtime_config(
        &self,
        _request: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        call(&self.daemon, "RuntimeConfig", "", async {
            runtime_config::runtime_config()
        })
        .await
    }
}
