//! End-to-end: real berthd processes driven through a tonic CRI client, pulling from a real
//! docker-registry on loopback inside this process's private network namespace.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_e2e::cri::*;
use berth_e2e::images::{
    ImageConfig, ImageSpec, ManifestFlavour, Pusher, StandardSet, busybox_layer,
    huge_pax_record_layer, push_multilayer, push_standard_set,
};
use berth_e2e::netns;
use berth_e2e::node::{Node, free_port};
use berth_e2e::registry::{Registry, RegistryOpts, http_request};
use berth_proto::api::v1 as api;
use k8s_cri::v1::*;
use tonic::Code;

/// What every test of the suite shares.
pub struct Env {
    rt: tokio::runtime::Runtime,
    reg: Registry,
    set: StandardSet,
}

type TestFn = fn(&Env);

/// The suite's tests; the harness names them `cri::<name>`.
pub const TESTS: &[(&str, TestFn)] = &[
    (
        "version_status_runtime_config",
        version_status_runtime_config,
    ),
    ("daemon_lifecycle", daemon_lifecycle),
    ("every_grpc_client", every_grpc_client),
    ("pull_busybox_and_inspect", pull_busybox_and_inspect),
    ("pull_formats_and_platforms", pull_formats_and_platforms),
    (
        "reference_forms_and_shared_config",
        reference_forms_and_shared_config,
    ),
    (
        "shared_base_stored_once_and_gc",
        shared_base_stored_once_and_gc,
    ),
    ("whiteouts_hardlinks_devices", whiteouts_hardlinks_devices),
    (
        "hostile_layers_leave_no_trace",
        hostile_layers_leave_no_trace,
    ),
    (
        "huge_layer_metadata_is_refused",
        huge_layer_metadata_is_refused,
    ),
    ("errors_are_precise", errors_are_precise),
    ("registry_auth", registry_auth),
    ("registry_bearer_token_flow", registry_bearer_token_flow),
    (
        "registry_anonymous_bearer_tokens",
        registry_anonymous_bearer_tokens,
    ),
    (
        "mirrors_plain_http_and_tls_hosts",
        mirrors_plain_http_and_tls_hosts,
    ),
    (
        "concurrent_pulls_fetch_each_blob_once",
        concurrent_pulls_fetch_each_blob_once,
    ),
    ("remove_untag_and_delete", remove_untag_and_delete),
    ("image_fs_info_counts_layers", image_fs_info_counts_layers),
    ("crash_safety_kill9", crash_safety_kill9),
    ("metrics_endpoint", metrics_endpoint),
    ("pull_progress_api", pull_progress_api),
    ("json_log_format", json_log_format),
    ("berth_cli", berth_cli),
    ("sandbox_lifecycle", sandbox_lifecycle),
    ("sandbox_recovery", sandbox_recovery),
    (
        "start_of_a_command_that_cannot_run",
        start_of_a_command_that_cannot_run,
    ),
    (
        "pod_input_no_process_can_take",
        pod_input_no_process_can_take,
    ),
    (
        "huge_fields_keep_their_answers",
        huge_fields_keep_their_answers,
    ),
    (
        "create_container_failures_leave_no_trace",
        create_container_failures_leave_no_trace,
    ),
    ("containers_run_exit_and_log", containers_run_exit_and_log),
    (
        "containers_survive_berthd_kill9",
        containers_survive_berthd_kill9,
    ),
    ("shims_leave_berthd_cgroup", shims_leave_berthd_cgroup),
    (
        "a_hung_removal_does_not_block_other_creates",
        a_hung_removal_does_not_block_other_creates,
    ),
    (
        "a_stopped_shim_delays_only_its_own_container",
        a_stopped_shim_delays_only_its_own_container,
    ),
    (
        "a_dead_shim_takes_its_container_with_it",
        a_dead_shim_takes_its_container_with_it,
    ),
    ("exec_helpers_die_with_berthd", exec_helpers_die_with_berthd),
    (
        "container_mounts_image_view_and_log_reopen",
        container_mounts_image_view_and_log_reopen,
    ),
    (
        "shim_logs_reach_berthd_and_outlive_containers",
        shim_logs_reach_berthd_and_outlive_containers,
    ),
];

/// The suite's environment: a runtime, and a registry (with an access log) holding the
/// standard image set.
pub fn setup() -> Env {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let reg = Registry::start(RegistryOpts {
        access_log: true,
        ..Default::default()
    });
    let set = rt.block_on(push_standard_set(&reg));
    Env { rt, reg, set }
}

// ---------- helpers ----------

async fn list(node: &Node) -> Vec<Image> {
    node.images()
        .await
        .list_images(ListImagesRequest { filter: None })
        .await
        .expect("ListImages")
        .into_inner()
        .images
}

async fn status(node: &Node, image: &str, verbose: bool) -> ImageStatusResponse {
    node.images()
        .await
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
}

async fn remove(node: &Node, image: &str) {
    node.images()
        .await
        .remove_image(RemoveImageRequest { image: spec(image) })
        .await
        .unwrap_or_else(|e| panic!("RemoveImage {image}: {e:?}"));
}

fn snapshot_fs_dirs(node: &Node) -> Vec<PathBuf> {
    dir_entries(&node.root.join("snapshots"))
        .into_iter()
        .map(|d| d.join("fs"))
        .collect()
}

fn blobs(node: &Node) -> HashSet<String> {
    dir_entries(&node.root.join("content/blobs/sha256"))
        .into_iter()
        .map(|p| format!("sha256:{}", p.file_name().unwrap().to_string_lossy()))
        .collect()
}

/// The snapshot directory that holds `rel` (relative path inside the layer).
fn snapshot_with(node: &Node, rel: &str) -> PathBuf {
    snapshot_fs_dirs(node)
        .into_iter()
        .find(|d| d.join(rel).symlink_metadata().is_ok())
        .unwrap_or_else(|| panic!("no snapshot holds {rel}"))
}

/// No image, snapshot, blob or ingest file is left.
async fn assert_empty(node: &Node, what: &str) {
    assert!(list(node).await.is_empty(), "{what}: images listed");
    assert!(
        dir_entries(&node.root.join("snapshots")).is_empty(),
        "{what}: snapshots left: {:?}",
        dir_entries(&node.root.join("snapshots"))
    );
    assert!(
        blobs(node).is_empty(),
        "{what}: blobs left: {:?}",
        blobs(node)
    );
    assert!(
        dir_entries(&node.root.join("content/ingest")).is_empty(),
        "{what}: ingest files left"
    );
}

fn status_code<T>(r: &Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

// ---------- tests ----------

fn version_status_runtime_config(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let mut rt = node.runtime().await;
        let v = rt.version(VersionRequest::default()).await.unwrap().into_inner();
        assert_eq!(v.version, "0.1.0");
        assert_eq!(v.runtime_name, "berth");
        assert_eq!(v.runtime_api_version, "v1");
        assert!(!v.runtime_version.is_empty());

        let conditions = |s: StatusResponse| {
            s.status
                .unwrap()
                .conditions
                .into_iter()
                .map(|c| (c.r#type.clone(), c))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let s = rt.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
        assert!(s.info.contains_key("config"));
        // The newer security features, advertised because they work (see their own tests).
        assert!(s.features.as_ref().unwrap().supplemental_groups_policy);
        let handler = &s.runtime_handlers[0];
        assert_eq!(handler.name, "");
        // The default runtime is also served as "berth", the handler a RuntimeClass names.
        let names: Vec<&str> = s.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["", "berth"]);
        assert!(handler.features.as_ref().unwrap().recursive_read_only_mounts);
        let c = conditions(s);
        assert!(c["RuntimeReady"].status);
        assert!(!c["NetworkReady"].status, "no CNI config yet");
        assert_eq!(c["NetworkReady"].reason, "NetworkPluginNotReady");
        assert!(c["NetworkReady"].message.contains("no network config"));

        std::fs::write(
            node.cni_conf.join("10-test.conflist"),
            r#"{"cniVersion":"1.0.0","name":"test","plugins":[{"type":"bridge","bridge":"berthtest0","ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16"}]]}},{"type":"loopback"}]}"#,
        )
        .unwrap();
        let s = rt.status(StatusRequest { verbose: false }).await.unwrap().into_inner();
        assert!(s.info.is_empty());
        assert!(conditions(s)["NetworkReady"].status);

        let rc = rt
            .runtime_config(RuntimeConfigRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rc.linux.unwrap().cgroup_driver, CgroupDriver::Cgroupfs as i32);

        // kubelet's pod CIDR: recorded, shown in verbose Status; a malformed one refused.
        let update = |cidr: &str| UpdateRuntimeConfigRequest {
            runtime_config: Some(RuntimeConfig {
                network_config: Some(NetworkConfig {
                    pod_cidr: cidr.into(),
                }),
            }),
        };
        rt.update_runtime_config(update("10.244.1.0/24,fd00:1::/64"))
            .await
            .unwrap();
        let s = rt.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
        assert_eq!(s.info["podCIDRs"], r#"["10.244.1.0/24","fd00:1::/64"]"#);
        let r = rt.update_runtime_config(update("10.244.1.0/33")).await;
        assert_eq!(status_code(&r), Code::InvalidArgument);

        // Later work answers UNIMPLEMENTED, never a fake success.
        let r = rt.checkpoint_container(CheckpointContainerRequest::default()).await;
        assert_eq!(status_code(&r), Code::Unimplemented);
    });
}

/// A gRPC client berth did not write, in another language: Python's grpcio (gRPC C-core, which
/// sends the socket path percent-encoded as `:authority`), default options; then raw HTTP/2
/// requests with every `:authority` form a client may send on a unix socket.
fn every_grpc_client(env: &Env) {
    use prost::Message;
    env.rt.block_on(async {
        let node = Node::start().await;
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let python = std::env::var("BERTH_E2E_PYTHON").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/e2e-python/bin/python"
            )
            .to_string()
        });
        assert!(
            Path::new(&python).exists(),
            "{python} is missing: `make deps-test` makes a venv with grpcio from PyPI"
        );
        let script = node.dir.path().join("client.py");
        std::fs::write(&script, GRPCIO_CLIENT).unwrap();
        let mut pod = pod_config("grpcio", NamespaceMode::Pod);
        pod.log_directory = node.dir.path().join("logs").display().to_string();
        let calls = [
            (
                "/runtime.v1.RuntimeService/Version",
                VersionRequest {
                    version: "v1".into(),
                }
                .encode_to_vec(),
            ),
            (
                "/runtime.v1.ImageService/ListImages",
                ListImagesRequest::default().encode_to_vec(),
            ),
            (
                "/runtime.v1.RuntimeService/RunPodSandbox",
                RunPodSandboxRequest {
                    config: Some(pod),
                    runtime_handler: String::new(),
                }
                .encode_to_vec(),
            ),
        ];
        let out = tokio::process::Command::new(&python)
            .arg(&script)
            .arg(&node.socket)
            .args(
                calls
                    .iter()
                    .map(|(m, req)| format!("{m}={}", hex::encode(req))),
            )
            .output()
            .await
            .expect("running the grpcio client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "grpcio client: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let replies: Vec<Vec<u8>> = stdout.lines().map(|l| hex::decode(l).unwrap()).collect();
        assert_eq!(replies.len(), 3, "{stdout}");
        let v = VersionResponse::decode(replies[0].as_slice()).unwrap();
        assert_eq!(
            (v.runtime_name.as_str(), v.version.as_str()),
            ("berth", "0.1.0")
        );
        let images = ListImagesResponse::decode(replies[1].as_slice()).unwrap();
        assert!(
            images.images.iter().any(|i| i.repo_tags.contains(&bb)),
            "{images:?}"
        );
        let pod_id = RunPodSandboxResponse::decode(replies[2].as_slice())
            .unwrap()
            .pod_sandbox_id;
        let st = pod_status(&node, &pod_id).await.unwrap().status.unwrap();
        assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
        let mut rt = node.runtime().await;
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .unwrap();

        // Raw HTTP/2, one connection per form.
        let sock = node.socket.display().to_string();
        let encoded = sock.trim_start_matches('/').replace('/', "%2F");
        for authority in ["localhost", "", sock.as_str(), encoded.as_str()] {
            let reply = raw_h2_version(&node.socket, authority).await;
            let v = VersionResponse::decode(reply.as_slice())
                .unwrap_or_else(|e| panic!(":authority {authority:?}: {e}"));
            assert_eq!(v.runtime_name, "berth", ":authority {authority:?}");
        }
    });
}

