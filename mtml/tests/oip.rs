//! The Open Inference Protocol (KServe v2) over real gRPC, with real ONNX models through real
//! ONNX Runtime: metadata, typed and raw tensors, refusals that say what was expected, the
//! repository extension, statistics, and hot swap under concurrent load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mtml::Config;
use mtml::services::oip::OipService;
use mtml_inference::{Model, ModelServer};
use mtml_proto::inference as oip;
use mtml_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::Channel;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// A server for the live model `fx-direction` (embedded) and a repository folder.
async fn start(repository: &Path) -> (GrpcInferenceServiceClient<Channel>, Arc<ModelServer>) {
    let mut config = Config::defaults();
    config.model.repository = Some(repository.to_path_buf());
    let runtime = mtml::runtime::load_runtime(&config).unwrap();
    let server = Arc::new(mtml::runtime::model_server(&runtime, &config).unwrap());
    server.load("fx-direction").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = OipService::new(Arc::clone(&server)).into_server();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(mtml::services::grpc_incoming(listener)),
    );
    let client = GrpcInferenceServiceClient::connect(format!("http://{addr}")).await.unwrap();
    (client, server)
}

/// Width of the model input: the feature count.
const F: i64 = mtml_feature_store::FEATURE_COUNT as i64;

/// Two rows of plausible features.
fn rows() -> Vec<f32> {
    let row = |k: f32| (0..F).map(move |i| (i as f32 - 6.0) * 0.01 * k);
    row(1.0).chain(row(-2.0)).collect()
}

