//! CRI RuntimeService: one file per call, each `handle(daemon, request)`; this file only routes
//! every call through the one instrument layer (`super::instrument::call`: the recovery gate,
//! a span with the object id, metrics, the error's gRPC code). Calls berth does not implement
//! answer UNIMPLEMENTED, never a fake success.
//!
//! Adding a call: a file `<call>.rs` with `pub async fn handle`, and its method below.

mod attach;
mod container_stats;
mod container_status;
mod convert;
mod create_container;
mod exec;
mod exec_sync;
mod get_container_events;
mod list_container_stats;
mod list_containers;
mod list_metric_descriptors;
mod list_pod_sandbox;
mod list_pod_sandbox_metrics;
mod list_pod_sandbox_stats;
mod pod_sandbox_stats;
mod pod_sandbox_status;
mod port_forward;
mod remove_container;
mod remove_pod_sandbox;
mod reopen_container_log;
mod run_pod_sandbox;
mod runtime_config;
mod start_container;
mod status;
mod stop_container;
mod stop_pod_sandbox;
mod stream_token;
mod update_container_resources;
mod update_runtime_config;
mod version;

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

/// The pod a RunPodSandbox names (it has no id yet), for the call's span.
fn pod_name(req: &RunPodSandboxRequest) -> String {
    req.config
        .as_ref()
        .and_then(|c| c.metadata.as_ref())
        .map(|m| format!("{}/{}", m.namespace, m.name))
        .unwrap_or_default()
}

#[tonic::async_trait]
impl RuntimeService for RuntimeServer {
    async fn version(
        &self,
        request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        let req = request.into_inner();
        let id = String::new();
        call(
            &self.daemon,
            "Version",
            &id,
            version::handle(&self.daemon, req),
        )
        .await
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let id = pod_name(&req);
        call(
            &self.daemon,
            "RunPodSandbox",
            &id,
            run_pod_sandbox::handle(&self.daemon, req),
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
            stop_pod_sandbox::handle(&self.daemon, req),
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
            remove_pod_sandbox::handle(&self.daemon, req),
        )
        .await
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        let req = request.into_inner();
        let id = req.pod_sandbox_id.clone();
        call(
            &self.daemon,
            "PodSandboxStatus",
            &id,
            pod_sandbox_status::handle(&self.daemon, req),
        )
        .await
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let id = String::new();
        call(
            &self.daemon,
            "ListPodSandbox",
            &id,
            list_pod_sandbox::handle(&self.daemon, req),
        )
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
            create_container::handle(&self.daemon, req),
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
            start_container::handle(&self.daemon, req),
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
            stop_container::handle(&self.daemon, req),
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
            remove_container::handle(&self.daemon, req),
        )
        .await
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let req = request.into_inner();
        let id = String::new();
        call(
            &self.daemon,
            "ListContainers",
            &id,
            list_containers::handle(&self.daemon, req),
        )
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
            container_status::handle(&self.daemon, req),
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
            update_container_resources::handle(&self.daemon, req),
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
            reopen_container_log::handle(&self.daemon, req),
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
            exec_sync::handle(&self.daemon, req),
        )
        .await
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let req = request.into_inner();
        let id = req.container_id.clone();
        call(&self.daemon, "Exec", &id, exec::handle(&self.daemon, req)).await
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
            attach::handle(&self.daemon, req),
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
            port_forward::handle(&self.daemon, req),
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
            container_stats::handle(&self.daemon, req),
        )
        .await
    }

    async fn list_container_stats(
        &self,
        request: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        let req = request.into_inner();
        let id = String::new();
        call(
            &self.daemon,
            "ListContainerStats",
            &id,
            list_container_stats::handle(&self.daemon, req),
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
            pod_sandbox_stats::handle(&self.daemon, req),
        )
        .await
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        let req = request.into_inner();
        let id = String::new();
        call(
            &self.daemon,
            "ListPodSandboxStats",
            &id,
            list_pod_sandbox_stats::handle(&self.daemon, req),
        )
        .await
    }

    async fn update_runtime_config(
        &self,
        request: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        let req = request.into_inner();
        let id = String::new();
        call(
            &self.daemon,
            "UpdateRuntimeConfig",
            &id,
            update_runtime_config::handle(&self.daemon, req),
        )
        .await
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let req = request.into_inner();
        let id = String::new();
        call(
            &self.daemon,
            "Status",
            &id,
            status::handle(&self.daemon, req),
        )
        .await
    }

    async fn runtime_config(
        &self,
        request: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        let req = request.into_inner();
        let id = String::new();
        call(
            &self.daemon,
            "RuntimeConfig",
            &id,
            runtime_config::handle(&self.daemon, req),
        )
        .await
    }

    type GetContainerEventsStream = get_container_events::EventStream;

    async fn get_container_events(
        &self,
        request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let req = request.into_inner();
        let daemon = self.daemon.clone();
        call(
            &self.daemon,
            "GetContainerEvents",
            "",
            get_container_events::handle(daemon, req),
        )
        .await
    }

    async fn checkpoint_container(
        &self,
        request: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        self.unimplemented("CheckpointContainer", &request.get_ref().container_id)
            .await
    }

    async fn list_metric_descriptors(
        &self,
        request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        let req = request.into_inner();
        call(
            &self.daemon,
            "ListMetricDescriptors",
            "",
            list_metric_descriptors::handle(&self.daemon, req),
        )
        .await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        request: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        let req = request.into_inner();
        call(
            &self.daemon,
            "ListPodSandboxMetrics",
            "",
            list_pod_sandbox_metrics::handle(&self.daemon, req),
        )
        .await
    }
}