/// Calls `METHOD=HEXREQUEST` arguments on the unix socket argv[1] with grpcio's defaults and
/// raw bytes (no generated code); prints each reply in hex.
const GRPCIO_CLIENT: &str = r#"
import sys
import grpc

sock, calls = sys.argv[1], sys.argv[2:]
with grpc.insecure_channel("unix://" + sock) as channel:
    for call in calls:
        method, request = call.split("=", 1)
        reply = channel.unary_unary(method)(bytes.fromhex(request), timeout=60)
        print(reply.hex(), flush=True)
"#;

/// One unary gRPC Version call written as HTTP/2 frames by hand with the given `:authority`
/// (HPACK literals without indexing); the reply message. Panics on a reset or a GOAWAY.
async fn raw_h2_version(socket: &Path, authority: &str) -> Vec<u8> {
    use prost::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    fn frame(out: &mut Vec<u8>, typ: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len();
        out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, typ, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    }
    fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
        // Literal without indexing, new name; lengths below 127 fit the 7-bit prefix.
        for s in [name, value] {
            assert!(s.len() < 127);
        }
        out.push(0);
        for s in [name, value] {
            out.push(s.len() as u8);
            out.extend_from_slice(s.as_bytes());
        }
    }
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/runtime.v1.RuntimeService/Version"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        literal(&mut block, n, v);
    }
    let msg = VersionRequest {
        version: "v1".into(),
    }
    .encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]);
    frame(&mut out, 0x1, 0x4, 1, &block);
    frame(&mut out, 0x0, 0x1, 1, &body);
    let mut conn = tokio::net::UnixStream::connect(socket).await.unwrap();
    conn.write_all(&out).await.unwrap();
    let mut data = Vec::new();
    let read = async {
        loop {
            let mut h = [0u8; 9];
            conn.read_exact(&mut h).await.unwrap();
            let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
            let mut payload = vec![0u8; len];
            conn.read_exact(&mut payload).await.unwrap();
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
            match h[3] {
                0x3 => panic!(":authority {authority:?}: RST_STREAM {payload:?}"),
                0x7 => panic!(":authority {authority:?}: GOAWAY {payload:?}"),
                0x0 if stream == 1 => data.extend_from_slice(&payload),
                0x1 if stream == 1 && h[4] & 0x1 != 0 => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!(":authority {authority:?}: no reply"));
    assert!(data.len() >= 5, ":authority {authority:?}: no message");
    data[5..].to_vec()
}

fn daemon_lifecycle(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start().await;
        // A second berthd on the same root refuses to start, and the first keeps serving.
        let out = node.command().output().unwrap();
        assert!(!out.status.success());
        let log = node.log_text();
        assert!(log.contains("another berthd"), "{log}");
        node.runtime()
            .await
            .version(VersionRequest::default())
            .await
            .unwrap();
        // SIGTERM: clean exit, socket removed.
        let st = node.stop();
        assert!(st.success(), "berthd exit status {st}");
        assert!(!node.socket.exists(), "socket left behind");
        // A stale socket file does not stop a restart.
        std::os::unix::net::UnixListener::bind(&node.socket).unwrap();
        node.spawn().await;
        // A bad config is refused with the key named.
        let bad = node.dir.path().join("bad.toml");
        std::fs::write(&bad, "root = \"relative/dir\"\n").unwrap();
        let out = std::process::Command::new(berth_e2e::node::berthd_binary())
            .arg("--config")
            .arg(&bad)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("root must be an absolute path"));
    });
}