fn typed(model: &str, input: &str, datatype: &str, shape: Vec<i64>, values: Vec<f32>) -> oip::ModelInferRequest {
    oip::ModelInferRequest {
        model_name: model.into(),
        id: "req-7".into(),
        inputs: vec![oip::model_infer_request::InferInputTensor {
            name: input.into(),
            datatype: datatype.into(),
            shape,
            contents: Some(oip::InferTensorContents { fp32_contents: values, ..Default::default() }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The probabilities the same model gives in process, as the reference.
fn reference(values: &[f32], batch: usize) -> Vec<f32> {
    let runtime = mtml::runtime::load_runtime(&Config::defaults()).unwrap();
    let mut model = Model::from_bytes(&runtime, "fx-direction", mtml::runtime::EMBEDDED_MODEL).unwrap();
    model.infer(values, batch).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_inference_with_typed_and_raw_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let (mut client, _server) = start(dir.path()).await;
    assert!(client.server_live(oip::ServerLiveRequest {}).await.unwrap().into_inner().live);
    assert!(client.server_ready(oip::ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let server = client.server_metadata(oip::ServerMetadataRequest {}).await.unwrap().into_inner();
    assert_eq!(server.name, "mtml");
    assert!(server.extensions.contains(&"model_repository".to_owned()));
    let ready = oip::ModelReadyRequest { name: "fx-direction".into(), version: String::new() };
    assert!(client.model_ready(ready).await.unwrap().into_inner().ready);
    let request = oip::ModelMetadataRequest { name: "fx-direction".into(), version: String::new() };
    let metadata = client.model_metadata(request).await.unwrap().into_inner();
    assert_eq!(metadata.platform, "onnxruntime_onnx");
    assert_eq!(metadata.versions, ["1"]);
    let (input, output) = (&metadata.inputs[0], &metadata.outputs[0]);
    assert_eq!((input.datatype.as_str(), input.shape.as_slice()), ("FP32", [-1, F].as_slice()));
    assert_eq!(output.shape, [-1, 2]);

    // Typed contents in, typed contents out; the id is echoed.
    let expected = reference(&rows(), 2);
    let request = typed("fx-direction", &input.name, "FP32", vec![2, F], rows());
    let response = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!((response.id.as_str(), response.model_version.as_str()), ("req-7", "1"));
    let out = &response.outputs[0];
    assert_eq!((out.name.as_str(), out.shape.as_slice()), (output.name.as_str(), [2, 2].as_slice()));
    let probabilities = &out.contents.as_ref().unwrap().fp32_contents;
    assert_eq!(probabilities, &expected, "the same numbers as the model in process");
    assert!((probabilities[0] + probabilities[1] - 1.0).abs() < 1e-5);

    // Raw little-endian bytes in, raw bytes out; no id given: a chain id is made.
    let mut raw = typed("fx-direction", &input.name, "FP32", vec![2, F], Vec::new());
    raw.id.clear();
    raw.inputs[0].contents = None;
    raw.raw_input_contents = vec![rows().iter().flat_map(|v| v.to_le_bytes()).collect()];
    let response = client.model_infer(raw).await.unwrap().into_inner();
    assert_eq!(response.id.len(), 32, "a W3C trace id: {}", response.id);
    assert!(response.outputs[0].contents.is_none());
    let bytes = &response.raw_output_contents[0];
    let decoded: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(decoded, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_input_is_refused_with_what_was_expected_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (mut client, _server) = start(dir.path()).await;
    let request = oip::ModelMetadataRequest { name: "fx-direction".into(), version: String::new() };
    let input = client.model_metadata(request).await.unwrap().into_inner().inputs[0].name.clone();
    let mut nan = rows();
    nan[3] = f32::NAN;
    let mut wrong_output = typed("fx-direction", &input, "FP32", vec![2, F], rows());
    wrong_output.outputs = vec![oip::model_infer_request::InferRequestedOutputTensor { name: "label".into(), ..Default::default() }];
    let cases = [
        (typed("no-such-model", &input, "FP32", vec![2, F], rows()), tonic::Code::NotFound, "model \"no-such-model\" is not loaded".to_owned()),
        (typed("fx-direction", "x", "FP32", vec![2, F], rows()), tonic::Code::InvalidArgument, format!("its input is {input:?}")),
        (typed("fx-direction", &input, "FP64", vec![2, F], rows()), tonic::Code::InvalidArgument, "is FP32, got FP64".to_owned()),
        (typed("fx-direction", &input, "FP32", vec![2, F - 1], rows()), tonic::Code::InvalidArgument, format!("has shape [batch, {F}], got [2, {}]", F - 1)),
        (typed("fx-direction", &input, "FP32", vec![3, F], rows()), tonic::Code::InvalidArgument, format!("needs {} FP32 values, got {}", 3 * F, 2 * F)),
        (typed("fx-direction", &input, "FP32", vec![2, F], nan), tonic::Code::InvalidArgument, "feature 3 is not finite".to_owned()),
        (wrong_output, tonic::Code::InvalidArgument, "has no output \"label\"".to_owned()),
    ];
    for (request, code, message) in cases {
        let status = client.model_infer(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(&message), "{:?} does not say {message:?}", status.message());
    }
    let ok = client.model_infer(typed("fx-direction", &input, "FP32", vec![2, F], rows())).await;
    assert!(ok.is_ok(), "still serving");
    let stats = client
        .model_statistics(oip::ModelStatisticsRequest { name: "fx-direction".into(), version: String::new() })
        .await
        .unwrap()
        .into_inner();
    let stats = stats.model_stats[0].inference_stats.unwrap();
    assert_eq!(stats.success.unwrap().count, 1);
    assert_eq!(stats.fail.unwrap().count, 1, "the NaN reached the model and failed there; the rest failed at the edge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_loads_and_unloads_and_a_bad_model_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(models_dir().join("fx-direction-v2.onnx"), dir.path().join("challenger.onnx")).unwrap();
    std::fs::write(dir.path().join("broken.onnx"), b"not an onnx model").unwrap();
    let (mut client, _server) = start(dir.path()).await;
    let index = |ready: bool| oip::RepositoryIndexRequest { repository_name: String::new(), ready };
    let states = |response: oip::RepositoryIndexResponse| -> Vec<(String, String)> {
        response.models.into_iter().map(|m| (m.name, m.state)).collect()
    };
    let listed = states(client.repository_index(index(false)).await.unwrap().into_inner());
    assert_eq!(
        listed,
        [("broken".into(), "UNAVAILABLE".into()), ("challenger".into(), "UNAVAILABLE".into()), ("fx-direction".into(), "READY".into())]
    );
    let load = |name: &str| oip::RepositoryModelLoadRequest { model_name: name.into(), ..Default::default() };
    client.repository_model_load(load("challenger")).await.unwrap();
    let request = oip::ModelMetadataRequest { name: "challenger".into(), version: String::new() };
    let input = client.model_metadata(request).await.unwrap().into_inner().inputs[0].name.clone();
    client.model_infer(typed("challenger", &input, "FP32", vec![2, F], rows())).await.unwrap();

    let failed = client.repository_model_load(load("broken")).await.unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Internal);
    assert!(failed.message().contains("model \"broken\" failed to load"), "{}", failed.message());
    let index_now = client.repository_index(index(false)).await.unwrap().into_inner();
    let broken = index_now.models.iter().find(|m| m.name == "broken").unwrap();
    assert_eq!(broken.state, "LOAD_FAILED");
    assert!(!broken.reason.is_empty());
    let unknown = client.repository_model_load(load("nothing")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // A reload whose file has turned bad leaves the loaded version serving.
    std::fs::write(dir.path().join("challenger.onnx"), b"truncated").unwrap();
    assert!(client.repository_model_load(load("challenger")).await.is_err());
    let still = client.model_infer(typed("challenger", &input, "FP32", vec![2, F], rows())).await.unwrap();
    assert_eq!(still.into_inner().model_version, "1");

    let unload = oip::RepositoryModelUnloadRequest { model_name: "challenger".into(), ..Default::default() };
    client.repository_model_unload(unload).await.unwrap();
    let gone = client.model_infer(typed("challenger", &input, "FP32", vec![2, F], rows())).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let ready = states(client.repository_index(index(true)).await.unwrap().into_inner());
    assert_eq!(ready, [("fx-direction".into(), "READY".into())]);
}

/// Reloads under concurrent load: every request is answered, by one whole version or the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_swap_under_load_drops_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (client, server) = start(dir.path()).await;
    let input = server.get("fx-direction", "").unwrap().signature().input.clone();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = client.clone();
        let input = input.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for _ in 0..150 {
                let response = client.model_infer(typed("fx-direction", &input, "FP32", vec![2, F], rows())).await?;
                versions.push(response.into_inner().model_version);
            }
            Ok::<_, tonic::Status>(versions)
        }));
    }
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let server = Arc::clone(&server);
        tokio::task::spawn_blocking(move || server.load("fx-direction")).await.unwrap().unwrap();
    }
    let mut answered = 0;
    let mut seen = std::collections::BTreeSet::new();
    for task in tasks {
        let versions = task.await.unwrap().expect("no request failed during the swaps");
        answered += versions.len();
        seen.extend(versions);
    }
    assert_eq!(answered, 8 * 150);
    assert_eq!(server.get("fx-direction", "").unwrap().version(), "4", "three reloads");
    assert!(seen.iter().all(|v| ["1", "2", "3", "4"].contains(&v.as_str())), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micro_batched_requests_get_their_own_answers_and_errors() {
    let mut config = Config::defaults();
    config.model.max_batch = 16;
    config.model.workers = 1;
    let runtime = mtml::runtime::load_runtime(&config).unwrap();
    let server = Arc::new(mtml::runtime::model_server(&runtime, &config).unwrap());
    server.load("fx-direction").unwrap();
    let model = server.get("fx-direction", "").unwrap();
    let mut alone = Model::from_bytes(&runtime, "fx-direction", mtml::runtime::EMBEDDED_MODEL).unwrap();
    // Bursts of 64 requests with distinct rows onto one worker, so that many queue behind each
    // execution; one in each burst is malformed and one has a NaN.
    let mut batched_executions = false;
    for burst in 0..20 {
        let mut calls = Vec::new();
        for k in 0..64usize {
            let values: Vec<f32> = (0..F as usize).map(|i| ((i + k + burst) as f32 - 20.0) * 0.003).collect();
            let (input, batch) = match k {
                13 => (values[1..].to_vec(), 1),
                29 => (values.iter().map(|v| if *v > 0.0 { f32::NAN } else { *v }).collect(), 1),
                _ => (values.clone(), 1),
            };
            let model = Arc::clone(&model);
            calls.push(tokio::spawn(async move { (k, values, model.infer(input, batch).await) }));
        }
        for call in calls {
            let (k, values, answer) = call.await.unwrap();
            match k {
                13 => assert!(answer.unwrap_err().to_string().contains(&format!("expects {F} features, got {}", F - 1)), "the short row fails alone"),
                29 => assert!(answer.unwrap_err().to_string().contains("not finite"), "the NaN row fails alone"),
                _ => {
                    // A batched execution may round differently in the last bit (other kernels).
                    let (got, expected) = (answer.unwrap(), alone.infer(&values, 1).unwrap());
                    let gap = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                    assert!(gap < 1e-6, "request {k} of burst {burst} got {got:?}, alone {expected:?}");
                }
            }
        }
        let stats = &model.stats;
        batched_executions |= stats.execution_count.load(std::sync::atomic::Ordering::Relaxed)
            < stats.success_count.load(std::sync::atomic::Ordering::Relaxed);
    }
    // Whether a burst queues up is up to the scheduler; over 20 bursts of 64 on one worker it
    // does, and then rows rode along in another request's execution.
    assert!(batched_executions, "no request was ever batched with another");
}