fn pull_busybox_and_inspect(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let bb = &env.set.busybox;
        // Loopback registry: HTTPS is tried first, then plain HTTP, with no configuration.
        let id = pull_ok(&node, &bb.reference()).await;
        assert_eq!(id, bb.image_id());
        let images = list(&node).await;
        assert_eq!(images.len(), 1);
        let img = &images[0];
        assert_eq!(img.id, bb.image_id());
        assert_eq!(img.repo_tags, vec![bb.reference()]);
        assert_eq!(img.repo_digests, vec![bb.digest_reference()]);
        // Every blob, as containerd counts it.
        assert_eq!(img.size, bb.total_size());
        assert!(img.spec.is_none());
        assert!(img.uid.is_none() && img.username.is_empty());

        let st = status(&node, &bb.reference(), true).await;
        assert_eq!(st.image.as_ref().unwrap().id, bb.image_id());
        let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
        assert_eq!(
            info["imageSpec"]["rootfs"]["diff_ids"],
            serde_json::json!(bb.diff_ids)
        );
        assert_eq!(
            info["imageSpec"]["config"]["Cmd"],
            serde_json::json!(["sh"])
        );
        // By id, short id and digest too; an absent image is an empty answer.
        for name in [bb.image_id(), &bb.image_id()[7..19], &bb.digest_reference()] {
            assert!(status(&node, name, false).await.image.is_some(), "{name}");
        }
        let absent = status(&node, &format!("{}/nope:latest", env.reg.addr), false).await;
        assert!(absent.image.is_none() && absent.info.is_empty());

        // ListImages filter.
        let filtered = node
            .images()
            .await
            .list_images(ListImagesRequest {
                filter: Some(ImageFilter {
                    image: spec(&bb.reference()),
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .images;
        assert_eq!(filtered.len(), 1);
        let none = node
            .images()
            .await
            .list_images(ListImagesRequest {
                filter: Some(ImageFilter {
                    image: spec("docker.io/library/nothing:here"),
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .images;
        assert!(none.is_empty());

        // The layer on disk, as the image defines it.
        let fs = snapshot_with(&node, "bin/busybox");
        let m = std::fs::metadata(fs.join("bin/busybox")).unwrap();
        assert_eq!(m.len(), std::fs::metadata("/bin/busybox").unwrap().len());
        assert_eq!(m.mode() & 0o7777, 0o755);
        assert_eq!(
            std::fs::read_link(fs.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(
            std::fs::metadata(fs.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert_eq!(std::fs::metadata(fs.join("home/app")).unwrap().uid(), 1000);
        assert!(
            std::fs::read_to_string(fs.join("etc/passwd"))
                .unwrap()
                .contains("app:x:1000")
        );

        // An image with a User shows it.
        pull_ok(&node, &env.set.user.reference()).await;
        let u = status(&node, &env.set.user.reference(), false)
            .await
            .image
            .unwrap();
        assert_eq!(u.username, "app");
    });
}

fn pull_formats_and_platforms(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let s = &env.set;
        for (img, file, content) in [
            (&s.zstd, "compression", "zstd\n"),
            (&s.plain, "compression", "none\n"),
        ] {
            let id = pull_ok(&node, &img.reference()).await;
            assert_eq!(id, img.image_id());
            let found = snapshot_fs_dirs(&node)
                .into_iter()
                .any(|d| std::fs::read_to_string(d.join(file)).is_ok_and(|c| c == content));
            assert!(found, "{} content not unpacked", img.reference());
        }
        let id = pull_ok(&node, &s.docker_v2.reference()).await;
        assert_eq!(id, s.docker_v2.image_id());
        assert!(snapshot_with(&node, "manifest-flavour").is_dir());
        let id = pull_ok(&node, &s.multilayer.reference()).await;
        assert_eq!(id, s.multilayer.image_id());
        for i in 0..s.multilayer.layer_digests.len() - 1 {
            assert!(snapshot_with(&node, &format!("data/layer-{i}.bin")).is_dir());
        }
        // An index resolves to this host's platform; the repo digest is the index's.
        let host = s.multiarch.for_host();
        let id = pull_ok(&node, &s.multiarch.reference()).await;
        assert_eq!(id, host.image_id());
        let img = status(&node, &s.multiarch.reference(), false)
            .await
            .image
            .unwrap();
        assert_eq!(img.repo_digests, vec![s.multiarch.digest_reference()]);
        assert_eq!(img.size, s.multiarch.size + host.total_size());
        let platform = snapshot_with(&node, "platform");
        assert_eq!(
            std::fs::read_to_string(platform.join("platform")).unwrap(),
            "amd64\n"
        );
        // zstd and plain carry busybox's own diff id: its snapshot is shared, not repeated.
        let busybox_copies = snapshot_fs_dirs(&node)
            .into_iter()
            .filter(|d| d.join("bin/busybox").exists())
            .count();
        assert_eq!(busybox_copies, 1);
    });
}

fn reference_forms_and_shared_config(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let bb = &env.set.busybox;
        // By digest: no tag, the digest recorded.
        let id = pull_ok(&node, &bb.digest_reference()).await;
        assert_eq!(id, bb.image_id());
        let img = status(&node, bb.image_id(), false).await.image.unwrap();
        assert!(img.repo_tags.is_empty());
        assert_eq!(img.repo_digests, vec![bb.digest_reference()]);
        // name:tag@digest: the digest wins, the tag is dropped (as containerd does).
        let both = format!(
            "{}/{}:whatever@{}",
            bb.registry, bb.repository, bb.manifest_digest
        );
        assert_eq!(pull_ok(&node, &both).await, bb.image_id());
        assert!(
            status(&node, bb.image_id(), false)
                .await
                .image
                .unwrap()
                .repo_tags
                .is_empty()
        );
        // By tag: the same image gains the tag.
        pull_ok(&node, &bb.reference()).await;
        let img = status(&node, bb.image_id(), false).await.image.unwrap();
        assert_eq!(img.repo_tags, vec![bb.reference()]);

        // A second manifest with the same config is the same image with both names.
        let manifest = env
            .reg
            .get(
                &format!("/v2/{}/manifests/{}", bb.repository, bb.manifest_digest),
                &[("Accept", &bb.manifest_media_type)],
            )
            .json();
        let mut other = manifest.clone();
        other["annotations"] = serde_json::json!({"org.berth.e2e": "second manifest"});
        let body = serde_json::to_vec(&other).unwrap();
        let pusher = Pusher::for_registry(&env.reg);
        let other_digest = pusher
            .push_manifest_bytes(&bb.repository, "annotated", &bb.manifest_media_type, &body)
            .await;
        let other_ref = format!("{}/{}:annotated", bb.registry, bb.repository);
        let pulled = pull(&node, &other_ref, None).await;
        if let Err(e) = &pulled {
            panic!("pull {other_ref}: {e:?}");
        }
        assert_eq!(pulled.unwrap(), bb.image_id());
        let images = list(&node).await;
        assert_eq!(images.len(), 1);
        let mut tags = images[0].repo_tags.clone();
        tags.sort();
        assert_eq!(tags, {
            let mut t = vec![bb.reference(), other_ref.clone()];
            t.sort();
            t
        });
        assert!(
            images[0]
                .repo_digests
                .contains(&format!("{}/{}@{other_digest}", bb.registry, bb.repository))
        );
    });
}

fn shared_base_stored_once_and_gc(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let (a, b) = (&env.set.shared_a, &env.set.shared_b);
        pull_ok(&node, &a.reference()).await;
        pull_ok(&node, &b.reference()).await;
        assert_eq!(snapshot_fs_dirs(&node).len(), 3, "base + a + b");
        let base_copies = snapshot_fs_dirs(&node)
            .into_iter()
            .filter(|d| d.join("bin/busybox").exists())
            .count();
        assert_eq!(base_copies, 1);
        assert!(blobs(&node).contains(&env.set.base_layer_digest));
        // Removing a keeps the base (b uses it) and drops a's own layer and blobs.
        remove(&node, &a.reference()).await;
        assert_eq!(snapshot_fs_dirs(&node).len(), 2);
        assert!(snapshot_with(&node, "shared-b").is_dir());
        assert!(snapshot_with(&node, "bin/busybox").is_dir());
        let left = blobs(&node);
        assert!(!left.contains(&a.config_digest) && !left.contains(&a.manifest_digest));
        assert!(left.contains(&env.set.base_layer_digest));
        remove(&node, &b.reference()).await;
        assert_empty(&node, "after removing both").await;
    });
}

fn whiteouts_hardlinks_devices(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        pull_ok(&node, &env.set.whiteout.reference()).await;
        let upper = snapshot_with(&node, "data/hl");
        let lower = snapshot_with(&node, "dir/x/old");
        let base = snapshot_with(&node, "bin/busybox");
        // .wh.a → 0/0 character device; .wh..wh..opq → opaque xattr.
        let wh = std::fs::symlink_metadata(upper.join("data/a")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert_eq!(
            xattr_get(&upper.join("dir/x"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert!(!upper.join("data/.wh.a").exists());
        assert!(!upper.join("dir/x/.wh..wh..opq").exists());
        // Hardlink kept as one inode.
        let hl = std::fs::metadata(upper.join("data/hl")).unwrap();
        let b = std::fs::metadata(upper.join("data/b")).unwrap();
        assert_eq!(hl.ino(), b.ino());
        assert_eq!(b.nlink(), 2);
        // Devices, fifo, xattr, setuid.
        let fifo = std::fs::symlink_metadata(upper.join("fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        let dev = std::fs::symlink_metadata(upper.join("dev-null-copy")).unwrap();
        assert!(dev.file_type().is_char_device());
        assert_eq!(dev.rdev(), nix::sys::stat::makedev(1, 3));
        assert_eq!(
            xattr_get(&upper.join("xattr-file"), "user.berth").as_deref(),
            Some(&b"yes"[..])
        );
        let suid = std::fs::metadata(upper.join("setuid-file")).unwrap();
        assert_eq!(suid.mode() & 0o7777, 0o4755);

        // Mounted as overlay lowers, the image looks as it should.
        let mnt = tempfile::tempdir().unwrap();
        let opts = format!(
            "lowerdir={}:{}:{}",
            upper.display(),
            lower.display(),
            base.display()
        );
        nix::mount::mount(
            Some("overlay"),
            mnt.path(),
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(opts.as_str()),
        )
        .expect("overlay mount");
        let view = mnt.path();
        // Unmount even when a check fails.
        let checks = std::panic::catch_unwind(|| {
            assert!(!view.join("data/a").exists(), "whiteout hides data/a");
            assert_eq!(
                std::fs::read_to_string(view.join("data/b")).unwrap(),
                "b-upper\n"
            );
            assert_eq!(
                std::fs::read_to_string(view.join("data/hl")).unwrap(),
                "b-upper\n"
            );
            assert!(!view.join("dir/x/old").exists(), "opaque dir hides old");
            assert!(view.join("dir/x/new").exists());
            assert!(view.join("bin/busybox").exists());
        });
        nix::mount::umount(view).expect("umount");
        if let Err(panic) = checks {
            std::panic::resume_unwind(panic);
        }
    });
}

// lgetxattr(2) through libc.
#[allow(unsafe_code)]
fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let c_name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and buf is valid for buf.len() bytes.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

fn hostile_layers_leave_no_trace(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let s = &env.set;
        for (img, code, needle) in [
            (&s.evil_dotdot, Code::InvalidArgument, "escape"),
            (&s.evil_abs, Code::InvalidArgument, "abs-escape"),
            (&s.evil_symlink, Code::InvalidArgument, "link"),
            (&s.evil_hardlink, Code::InvalidArgument, "etc/passwd"),
            (&s.evil_diffid, Code::FailedPrecondition, "diff id"),
            (&s.corrupt, Code::FailedPrecondition, "sha256"),
        ] {
            let r = pull(&node, &img.reference(), None).await;
            let err = r.expect_err(&format!("{} was accepted", img.reference()));
            assert_eq!(err.code(), code, "{}: {err:?}", img.reference());
            assert!(
                err.message().contains(&img.reference()) && err.message().contains(needle),
                "{}: message {:?}",
                img.reference(),
                err.message()
            );
            assert_empty(&node, &img.reference()).await;
        }
        // Nothing landed outside the layer roots.
        assert!(!Path::new("/abs-escape").exists());
        assert!(!Path::new("/tmp/evil-file").exists());
        let mut stack = vec![node.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for p in dir_entries(&d) {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                assert!(
                    !["escape", "abs-escape", "evil-file"].contains(&name.as_str()),
                    "{} exists",
                    p.display()
                );
                if p.symlink_metadata().unwrap().is_dir() {
                    stack.push(p);
                }
            }
        }
        // A good pull still works afterwards.
        pull_ok(&node, &s.busybox.reference()).await;
    });
}

/// A layer whose PAX header announces a 2 GiB record (a few MB gzipped) is refused from that
/// header: the pull answers INVALID_ARGUMENT naming the record, and nothing stays on the node.
fn huge_layer_metadata_is_refused(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let layer = huge_pax_record_layer();
        assert!(layer.size < 8 << 20, "blob of {} bytes", layer.size);
        let img = Pusher::for_registry(&env.reg)
            .push_image(
                "evil-huge-pax:latest",
                &ImageSpec::new(vec![layer], ImageConfig::default()),
            )
            .await;
        let started = std::time::Instant::now();
        let err = pull(&node, &img.reference(), None)
            .await
            .expect_err("a 2 GiB PAX record was accepted");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(&img.reference())
                && err.message().contains(
                    "PAX extended header of 2147483648 bytes exceeds the limit of 1048576 bytes"
                ),
            "message {:?}",
            err.message()
        );
        // Refused from the header, not after decompressing 2 GiB.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert_empty(&node, &img.reference()).await;
        pull_ok(&node, &env.set.busybox.reference()).await;
    });
}

fn errors_are_precise(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let missing = format!("{}/does-not-exist:latest", env.reg.addr);
        let e = pull(&node, &missing, None).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(e.message().contains(&missing), "{e:?}");
        let missing_tag = format!("{}/busybox:no-such-tag", env.reg.addr);
        let e = pull(&node, &missing_tag, None).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        for bad in ["", "Busy Box", "busybox@sha256:123", "busybox:"] {
            let e = pull(&node, bad, None).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
        }
        let unreachable = format!("127.0.0.1:{}/busybox:latest", free_port());
        let e = pull(&node, &unreachable, None).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(e.message().contains(&unreachable), "{e:?}");
        assert!(e.message().to_lowercase().contains("connect"), "{e:?}");
        // An index without this host's platform.
        let foreign = ImageSpec::new(
            vec![busybox_layer().clone()],
            ImageConfig {
                architecture: "s390x".into(),
                ..Default::default()
            },
        );
        let idx = Pusher::for_registry(&env.reg)
            .push_index("foreign-only:latest", &[foreign], ManifestFlavour::Oci)
            .await;
        let e = pull(&node, &idx.reference(), None).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(e.message().contains("no manifest for linux/"), "{e:?}");
        assert_empty(&node, "after failed pulls").await;
    });
}

fn registry_auth(env: &Env) {
    env.rt.block_on(async {
        let reg = Registry::start(RegistryOpts::with_htpasswd("berth", "s3cret"));
        let set = push_standard_set(&reg).await;
        let image = set.busybox.reference();
        let node = Node::start().await;
        let e = pull(&node, &image, None).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        assert!(e.message().contains(&image));
        let wrong = AuthConfig {
            username: "berth".into(),
            password: "wrong".into(),
            ..Default::default()
        };
        let e = pull(&node, &image, Some(wrong)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert_empty(&node, "after refused pulls").await;
        let right = AuthConfig {
            username: "berth".into(),
            password: "s3cret".into(),
            ..Default::default()
        };
        assert_eq!(
            pull(&node, &image, Some(right)).await.unwrap(),
            set.busybox.image_id()
        );
        // The docker-config `auth` form (base64 "user:password").
        let encoded = AuthConfig {
            auth: berth_e2e::registry::base64(b"berth:s3cret"),
            ..Default::default()
        };
        assert_eq!(
            pull(&node, &set.shared_a.reference(), Some(encoded))
                .await
                .unwrap(),
            set.shared_a.image_id()
        );
    });
}

fn registry_bearer_token_flow(env: &Env) {
    let reg = Registry::start(RegistryOpts::with_token("berth", "t0ken-pass"));
    env.rt.block_on(async {
        let img = push_multilayer(&reg, "bearer:latest", 1, 4096).await;
        let tokens = reg.token_server.as_ref().unwrap();
        let node = Node::start().await;
        // The registry answers 401 with a Bearer challenge; the realm refuses anonymous users.
        let e = pull(&node, &img.reference(), None).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let wrong = AuthConfig {
            username: "berth".into(),
            password: "nope".into(),
            ..Default::default()
        };
        let e = pull(&node, &img.reference(), Some(wrong))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert_empty(&node, "after refused pulls").await;
        // Credentials go to the realm, which hands out a token the registry accepts.
        let before = tokens.request_count();
        let right = AuthConfig {
            username: "berth".into(),
            password: "t0ken-pass".into(),
            ..Default::default()
        };
        assert_eq!(
            pull(&node, &img.reference(), Some(right)).await.unwrap(),
            img.image_id()
        );
        let used: Vec<_> = tokens.requests()[before..].to_vec();
        assert!(
            used.iter().any(|r| r.status == 200
                && r.user.as_deref() == Some("berth")
                && r.scopes
                    .iter()
                    .any(|s| s.contains("repository:bearer:pull"))),
            "token endpoint not used as expected: {used:?}"
        );
        // A registry token from the CRI request is sent as the bearer token itself.
        remove(&node, &img.reference()).await;
        let token = AuthConfig {
            registry_token: tokens.mint("bearer", &["pull"]),
            ..Default::default()
        };
        assert_eq!(
            pull(&node, &img.reference(), Some(token)).await.unwrap(),
            img.image_id()
        );
        let other = AuthConfig {
            registry_token: tokens.mint("someone-else", &["pull"]),
            ..Default::default()
        };
        remove(&node, &img.reference()).await;
        let e = pull(&node, &img.reference(), Some(other))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    });
}

/// Docker Hub's way: every request needs a bearer token, and the realm gives anonymous ones.
fn registry_anonymous_bearer_tokens(env: &Env) {
    let mut opts = berth_e2e::token::TokenAuthOpts::new("hub", "hub-pass");
    opts.allow_anonymous = true;
    let reg = Registry::start(RegistryOpts {
        token: Some(opts),
        ..Default::default()
    });
    env.rt.block_on(async {
        let img = push_multilayer(&reg, "library/public:latest", 2, 4096).await;
        let node = Node::start().await;
        assert_eq!(pull_ok(&node, &img.reference()).await, img.image_id());
        let tokens = reg.token_server.as_ref().unwrap().requests();
        assert!(
            tokens
                .iter()
                .any(|r| r.status == 200 && r.user.is_none() && !r.had_authorization),
            "no anonymous token was issued: {tokens:?}"
        );
    });
}

fn mirrors_plain_http_and_tls_hosts(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        // docker.io through a mirror: the image keeps its own name.
        let dir = node.certs_d.join("docker.io");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"https://registry-1.docker.io\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                env.reg.addr
            ),
        )
        .unwrap();
        let id = pull_ok(&node, "busybox").await;
        assert_eq!(id, env.set.library_busybox.image_id());
        let img = status(&node, "busybox", false).await.image.unwrap();
        assert_eq!(img.repo_tags, vec!["docker.io/library/busybox:latest"]);
        assert_eq!(
            img.repo_digests,
            vec![format!(
                "docker.io/library/busybox@{}",
                env.set.library_busybox.manifest_digest
            )]
        );

        // A plain-HTTP registry on a non-loopback address needs hosts.toml.
        netns::add_address("10.99.0.1/32");
        let far = Registry::start(RegistryOpts {
            bind_ip: "10.99.0.1".into(),
            ..Default::default()
        });
        let far_set = push_multilayer(&far, "far:latest", 1, 1024).await;
        let e = pull(&node, &far_set.reference(), None).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "https only without hosts.toml: {e:?}");
        let far_dir = node.certs_d.join(&far.addr);
        std::fs::create_dir_all(&far_dir).unwrap();
        std::fs::write(
            far_dir.join("hosts.toml"),
            format!("server = \"http://{}\"\n", far.addr),
        )
        .unwrap();
        assert_eq!(pull_ok(&node, &far_set.reference()).await, far_set.image_id());

        // TLS with our own CA: refused unverified, accepted with `ca` or `skip_verify`.
        let tls = Registry::start(RegistryOpts {
            tls: true,
            ..Default::default()
        });
        let tls_img = push_multilayer(&tls, "secure:latest", 1, 1024).await;
        let e = pull(&node, &tls_img.reference(), None).await.unwrap_err();
        assert_ne!(e.code(), Code::Ok);
        let tls_dir = node.certs_d.join(&tls.addr);
        std::fs::create_dir_all(&tls_dir).unwrap();
        std::fs::copy(tls.tls_ca.as_ref().unwrap(), tls_dir.join("ca.pem")).unwrap();
        std::fs::write(
            tls_dir.join("hosts.toml"),
            format!("server = \"https://{}\"\nca = \"ca.pem\"\n", tls.addr),
        )
        .unwrap();
        assert_eq!(pull_ok(&node, &tls_img.reference()).await, tls_img.image_id());
        remove(&node, &tls_img.reference()).await;
        std::fs::write(
            tls_dir.join("hosts.toml"),
            format!("server = \"https://{}\"\nskip_verify = true\n", tls.addr),
        )
        .unwrap();
        assert_eq!(pull_ok(&node, &tls_img.reference()).await, tls_img.image_id());
    });
}

fn concurrent_pulls_fetch_each_blob_once(env: &Env) {
    // A registry of its own: other tests pull the shared base layer concurrently.
    let reg = Registry::start(RegistryOpts {
        access_log: true,
        ..Default::default()
    });
    env.rt.block_on(async {
        let node = Node::start().await;
        let img = push_multilayer(&reg, "concurrent:latest", 4, 512 * 1024).await;
        let before: Vec<usize> = img
            .layer_digests
            .iter()
            .map(|d| reg.count_requests("GET", &format!("/blobs/{d}")))
            .collect();
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(node.images().await);
        }
        let pulls = clients.into_iter().map(|mut c| {
            let reference = img.reference();
            async move {
                c.pull_image(PullImageRequest {
                    image: spec(&reference),
                    auth: None,
                    sandbox_config: None,
                })
                .await
                .map(|r| r.into_inner().image_ref)
            }
        });
        let results = futures_join_all(pulls).await;
        for r in results {
            assert_eq!(r.unwrap(), img.image_id());
        }
        for (d, b) in img.layer_digests.iter().zip(before) {
            let n = reg.count_requests("GET", &format!("/blobs/{d}")) - b;
            assert_eq!(n, 1, "layer {d} fetched {n} times");
        }
        assert_eq!(list(&node).await.len(), 1);
    });
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

fn remove_untag_and_delete(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let bb = &env.set.busybox;
        // Same manifest under a second tag.
        let manifest = env.reg.get(
            &format!("/v2/{}/manifests/{}", bb.repository, bb.manifest_digest),
            &[("Accept", &bb.manifest_media_type)],
        );
        Pusher::for_registry(&env.reg)
            .push_manifest_bytes(
                &bb.repository,
                "alt",
                &bb.manifest_media_type,
                &manifest.body,
            )
            .await;
        let alt = format!("{}/{}:alt", bb.registry, bb.repository);
        pull_ok(&node, &bb.reference()).await;
        pull_ok(&node, &alt).await;
        assert_eq!(list(&node).await[0].repo_tags.len(), 2);
        // By tag while another remains: untag only.
        remove(&node, &alt).await;
        let imgs = list(&node).await;
        assert_eq!(imgs.len(), 1);
        assert_eq!(imgs[0].repo_tags, vec![bb.reference()]);
        assert!(status(&node, &alt, false).await.image.is_none());
        // By digest: the whole image goes, with its layers and blobs.
        remove(&node, &bb.digest_reference()).await;
        assert_empty(&node, "removed by digest").await;
        // By id, and by short id.
        pull_ok(&node, &bb.reference()).await;
        remove(&node, bb.image_id()).await;
        assert_empty(&node, "removed by id").await;
        pull_ok(&node, &bb.reference()).await;
        remove(&node, &bb.image_id()[7..20]).await;
        assert_empty(&node, "removed by short id").await;
        // The last tag deletes; an absent image is not an error.
        pull_ok(&node, &bb.reference()).await;
        remove(&node, &bb.reference()).await;
        assert_empty(&node, "removed by last tag").await;
        remove(&node, &bb.reference()).await;
        let e = node
            .images()
            .await
            .remove_image(RemoveImageRequest { image: spec("") })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    });
}

fn image_fs_info_counts_layers(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let empty = fs_info(&node).await;
        assert_eq!(empty.image_filesystems[0].used_bytes.unwrap().value, 0);
        pull_ok(&node, &env.set.multilayer.reference()).await;
        pull_ok(&node, &env.set.whiteout.reference()).await;
        let r = fs_info(&node).await;
        let fs = &r.image_filesystems[0];
        assert!(fs.timestamp > 0);
        assert_eq!(
            fs.fs_id.as_ref().unwrap().mountpoint,
            node.root.join("snapshots").display().to_string()
        );
        // What is really on disk: regular file bytes (hardlinks once) and objects.
        let (mut bytes, mut inodes) = (0u64, 0u64);
        let mut seen = HashSet::new();
        for root in snapshot_fs_dirs(&node) {
            let mut stack = vec![root];
            while let Some(d) = stack.pop() {
                for p in dir_entries(&d) {
                    let m = p.symlink_metadata().unwrap();
                    if !seen.insert(m.ino()) {
                        continue;
                    }
                    inodes += 1;
                    if m.is_file() {
                        bytes += m.len();
                    }
                    if m.is_dir() {
                        stack.push(p);
                    }
                }
            }
        }
        assert!(bytes > 4 * 256 * 1024);
        assert_eq!(fs.used_bytes.unwrap().value, bytes);
        assert_eq!(fs.inodes_used.unwrap().value, inodes);
    });
}

async fn fs_info(node: &Node) -> ImageFsInfoResponse {
    node.images()
        .await
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn crash_safety_kill9(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start().await;
        let big = push_multilayer(&env.reg, "crash:latest", 6, 4 << 20).await;
        // kill -9 in the middle of a pull.
        let reference = big.reference();
        let pulling = {
            let socket_node = node.images().await;
            let reference = reference.clone();
            tokio::spawn(async move {
                let mut c = socket_node;
                c.pull_image(PullImageRequest {
                    image: spec(&reference),
                    auth: None,
                    sandbox_config: None,
                })
                .await
            })
        };
        let ingest = node.root.join("content/ingest");
        for _ in 0..2000 {
            if !dir_entries(&ingest).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        node.kill9();
        assert!(
            pulling.await.unwrap().is_err(),
            "the pull cannot have finished"
        );
        node.spawn().await;
        assert!(
            list(&node).await.is_empty(),
            "a half-pulled image is listed"
        );
        assert_empty(&node, "after restart").await;
        // Pull again, kill -9 right after: the image survives, usable.
        assert_eq!(pull_ok(&node, &reference).await, big.image_id());
        node.kill9();
        node.spawn().await;
        let imgs = list(&node).await;
        assert_eq!(imgs.len(), 1);
        assert_eq!(imgs[0].repo_tags, vec![reference.clone()]);
        assert_eq!(snapshot_fs_dirs(&node).len(), big.layer_digests.len());
        assert!(snapshot_with(&node, "data/layer-5.bin").is_dir());
        let st = status(&node, &reference, true).await;
        assert!(st.info.contains_key("info"));
        // Pulling it again is a no-op that keeps everything.
        assert_eq!(pull_ok(&node, &reference).await, big.image_id());
        // Graceful restart too.
        assert!(node.stop().success());
        node.spawn().await;
        assert_eq!(list(&node).await.len(), 1);
    });
}

fn metrics_endpoint(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        pull_ok(&node, &env.set.busybox.reference()).await;
        let _ = pull(&node, &format!("{}/missing:1", env.reg.addr), None).await;
        let r = http_request(&node.metrics, None, "GET", "/metrics", &[]).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        let text = r.text();
        for needle in [
            "berth_cri_request_duration_seconds_bucket{code=\"Ok\",method=\"PullImage\"",
            "berth_cri_request_duration_seconds_count{code=\"NotFound\",method=\"PullImage\"} 1",
            "berth_cri_request_errors_total{code=\"NotFound\",method=\"PullImage\"} 1",
            "berth_image_pull_duration_seconds_bucket{result=\"ok\"",
            "berth_layer_unpack_duration_seconds_count 1",
            "berth_image_pull_size_bytes_count 1",
            "# TYPE berth_image_pull_bytes_total counter",
        ] {
            assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
        }
        let bytes_line = text
            .lines()
            .find(|l| l.starts_with("berth_image_pull_bytes_total "))
            .unwrap();
        let pulled: u64 = bytes_line.split(' ').nth(1).unwrap().parse().unwrap();
        let bb = &env.set.busybox;
        assert_eq!(pulled, bb.total_size());
        let r = http_request(&node.metrics, None, "GET", "/other", &[]).unwrap();
        assert_eq!(r.status, 404);
    });
}

fn json_log_format(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start().await;
        assert!(node.stop().success());
        let text = std::fs::read_to_string(&node.config).unwrap();
        std::fs::write(&node.config, format!("log_format = \"json\"\n{text}")).unwrap();
        // The log file grows across restarts: only what the restarted berthd wrote.
        let text_part = node.log_text().len();
        node.spawn().await;
        pull_ok(&node, &env.set.busybox.reference()).await;
        let log = node.log_text()[text_part..].to_string();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let pulled = lines
            .iter()
            .find(|v| v["fields"]["message"] == "image pulled")
            .unwrap_or_else(|| panic!("no pull logged:\n{log}"));
        assert_eq!(pulled["fields"]["id"], env.set.busybox.image_id());
        assert_eq!(pulled["level"], "INFO");
    });
}

/// One `Images.Pull` stream of berth's own API, to its end: the messages, then the error if
/// the stream ended with one.
async fn api_pull(socket: &Path, image: &str) -> (Vec<api::PullProgress>, Option<tonic::Status>) {
    let channel = berth_e2e::node::cri_channel(socket)
        .await
        .expect("connecting to berthd");
    let mut stream = match api::images_client::ImagesClient::new(channel)
        .pull(api::PullRequest {
            image: image.to_string(),
            auth: None,
        })
        .await
    {
        Ok(s) => s.into_inner(),
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => return (messages, None),
            Err(e) => return (messages, Some(e)),
        }
    }
}

/// The value of the metric line starting with `prefix` (name and labels), if present.
fn metric_value(node: &Node, prefix: &str) -> Option<f64> {
    let r = http_request(&node.metrics, None, "GET", "/metrics", &[]).unwrap();
    r.text()
        .lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l[prefix.len() + 1..].parse().ok())
}

fn pull_progress_api(env: &Env) {
    use api::LayerState;
    // 1 MiB/s per connection: the pull of three 2 MiB layers takes seconds, long enough to
    // watch it.
    let proxy = berth_e2e::slow_proxy::SlowProxy::start(&env.reg.addr, 1 << 20);
    env.rt.block_on(async {
        let node = Node::start().await;
        let img = push_multilayer(&env.reg, "progress:latest", 3, 2 << 20).await;
        let reference = format!("{}/{}:{}", proxy.addr, img.repository, img.tag);
        let fetches = |d: &String| env.reg.count_requests("GET", &format!("/blobs/{d}"));
        let before: Vec<usize> = img.layer_digests.iter().map(fetches).collect();
        let first = tokio::spawn({
            let (socket, reference) = (node.socket.clone(), reference.clone());
            async move { api_pull(&socket, &reference).await }
        });
        // While it runs: the pull is in the metrics with its bytes so far.
        let bytes_metric = format!("berth_image_pull_progress_bytes{{image=\"{reference}\"}}");
        let mut seen = None;
        for _ in 0..400 {
            let running = metric_value(&node, "berth_image_pull_in_progress");
            let bytes = metric_value(&node, &bytes_metric);
            if running == Some(1.0) && bytes.is_some_and(|b| b > 0.0) {
                seen = bytes;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let seen = seen.unwrap_or_else(|| panic!("no pull in the metrics:\n{}", node.log_text()));
        assert!(
            seen < img.compressed_size as f64,
            "the pull was over already"
        );
        // A second client joins the running pull: its first message has the bytes so far.
        let (joined, joined_err) = api_pull(&node.socket, &reference).await;
        let (messages, err) = first.await.unwrap();
        assert!(err.is_none(), "{err:?}\n{}", node.log_text());
        assert!(joined_err.is_none(), "{joined_err:?}");
        let done_of = |m: &api::PullProgress| m.layers.iter().map(|l| l.done_bytes).sum::<u64>();
        assert!(
            done_of(&joined[0]) > 0,
            "the second client started another pull"
        );

        // Per layer: the manifest's digests and sizes, bytes that only grow, downloading on
        // the way (with part of the bytes), done at the end.
        let last = messages.last().unwrap();
        let digests: Vec<&String> = last.layers.iter().map(|l| &l.digest).collect();
        assert_eq!(digests, img.layer_digests.iter().collect::<Vec<_>>());
        for (i, size) in img.layer_sizes.iter().enumerate() {
            let seq: Vec<&api::LayerProgress> =
                messages.iter().filter_map(|m| m.layers.get(i)).collect();
            assert!(seq.iter().all(|l| l.total_bytes == *size));
            assert!(
                seq.windows(2).all(|w| w[0].done_bytes <= w[1].done_bytes),
                "layer {i}: bytes went back"
            );
            assert!(
                seq.iter().any(|l| l.state() == LayerState::Downloading
                    && l.done_bytes > 0
                    && l.done_bytes < *size),
                "layer {i} never seen downloading: {seq:?}"
            );
            let end = seq.last().unwrap();
            assert_eq!((end.state(), end.done_bytes), (LayerState::Done, *size));
        }
        assert!(
            messages[..messages.len() - 1]
                .iter()
                .all(|m| m.result.is_none())
        );
        let result = last
            .result
            .clone()
            .expect("the last message has the result");
        assert_eq!(result.image_ref, img.image_id());
        assert!(result.downloaded);
        assert_eq!(result.downloaded_bytes, img.compressed_size);
        assert_eq!(joined.last().unwrap().result, Some(result));
        // One download per layer for both clients. The first layer is the busybox base every
        // test image shares, and other tests pull it from this registry at the same time: only
        // this image's own layers are counted.
        for (d, b) in img.layer_digests.iter().zip(before).skip(1) {
            assert_eq!(fetches(d) - b, 1, "layer {d}");
        }
        // Over: out of the metrics.
        assert_eq!(
            metric_value(&node, "berth_image_pull_in_progress"),
            Some(0.0)
        );
        assert_eq!(metric_value(&node, &bytes_metric), None);

        // Again: every layer is present, nothing is downloaded.
        let (again, err) = api_pull(&node.socket, &reference).await;
        assert!(err.is_none(), "{err:?}");
        let last = again.last().unwrap();
        assert!(
            last.layers
                .iter()
                .all(|l| l.state() == LayerState::AlreadyPresent && l.done_bytes == 0),
            "{last:?}"
        );
        let result = last.result.clone().unwrap();
        assert_eq!(result.image_ref, img.image_id());
        assert!(!result.downloaded);
        assert_eq!(result.downloaded_bytes, 0);
        assert_eq!(list(&node).await.len(), 1);

        // A failed pull ends the stream with CRI's code.
        let (_, err) = api_pull(&node.socket, &format!("{}/missing:1", env.reg.addr)).await;
        assert_eq!(err.map(|e| e.code()), Some(Code::NotFound));
        let (_, err) = api_pull(&node.socket, "no spaces allowed").await;
        assert_eq!(err.map(|e| e.code()), Some(Code::InvalidArgument));
    });
}

fn berth_cli(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let cli = |args: &[&str]| {
            let out = std::process::Command::new(berth_e2e::node::berth_cli_binary())
                .arg("--address")
                .arg(format!("unix://{}", node.socket.display()))
                .args(args)
                .output()
                .expect("running berth");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        };
        let bb = &env.set.busybox;
        let (ok, out, _) = cli(&["version"]);
        assert!(ok && out.contains("RuntimeName:  berth"), "{out}");
        let (ok, out, err) = cli(&["pull", &bb.reference()]);
        assert!(ok && out.contains(bb.image_id()), "{out}{err}");
        // Progress through berth's own API: a line per layer, then what happened.
        let short = &bb.layer_digests[0]["sha256:".len()..][..12];
        assert!(out.contains(&format!("{short}: Pull complete")), "{out}");
        assert!(
            out.contains(&format!("Downloaded newer image for {}", bb.reference())),
            "{out}"
        );
        let (ok, out, err) = cli(&["pull", &bb.reference()]);
        assert!(
            ok && out.contains(&format!("{short}: Already exists")),
            "{out}{err}"
        );
        assert!(
            out.contains(&format!("Image is up to date for {}", bb.reference())),
            "{out}"
        );
        let (ok, out, _) = cli(&["images"]);
        assert!(ok && out.contains(&bb.image_id()[7..20]), "{out}");
        let (ok, out, _) = cli(&["inspecti", &bb.reference()]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspecti JSON");
        assert!(ok);
        assert_eq!(v["status"]["id"], bb.image_id());
        assert_eq!(v["info"]["imageSpec"]["os"], "linux");
        let (ok, out, _) = cli(&["imagefsinfo"]);
        assert!(ok && out.contains("image_filesystems"), "{out}");
        let (ok, out, _) = cli(&["info"]);
        assert!(ok && out.contains("RuntimeReady"), "{out}");
        let (ok, _, _) = cli(&["rmi", &bb.reference()]);
        assert!(ok);
        let (ok, _, err) = cli(&["rmi", &bb.reference()]);
        assert!(!ok && err.contains("no such image"), "{err}");
        let (ok, _, err) = cli(&["pull", "Bad Ref"]);
        assert!(!ok && err.contains("InvalidArgument"), "{err}");
        let pod = run_pod(&node, pod_config("clipod", NamespaceMode::Pod))
            .await
            .unwrap();
        let (ok, out, _) = cli(&["pods"]);
        assert!(
            ok && out.contains("clipod") && out.contains(&pod[..13]),
            "{out}"
        );
        let (ok, out, _) = cli(&["ps", "-a"]);
        assert!(ok && out.starts_with("CONTAINER"), "{out}");
        let (ok, _, err) = cli(&["rmp", &pod[..13]]);
        assert!(ok, "{err}");
        let (ok, out, _) = cli(&["pods"]);
        assert!(ok && !out.contains("clipod"), "{out}");
    });
}

fn nsfs_mounts(node: &Node) -> Vec<PathBuf> {
    berth_e2e::node::mounts_under(&node.state.join("ns"))
}

fn sandbox_lifecycle(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let mut rt = node.runtime().await;
        let id = run_pod(&node, pod_config("web", NamespaceMode::Pod))
            .await
            .unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        // Its IPC namespace is pinned and is not the host's.
        let pin = node.state.join("ns").join(&id).join("ipc");
        let host_ipc = std::fs::metadata("/proc/self/ns/ipc").unwrap().ino();
        assert_ne!(std::fs::metadata(&pin).unwrap().ino(), host_ipc);
        assert_eq!(nsfs_mounts(&node), vec![pin.clone()]);
        // Its /dev/shm, for its containers to share.
        assert_eq!(
            berth_e2e::node::mounts_under(&node.state.join("shm")),
            vec![node.state.join("shm").join(&id)]
        );

        // Same metadata while it exists: ALREADY_EXISTS, nothing new pinned.
        let e = run_pod(&node, pod_config("web", NamespaceMode::Pod))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
        assert_eq!(nsfs_mounts(&node).len(), 1);
        // Bad requests are refused with precise codes and leave no trace.
        let mut no_meta = pod_config("x", NamespaceMode::Pod);
        no_meta.metadata = None;
        assert_eq!(
            run_pod(&node, no_meta).await.unwrap_err().code(),
            Code::InvalidArgument
        );
        let mut pod_net = pod_config("x", NamespaceMode::Pod);
        pod_net
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options
            .as_mut()
            .unwrap()
            .network = NamespaceMode::Pod as i32;
        // A pod network without any CNI config: refused, and nothing is made.
        assert_eq!(
            run_pod(&node, pod_net).await.unwrap_err().code(),
            Code::FailedPrecondition
        );
        let e = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("x", NamespaceMode::Pod)),
                runtime_handler: "no-such-handler".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(list_pods(&node, None).await.len(), 1);
        assert_eq!(dir_entries(&node.state.join("ns")).len(), 1);

        // The named handler a RuntimeClass uses (deploy/runtimeclass.yaml) runs the same runtime.
        let named = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("named-handler", NamespaceMode::Node)),
                runtime_handler: "berth".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let st = pod_status(&node, &named).await.unwrap().status.unwrap();
        assert_eq!(st.runtime_handler, "berth");
        assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: named.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: named,
        })
        .await
        .unwrap();
        assert_eq!(list_pods(&node, None).await.len(), 1);

        // hostIPC: no pin at all.
        let host_ipc_pod = run_pod(&node, pod_config("hostipc", NamespaceMode::Node))
            .await
            .unwrap();
        assert!(dir_entries(&node.state.join("ns").join(&host_ipc_pod)).is_empty());

        // Status, by full and short id.
        for q in [&id[..], &id[..12]] {
            let st = pod_status(&node, q).await.unwrap();
            let s = st.status.unwrap();
            assert_eq!(s.id, id);
            assert_eq!(s.state, PodSandboxState::SandboxReady as i32);
            assert_eq!(s.metadata.unwrap().name, "web");
            assert_eq!(s.labels["app"], "web");
            assert_eq!(s.annotations["note"], "e2e");
            let opts = s.linux.unwrap().namespaces.unwrap().options.unwrap();
            assert_eq!(opts.network, NamespaceMode::Node as i32);
            assert!(s.created_at > 0);
            assert!(st.info["info"].contains("\"runtimeHandler\""));
        }
        // List filters: id prefix, state, labels.
        assert_eq!(list_pods(&node, None).await.len(), 2);
        let by_id = list_pods(
            &node,
            Some(PodSandboxFilter {
                id: id[..10].into(),
                ..Default::default()
            }),
        )
        .await;
        assert_eq!(by_id.len(), 1);
        assert_eq!(by_id[0].id, id);
        let by_label = list_pods(
            &node,
            Some(PodSandboxFilter {
                label_selector: [("app".to_string(), "hostipc".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
        )
        .await;
        assert_eq!(by_label.len(), 1);
        assert_eq!(by_label[0].id, host_ipc_pod);

        // Stop: NOTREADY, namespaces released; again: a no-op.
        for _ in 0..2 {
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
        }
        let s = pod_status(&node, &id).await.unwrap().status.unwrap();
        assert_eq!(s.state, PodSandboxState::SandboxNotready as i32);
        assert!(
            berth_e2e::node::mounts_under(&node.state).is_empty(),
            "pins or shm left"
        );
        let not_ready = list_pods(
            &node,
            Some(PodSandboxFilter {
                state: Some(PodSandboxStateValue {
                    state: PodSandboxState::SandboxNotready as i32,
                }),
                ..Default::default()
            }),
        )
        .await;
        assert_eq!(not_ready.len(), 1);
        // Remove (twice), unknown ids.
        for _ in 0..2 {
            rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
        }
        assert_eq!(
            pod_status(&node, &id).await.unwrap_err().code(),
            Code::NotFound
        );
        // Stopping an unknown pod or container is a no-op (idempotent, as critest expects);
        // an empty id is malformed.
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: "f".repeat(64),
        })
        .await
        .unwrap();
        rt.stop_container(StopContainerRequest {
            container_id: "f".repeat(64),
            timeout: 0,
        })
        .await
        .unwrap();
        let e = rt
            .stop_pod_sandbox(StopPodSandboxRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = rt
            .stop_container(StopContainerRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        // The name is free again.
        let again = run_pod(&node, pod_config("web", NamespaceMode::Pod))
            .await
            .unwrap();
        assert_ne!(again, id);
        // Remove a READY pod directly: everything goes.
        for p in [again, host_ipc_pod] {
            rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: p })
                .await
                .unwrap();
        }
        assert!(list_pods(&node, None).await.is_empty());
        assert!(nsfs_mounts(&node).is_empty());
        assert!(dir_entries(&node.state.join("ns")).is_empty());
    });
}

fn sandbox_recovery(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start().await;
        let id = run_pod(&node, pod_config("keep", NamespaceMode::Pod))
            .await
            .unwrap();
        let pin = node.state.join("ns").join(&id).join("ipc");
        let ino = std::fs::metadata(&pin).unwrap().ino();
        // kill -9: the pod and its namespace survive untouched.
        node.kill9();
        node.spawn().await;
        let s = pod_status(&node, &id).await.unwrap().status.unwrap();
        assert_eq!(s.state, PodSandboxState::SandboxReady as i32);
        assert_eq!(std::fs::metadata(&pin).unwrap().ino(), ino);
        let e = run_pod(&node, pod_config("keep", NamespaceMode::Pod))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists);
        // A "reboot": berthd down, the state dir (tmpfs) emptied. The pod is NOTREADY, not lost.
        assert!(node.stop().success());
        for m in berth_e2e::node::mounts_under(&node.state) {
            nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH).unwrap();
        }
        std::fs::remove_dir_all(&node.state).unwrap();
        node.spawn().await;
        let s = pod_status(&node, &id).await.unwrap().status.unwrap();
        assert_eq!(s.state, PodSandboxState::SandboxNotready as i32);
        node.runtime()
            .await
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
        assert!(list_pods(&node, None).await.is_empty());
        assert!(nsfs_mounts(&node).is_empty());
    });
}

fn create_container_failures_leave_no_trace(env: &Env) {
    env.rt.block_on(async {
        // A shim that dies without its handshake: creation must fail and undo every step.
        let node = Node::start_with_env(&[("BERTH_SHIM", "/bin/false")]).await;
        let bb = &env.set.busybox;
        pull_ok(&node, &bb.reference()).await;
        let pod = run_pod(&node, pod_config("c", NamespaceMode::Pod))
            .await
            .unwrap();
        let ok_config = container_config("app", &bb.reference(), &["sh", "-c", "true"]);
        let e = create_container(&node, &"f".repeat(64), ok_config.clone())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let missing = container_config("app", "docker.io/library/nothing:1", &["true"]);
        let e = create_container(&node, &pod, missing).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let mut no_meta = ok_config.clone();
        no_meta.metadata = None;
        let e = create_container(&node, &pod, no_meta).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        // A log path that would leave the pod's log directory (issue 12): refused before
        // anything is made.
        for escape in [
            "/var/tmp/berth-e2e-escape.log",
            "../../berth-e2e-escape.log",
        ] {
            let mut bad_log = ok_config.clone();
            bad_log.log_path = escape.into();
            let e = create_container(&node, &pod, bad_log).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{escape}: {e:?}");
            assert!(e.message().contains("log_path"), "{e:?}");
        }
        // An AppArmor profile that is not loaded (or a host without AppArmor): refused.
        let mut unloaded = ok_config.clone();
        unloaded.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                apparmor: Some(SecurityProfile {
                    profile_type: security_profile::ProfileType::Localhost as i32,
                    localhost_ref: "berth-e2e-not-loaded".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = create_container(&node, &pod, unloaded).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("apparmor profile"), "{e:?}");
        let mut bad_cap = ok_config.clone();
        bad_cap.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: vec!["CAP_FLY".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = create_container(&node, &pod, bad_cap).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("CAP_FLY"), "{e:?}");
        let e = create_container(&node, &pod, ok_config.clone())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Internal, "{e:?}");
        assert!(e.message().contains("handshake"), "{e:?}");
        // Nothing is left: no record, rootfs mount, bundle or shim dir; the name is free.
        let list = node
            .runtime()
            .await
            .list_containers(ListContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert!(list.is_empty(), "{list:?}");
        assert!(dir_entries(&node.root.join("containers")).is_empty());
        assert!(dir_entries(&node.state.join("shims")).is_empty());
        assert!(
            berth_e2e::node::mounts_under(&node.root).is_empty(),
            "{:?}",
            berth_e2e::node::mounts_under(&node.root)
        );
        // The image is not in use by anything now: it can go, layers and all.
        remove(&node, &bb.reference()).await;
        assert_empty(&node, "after removing the image").await;
    });
}

/// A container whose command exists but cannot run (found by `make fuzz-cri`): StartContainer
/// answers InvalidArgument (the request's to fix, as a missing command at create), not
/// Internal, and the container is exited with the reason in its message.
fn start_of_a_command_that_cannot_run(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let pod = run_pod(&node, pod_config("noexec", NamespaceMode::Pod))
            .await
            .unwrap();
        let id = create_container(&node, &pod, container_config("app", &bb, &["/etc/passwd"]))
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e:?}"));
        let e = node
            .runtime()
            .await
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("permission denied"), "{e:?}");
        let st = wait_exited(&node, &id).await;
        assert!(st.message.contains("permission denied"), "{st:?}");
        let mut rt = node.runtime().await;
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
    });
}

/// Input no process can take, found by `make fuzz-cri`: refused with InvalidArgument, not
/// Internal, and nothing is left of the refused pod.
fn pod_input_no_process_can_take(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let _net = install_network(&node);
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        // A NUL in the name of a pod with a pod network: CNI_ARGS (an environment variable)
        // cannot carry it.
        let mut cfg = net_pod("nul", &node);
        cfg.metadata.as_mut().unwrap().name = "nul\0byte".into();
        let e = run_pod(&node, cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(list_pods(&node, None).await.is_empty());
        // A pod whose log directory is a file: its containers' logs cannot go there.
        let mut cfg = pod_config("logfile", NamespaceMode::Pod);
        cfg.log_directory = "/dev/null".into();
        let pod = run_pod(&node, cfg).await.unwrap();
        let e = create_container(&node, &pod, container_config("app", &bb, &["true"]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("log directory"), "{e:?}");
        let mut rt = node.runtime().await;
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
    });
}

/// An error quoting a huge request field still reaches the client (found by `make fuzz-cri`):
/// its message is cut so the status fits HTTP/2's header limits, berthd's own and the shim's.
fn huge_fields_keep_their_answers(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let huge = "x".repeat(64 * 1024);
        let mut cfg = pod_config("huge", NamespaceMode::Pod);
        cfg.hostname = huge.clone();
        let e = run_pod(&node, cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("hostname"), "{e:?}");
        let pod = run_pod(&node, pod_config("huge", NamespaceMode::Pod))
            .await
            .unwrap();
        let id = create_container(&node, &pod, container_config("app", &bb, &[huge.as_str()]))
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e:?}"));
        let e = node
            .runtime()
            .await
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let mut rt = node.runtime().await;
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
    });
}

fn containers_run_exit_and_log(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        let bb = &env.set.busybox;
        pull_ok(&node, &bb.reference()).await;
        let mut pod_cfg = pod_config("run", NamespaceMode::Pod);
        pod_cfg.log_directory = node.dir.path().join("logs").display().to_string();
        let pod = run_pod(&node, pod_cfg).await.unwrap();

        let (st, log) = run_script(&node, &pod, "ok", &bb.reference(), "echo hello; echo oops >&2", |_| {}).await;
        assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
        let recs = log_contents(&log);
        assert!(recs.contains(&("stdout".into(), "F".into(), "hello".into())), "{log}");
        assert!(recs.contains(&("stderr".into(), "F".into(), "oops".into())), "{log}");
        assert!(st.started_at > 0 && st.finished_at >= st.started_at);

        let (st, _) = run_script(&node, &pod, "seven", &bb.reference(), "exit 7", |_| {}).await;
        assert_eq!((st.exit_code, st.reason.as_str()), (7, "Error"));

        // A 20,000-character line: partial records, then the final one.
        let (_, log) = run_script(&node, &pod, "long", &bb.reference(), "head -c 20000 /dev/zero | tr '\\0' x; echo", |_| {}).await;
        let recs = log_contents(&log);
        assert!(recs.len() >= 2 && recs[..recs.len() - 1].iter().all(|r| r.1 == "P"), "{recs:?}");
        assert_eq!(recs.last().unwrap().1, "F");
        assert_eq!(recs.iter().map(|r| r.2.len()).sum::<usize>(), 20000);

        // Identity, capabilities, masked and read-only paths, PID 1.
        let (_, log) = run_script(&node, &pod, "ids", &bb.reference(),
            "id -u; id -G; grep CapEff /proc/self/status; cat /proc/timer_list | wc -c; echo $$; touch /x && echo rw", |c| {
                c.linux = Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        readonly_rootfs: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }).await;
        let out: Vec<String> = log_contents(&log).into_iter().filter(|r| r.0 == "stdout").map(|r| r.2).collect();
        assert_eq!(out[0], "0");
        assert!(out[2].ends_with("00000000a80425fb"), "{out:?}");
        assert_eq!(out[3], "0", "/proc/timer_list is masked");
        assert_eq!(out[4], "1", "the command is PID 1");
        assert!(!out.contains(&"rw".to_string()), "readonly rootfs was writable");
        pull_ok(&node, &env.set.user.reference()).await;
        let (_, log) = run_script(&node, &pod, "app", &env.set.user.reference(), "id -u; id -g; id -G", |_| {}).await;
        let out: Vec<String> = log_contents(&log).into_iter().map(|r| r.2).collect();
        assert_eq!(out, vec!["1000", "1000", "1000 2000"], "{log}");

        // Seccomp through CRI: RuntimeDefault → mode 2 and no mount; Unconfined → mode 0.
        for (kind, mode) in [
            (security_profile::ProfileType::RuntimeDefault, "2"),
            (security_profile::ProfileType::Unconfined, "0"),
        ] {
            let (_, log) = run_script(
                &node,
                &pod,
                &format!("seccomp{mode}"),
                &bb.reference(),
                "grep Seccomp: /proc/self/status | tr -d '\\t'",
                |c| {
                    c.linux = Some(LinuxContainerConfig {
                        security_context: Some(LinuxContainerSecurityContext {
                            seccomp: Some(SecurityProfile {
                                profile_type: kind as i32,
                                localhost_ref: String::new(),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                },
            )
            .await;
            let out: Vec<String> = log_contents(&log).into_iter().map(|r| r.2).collect();
            assert_eq!(out, vec![format!("Seccomp:{mode}")], "{log}");
        }

        // Stop: SIGTERM → 143, SIGKILL after the timeout → 137.
        let mut rt = node.runtime().await;
        for (name, script, timeout, code) in [
            ("term", "trap 'exit 143' TERM; while true; do sleep 0.1; done", 10, 143),
            ("kill", "trap '' TERM; sleep 100 & wait", 1, 137),
        ] {
            let id = create_container(&node, &pod, container_config(name, &bb.reference(), &["sh", "-c", script])).await.unwrap();
            start_container(&node, &id).await;
            rt.stop_container(StopContainerRequest { container_id: id.clone(), timeout }).await.unwrap();
            let st = container_status(&node, &id).await;
            assert_eq!(st.exit_code, code, "{name}");
        }

        // The images go while their containers exist: the layers stay until the containers go.
        remove(&node, &bb.reference()).await;
        remove(&node, &env.set.user.reference()).await;
        assert!(list(&node).await.is_empty());
        assert_eq!(snapshot_fs_dirs(&node).len(), 1, "the containers' layer is kept");

        // Remove the pod: containers, shims, mounts, and now the layers all go.
        rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
        let left = rt.list_containers(ListContainersRequest { filter: None }).await.unwrap().into_inner().containers;
        assert!(left.is_empty());
        assert_empty(&node, "after the last container of removed images").await;
        assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
        assert!(dir_entries(&node.state.join("shims")).is_empty());
        assert!(dir_entries(&node.root.join("containers")).is_empty());
        // Shims exit on Shutdown (a zombie has no command line and is not counted).
        for _ in 0..100 {
            if berth_e2e::node::shims_of(node.dir.path()).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(berth_e2e::node::shims_of(node.dir.path()).is_empty());
    });
}

fn containers_survive_berthd_kill9(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start().await;
        let bb = &env.set.busybox;
        pull_ok(&node, &bb.reference()).await;
        let mut pod_cfg = pod_config("crash", NamespaceMode::Pod);
        pod_cfg.log_directory = node.dir.path().join("logs").display().to_string();
        let pod = run_pod(&node, pod_cfg).await.unwrap();
        let long = create_container(
            &node,
            &pod,
            container_config("long", &bb.reference(), &["sleep", "100"]),
        )
        .await
        .unwrap();
        let short = create_container(
            &node,
            &pod,
            container_config(
                "short",
                &bb.reference(),
                &["sh", "-c", "sleep 1; echo bye; exit 3"],
            ),
        )
        .await
        .unwrap();
        start_container(&node, &long).await;
        start_container(&node, &short).await;
        let before = node
            .runtime()
            .await
            .container_status(ContainerStatusRequest {
                container_id: long.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        // kill -9 berthd; the short container exits while it is down.
        node.kill9();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        node.spawn().await;
        let st = container_status(&node, &long).await;
        assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
        let after = node
            .runtime()
            .await
            .container_status(ContainerStatusRequest {
                container_id: long.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(before.info["info"], after.info["info"], "same process");
        let st = container_status(&node, &short).await;
        assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
        assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
        assert!(st.finished_at > st.started_at);
        let log = std::fs::read_to_string(&st.log_path).unwrap();
        assert!(log.contains(" stdout F bye"), "{log}");
        // The survivor is still under berthd's control.
        node.runtime()
            .await
            .stop_container(StopContainerRequest {
                container_id: long.clone(),
                timeout: 1,
            })
            .await
            .unwrap();
        assert_eq!(container_status(&node, &long).await.exit_code, 137);
        let mut rt = node.runtime().await;
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
        assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
        assert!(dir_entries(&node.state.join("shims")).is_empty());
    });
}

/// The cgroup directories named `name` at the root of every mounted hierarchy but cpuset (the
/// v2 root on a unified host), created.
fn unit_cgroup(name: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies: Vec<PathBuf> = Vec::new();
    if root.join("cgroup.procs").exists() {
        hierarchies.push(root.to_path_buf());
    } else {
        for h in dir_entries(root) {
            let Ok(real) = h.canonicalize() else { continue };
            if real.join("cgroup.procs").exists()
                && !real.join("cpuset.cpus").exists()
                && !hierarchies.contains(&real)
            {
                hierarchies.push(real);
            }
        }
    }
    let dirs: Vec<PathBuf> = hierarchies.iter().map(|h| h.join(name)).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    dirs
}

/// A test's stand-in for a unit's cgroup, removed when the test ends (once empty).
struct UnitCgroup(Vec<PathBuf>);

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        for d in &self.0 {
            if let Err(e) = std::fs::remove_dir(d) {
                eprintln!("cgroup {} left behind: {e}", d.display());
            }
        }
    }
}

/// The cgroup paths of `pid`, one per hierarchy (`/proc/<pid>/cgroup`).
fn cgroup_lines(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Shims and pod-inits leave berthd's cgroup (issue 13 item 1): berthd runs in a cgroup of its
/// own, as in a systemd unit; everything in it is SIGKILLed, as `systemctl stop` does under
/// `KillMode=control-group`; the container keeps running with the same pid and is still
/// berthd's once it is back; removing the pod leaves no cgroup of the helpers.
fn shims_leave_berthd_cgroup(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start().await;
        let unit = format!("berth-e2e-unit-{}", std::process::id());
        let unit_dirs = UnitCgroup(unit_cgroup(&unit));
        let unit_dirs = &unit_dirs.0;
        let berthd = node.pid() as i32;
        for d in unit_dirs {
            std::fs::write(d.join("cgroup.procs"), berthd.to_string()).unwrap();
        }
        assert!(
            cgroup_lines(berthd).iter().any(|l| l.ends_with(&unit)),
            "berthd is in the unit's cgroup"
        );
        let bb = &env.set.busybox;
        pull_ok(&node, &bb.reference()).await;
        let mut pod_cfg = pod_config("unit", NamespaceMode::Pod);
        pod_cfg.log_directory = node.dir.path().join("logs").display().to_string();
        // A pod PID namespace: berthd starts its pod-init too.
        if let Some(ns) = pod_cfg
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|c| c.namespace_options.as_mut())
        {
            ns.pid = NamespaceMode::Pod as i32;
        }
        let pod = run_pod(&node, pod_cfg).await.unwrap();
        let id = &create_container(
            &node,
            &pod,
            container_config("long", &bb.reference(), &["sleep", "100"]),
        )
        .await
        .unwrap();
        start_container(&node, id).await;
        let info = node
            .runtime()
            .await
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
            .info["info"]
            .clone();
        let pid: i32 = serde_json::from_str::<serde_json::Value>(&info).unwrap()["pid"]
            .as_i64()
            .unwrap() as i32;
        let dir = node.dir.path().display().to_string();
        let shims = berth_e2e::node::shims_of(node.dir.path());
        let pod_inits = berth_e2e::node::pids_with_cmdline(&["berth-shim", "pod-init", &dir]);
        assert_eq!((shims.len(), pod_inits.len()), (2, 1), "{shims:?}");
        for helper in shims.iter().chain(&pod_inits) {
            let lines = cgroup_lines(*helper);
            assert!(
                !lines.is_empty() && lines.iter().all(|l| !l.ends_with(&unit)),
                "helper {helper} is still in berthd's cgroup: {lines:?}"
            );
        }
        // `systemctl stop` with KillMode=control-group: SIGKILL all the unit holds.
        let procs = std::fs::read_to_string(unit_dirs[0].join("cgroup.procs")).unwrap();
        let procs: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
        assert_eq!(procs, vec![berthd], "only berthd is in its unit");
        node.kill9();
        assert!(
            !process_gone(pid),
            "the container died with berthd's cgroup"
        );
        node.spawn().await;
        let st = container_status(&node, id).await;
        assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
        let mut rt = node.runtime().await;
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        wait_gone(pid, "the container").await;
        // No helper cgroup of this pod is left, in any hierarchy.
        let names = [id.clone(), format!("pod-{pod}")];
        let mut left = Vec::new();
        for h in dir_entries(Path::new("/sys/fs/cgroup"))
            .into_iter()
            .chain([PathBuf::from("/sys/fs/cgroup")])
        {
            for n in &names {
                let d = h.join("berth-shims").join(n);
                if d.exists() {
                    left.push(d);
                }
            }
        }
        assert!(left.is_empty(), "helper cgroups left: {left:?}");
    });
}

/// No node-wide lock is held across shim I/O (issue 12 item 5): while the removal of one
/// container waits on its stopped shim, another container is created at once.
fn a_hung_removal_does_not_block_other_creates(env: &Env) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    env.rt.block_on(async {
        let node = Node::start().await;
        let bb = &env.set.busybox;
        pull_ok(&node, &bb.reference()).await;
        let mut pod_cfg = pod_config("hung", NamespaceMode::Pod);
        pod_cfg.log_directory = node.dir.path().join("logs").display().to_string();
        let pod = run_pod(&node, pod_cfg).await.unwrap();
        let a = create_container(
            &node,
            &pod,
            container_config("a", &bb.reference(), &["sleep", "100"]),
        )
        .await
        .unwrap();
        start_container(&node, &a).await;
        let shims = berth_e2e::node::pids_with_cmdline(&["berth-shim", &a]);
        assert!(!shims.is_empty(), "the shim of {a}");
        for &pid in &shims {
            kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        }
        let removal = {
            let mut rt = node.runtime().await;
            let a = a.clone();
            tokio::spawn(async move {
                rt.remove_container(RemoveContainerRequest { container_id: a })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut req = tonic::Request::new(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("b", &bb.reference(), &["sleep", "100"])),
            sandbox_config: None,
        });
        req.set_timeout(Duration::from_secs(3));
        let created = node.runtime().await.create_container(req).await;
        for &pid in &shims {
            kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
        }
        let b = created
            .unwrap_or_else(|e| panic!("CreateContainer beside a hung removal: {e:?}"))
            .into_inner()
            .container_id;
        removal
            .await
            .unwrap()
            .expect("RemoveContainer after the shim resumed");
        let mut rt = node.runtime().await;
        rt.remove_container(RemoveContainerRequest { container_id: b })
            .await
            .unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
        assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
        assert!(dir_entries(&node.state.join("shims")).is_empty());
    });
}

/// A pod with a running `sleep 100` container per name; returns (pod, container ids).
async fn sleeping_pod(node: &Node, env: &Env, pod: &str, names: &[&str]) -> (String, Vec<String>) {
    let bb = &env.set.busybox;
    pull_ok(node, &bb.reference()).await;
    let mut pod_cfg = pod_config(pod, NamespaceMode::Pod);
    pod_cfg.log_directory = node.dir.path().join("logs").display().to_string();
    let pod = run_pod(node, pod_cfg).await.unwrap();
    let mut ids = Vec::new();
    for name in names {
        let id = create_container(
            node,
            &pod,
            container_config(name, &bb.reference(), &["sleep", "100"]),
        )
        .await
        .unwrap();
        start_container(node, &id).await;
        ids.push(id);
    }
    (pod, ids)
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn process_gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

async fn wait_gone(pid: i32, what: &str) {
    for _ in 0..500 {
        if process_gone(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} (pid {pid}) is still alive");
}

/// Every shim call has a timeout (issue 12 item 7): a stopped shim costs its own container's
/// calls that much, never another container's, and never berthd's start-up.
fn a_stopped_shim_delays_only_its_own_container(env: &Env) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    env.rt.block_on(async {
        let mut node = Node::start().await;
        let (pod, ids) = sleeping_pod(&node, env, "stopped", &["a", "b"]).await;
        let (a, b) = (ids[0].clone(), ids[1].clone());
        let shims = berth_e2e::node::pids_with_cmdline(&["berth-shim", &a]);
        assert!(!shims.is_empty());
        for &pid in &shims {
            kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        }
        let mut rt = node.runtime().await;
        // The other container: at once.
        let mut req = tonic::Request::new(ContainerStatusRequest {
            container_id: b.clone(),
            verbose: false,
        });
        req.set_timeout(Duration::from_secs(2));
        let st = rt
            .container_status(req)
            .await
            .expect("status of the other container");
        assert_eq!(
            st.into_inner().status.unwrap().state,
            ContainerState::ContainerRunning as i32
        );
        let mut req = tonic::Request::new(ListContainersRequest { filter: None });
        req.set_timeout(Duration::from_secs(2));
        assert_eq!(
            rt.list_containers(req)
                .await
                .unwrap()
                .into_inner()
                .containers
                .len(),
            2
        );
        // Its own and everyone's stats: within the shim call timeout (5 s).
        let mut req = tonic::Request::new(ContainerStatusRequest {
            container_id: a.clone(),
            verbose: false,
        });
        req.set_timeout(Duration::from_secs(10));
        let st = rt
            .container_status(req)
            .await
            .expect("status of the stopped shim's container");
        assert_eq!(
            st.into_inner().status.unwrap().state,
            ContainerState::ContainerRunning as i32,
            "a shim that does not answer is not a dead one"
        );
        let mut req = tonic::Request::new(ListContainerStatsRequest { filter: None });
        req.set_timeout(Duration::from_secs(10));
        let stats = rt
            .list_container_stats(req)
            .await
            .expect("ListContainerStats")
            .into_inner();
        assert!(
            stats
                .stats
                .iter()
                .any(|s| s.attributes.as_ref().is_some_and(|a| a.id == b))
        );
        // berthd restarts while the shim is stopped: start-up does not wait on it for ever.
        node.kill9();
        node.spawn().await;
        let st = container_status(&node, &b).await;
        assert_eq!(st.state, ContainerState::ContainerRunning as i32);
        for &pid in &shims {
            kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
        }
        let st = container_status(&node, &a).await;
        assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
        let mut rt = node.runtime().await;
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
        assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
        assert!(dir_entries(&node.state.join("shims")).is_empty());
    });
}

/// A shim that dies takes its container with it (as containerd's `shim delete`): the processes
/// are killed through the cgroup and the container is reported exited.
fn a_dead_shim_takes_its_container_with_it(env: &Env) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    env.rt.block_on(async {
        let node = Node::start().await;
        let (pod, ids) = sleeping_pod(&node, env, "orphan", &["c"]).await;
        let c = ids[0].clone();
        let init = container_status(&node, &c).await;
        let pid = node
            .runtime()
            .await
            .container_status(ContainerStatusRequest {
                container_id: c.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
            .info["info"]
            .clone();
        let pid: i32 = serde_json::from_str::<serde_json::Value>(&pid).unwrap()["pid"]
            .as_i64()
            .expect("the verbose status names the pid") as i32;
        assert_eq!(init.state, ContainerState::ContainerRunning as i32);
        for shim in berth_e2e::node::pids_with_cmdline(&["berth-shim", &c]) {
            kill(Pid::from_raw(shim), Signal::SIGKILL).unwrap();
        }
        wait_gone(pid, "the container's process").await;
        let mut st = container_status(&node, &c).await;
        for _ in 0..100 {
            if st.state == ContainerState::ContainerExited as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            st = container_status(&node, &c).await;
        }
        assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
        let mut rt = node.runtime().await;
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
        assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
        assert!(dir_entries(&node.state.join("shims")).is_empty());
    });
}

/// The `berth-shim exec` helper, and the process it runs in the container, die with berthd.
fn exec_helpers_die_with_berthd(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start().await;
        let (pod, ids) = sleeping_pod(&node, env, "execs", &["c"]).await;
        let c = ids[0].clone();
        let call = {
            let mut rt = node.runtime().await;
            let c = c.clone();
            tokio::spawn(async move {
                rt.exec_sync(ExecSyncRequest {
                    container_id: c,
                    cmd: vec!["sleep".into(), "313".into()],
                    timeout: 0,
                })
                .await
            })
        };
        let mut helpers = Vec::new();
        let mut slept = Vec::new();
        for _ in 0..250 {
            helpers = berth_e2e::node::pids_with_cmdline(&["berth-shim", "exec", &c]);
            slept = berth_e2e::node::pids_with_cmdline(&["sleep", "313"])
                .into_iter()
                .filter(|p| !helpers.contains(p))
                .filter(|p| {
                    !std::fs::read(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("berth-shim"))
                })
                .collect();
            if !helpers.is_empty() && !slept.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!helpers.is_empty() && !slept.is_empty(), "the exec runs");
        node.kill9();
        let _ = call.await;
        for pid in helpers {
            wait_gone(pid, "the exec helper").await;
        }
        for pid in slept {
            wait_gone(pid, "the exec'd process").await;
        }
        node.spawn().await;
        let mut rt = node.runtime().await;
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
        assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
    });
}

fn container_mounts_image_view_and_log_reopen(env: &Env) {
    env.rt.block_on(async {
        let node = Node::start().await;
        pull_ok(&node, &env.set.whiteout.reference()).await;
        let mut pod_cfg = pod_config("view", NamespaceMode::Pod);
        pod_cfg.log_directory = node.dir.path().join("logs").display().to_string();
        let pod = run_pod(&node, pod_cfg).await.unwrap();

        // The image as its layers define it, and a read-only host-path bind mount.
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("f"), "from the host\n").unwrap();
        let host_path = host.path().display().to_string();
        let (st, log) = run_script(
            &node,
            &pod,
            "view",
            &env.set.whiteout.reference(),
            "ls /data; cat /data/hl; ls /dir/x; cat /host/f; touch /host/x 2>/dev/null || echo ro",
            |c| {
                c.mounts = vec![Mount {
                    container_path: "/host".into(),
                    host_path: host_path.clone(),
                    readonly: true,
                    ..Default::default()
                }];
            },
        )
        .await;
        assert_eq!(st.exit_code, 0, "{log}");
        let out: Vec<String> = log_contents(&log).into_iter().map(|r| r.2).collect();
        assert_eq!(
            out,
            vec!["b", "hl", "b-upper", "new", "from the host", "ro"],
            "{log}"
        );
        assert!(!host.path().join("x").exists());

        // kubelet's rotation: rename the file, ask for a reopen, new records go to a new file.
        let mut cfg = container_config(
            "talker",
            &env.set.whiteout.reference(),
            &[
                "sh",
                "-c",
                "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done",
            ],
        );
        cfg.log_path = "talker/0.log".into();
        let id = create_container(&node, &pod, cfg).await.unwrap();
        start_container(&node, &id).await;
        let path = PathBuf::from(container_status(&node, &id).await.log_path);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rotated = path.with_extension("log.1");
        std::fs::rename(&path, &rotated).unwrap();
        node.runtime()
            .await
            .reopen_container_log(ReopenContainerLogRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(!log_contents(&old).is_empty() && !log_contents(&new).is_empty());
        let last_old = log_contents(&old).last().unwrap().2.clone();
        let first_new = log_contents(&new).first().unwrap().2.clone();
        let n = |s: &str| s.trim_start_matches("line").parse::<u32>().unwrap();
        assert!(n(&first_new) > n(&last_old), "{last_old} then {first_new}");
        // Not running: FAILED_PRECONDITION.
        let mut rt = node.runtime().await;
        rt.stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        let e = rt
            .reopen_container_log(ReopenContainerLogRequest { container_id: id })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
        assert!(berth_e2e::node::mounts_under(node.dir.path()).is_empty());
    });
}

/// The `<root>/shim-logs` files: `<id>.log` names.
fn shim_log_names(node: &Node) -> Vec<String> {
    let mut names: Vec<String> = dir_entries(&node.root.join("shim-logs"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Wait until `path` holds a line with `needle`; returns its text.
async fn wait_for_line(path: &Path, needle: &str) -> String {
    for _ in 0..250 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l.contains(needle)) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no line with {needle:?} in {}:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// Issue 13 item 5: every shim's own lines reach berthd's stderr tagged with its container (in
/// berthd's log format) and a file under root that outlives the container; berthd prunes the
/// files of removed containers beyond `[shim_logs] keep_removed`, on removal and at start-up,
/// never a live container's.
fn shim_logs_reach_berthd_and_outlive_containers(env: &Env) {
    env.rt.block_on(async {
        let mut node = Node::start_with_config("[shim_logs]\nkeep_removed = 2\n").await;
        let config = std::fs::read_to_string(&node.config).unwrap();
        let bb = env.set.busybox.reference();
        pull_ok(&node, &bb).await;
        let pod = run_pod(&node, pod_config("shimlogs", NamespaceMode::Pod))
            .await
            .unwrap();
        let live = create_container(
            &node,
            &pod,
            container_config("live", &bb, &["sleep", "1000"]),
        )
        .await
        .unwrap();
        start_container(&node, &live).await;
        let mut removed = Vec::new();
        for i in 0..4 {
            let (st, _) = run_script(&node, &pod, &format!("gone{i}"), &bb, "true", |_| {}).await;
            assert_eq!(st.exit_code, 0);
            removed.push(st.id);
        }
        let logs_dir = node.root.join("shim-logs");
        let log_of = |id: &str| logs_dir.join(format!("{id}.log"));
        for id in removed.iter().chain([&live]) {
            let text = wait_for_line(&log_of(id), "container created").await;
            let tag = format!("shim{{container={id}}}");
            for l in text.lines() {
                assert!(l.contains(&tag), "untagged shim line {l:?} in:\n{text}");
            }
            // The same lines in berthd's own stream (its stderr, here berthd.log).
            let berthd = node.log_text();
            assert!(
                berthd
                    .lines()
                    .any(|l| l.contains(&format!("shim{{container={id}}}"))
                        && l.contains("container created")),
                "no shim line of {id} in berthd's log:\n{berthd}"
            );
        }
        // Removed one by one: each log stays, tagged, with the shim's last line, until more
        // than two removed containers have logs; the live container's is never pruned.
        let mut rt = node.runtime().await;
        for (n, id) in removed.iter().enumerate() {
            rt.remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
            wait_for_line(&log_of(id), "shim exiting").await;
            let names = shim_log_names(&node);
            assert!(names.contains(&format!("{live}.log")), "{names:?}");
            // The live one, those not removed yet, at most two removed.
            assert_eq!(names.len(), 1 + (3 - n) + (n + 1).min(2), "{names:?}");
            // Distinct modification times, in removal order.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut want = vec![
            format!("{}.log", removed[2]),
            format!("{}.log", removed[3]),
            format!("{live}.log"),
        ];
        want.sort();
        assert_eq!(shim_log_names(&node), want);
        drop(rt);

        // Restarted with a bound of one and JSON lines: the start-up prune leaves the newest
        // removed container's log, and new shims write JSON, tagged in their span.
        assert!(node.stop().success());
        std::fs::write(
            &node.config,
            format!(
                "log_format = \"json\"\n{}",
                config.replace("keep_removed = 2", "keep_removed = 1")
            ),
        )
        .unwrap();
        let before = node.log_text().len();
        node.spawn().await;
        let mut want = vec![format!("{}.log", removed[3]), format!("{live}.log")];
        want.sort();
        assert_eq!(shim_log_names(&node), want);
        let (st, _) = run_script(&node, &pod, "json", &bb, "true", |_| {}).await;
        let text = wait_for_line(&log_of(&st.id), "container created").await;
        for l in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(v["span"]["container"], st.id.as_str(), "{l}");
        }
        let berthd = node.log_text()[before..].to_string();
        let tagged = berthd
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["span"]["container"] == st.id.as_str())
            .count();
        assert!(tagged > 0, "no JSON shim line of {} in:\n{berthd}", st.id);

        let mut rt = node.runtime().await;
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
        // The pod's removal removed its containers: one removed container's log is kept.
        assert_eq!(
            shim_log_names(&node).len(),
            1,
            "{:?}",
            shim_log_names(&node)
        );
    });
}
