//! The Open Inference Protocol checked with external clients: NVIDIA's Python `tritonclient`
//! (`tests/python/tritonclient_check.py`) and the KServe SDK (`tests/python/kserve_check.py`),
//! unchanged, against mtml's endpoint on a real socket.
//!
//! The Python environment comes from `MTML_TEST_PYTHON`, which `cargo xtask test` sets after
//! installing `tests/python/requirements.txt` into `.cache/test-venv`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use mtml::Config;
use mtml::services::oip::OipService;
use mtml_inference::Model;

/// The embedded `fx-direction` served over the Open Inference Protocol on a free port.
async fn serve_embedded_model() -> (mtml_inference::OnnxRuntime, std::net::SocketAddr) {
    let config = Config::defaults();
    let runtime = mtml::runtime::load_runtime(&config).unwrap();
    let server = Arc::new(mtml::runtime::model_server(&runtime, &config).unwrap());
    server.load("fx-direction").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(OipService::new(server).into_server())
            .serve_with_incoming(mtml::services::grpc_incoming(listener)),
    );
    (runtime, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_works_unchanged() {
    let python = std::env::var("MTML_TEST_PYTHON")
        .expect("MTML_TEST_PYTHON is not set: run the suite with `cargo xtask test`, which installs tritonclient");
    let (runtime, addr) = serve_embedded_model().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/tritonclient_check.py");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python).arg(&script).arg(addr.to_string()).arg("fx-direction").output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(output.status.success(), "tritonclient failed: {}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["server"], "mtml");
    assert_eq!(answer["features"], mtml_feature_store::FEATURE_COUNT);

    // The numbers tritonclient got are the model's own, computed here in process.
    let rows: Vec<f32> = answer["rows"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let mut model = Model::from_bytes(&runtime, "fx-direction", mtml::runtime::EMBEDDED_MODEL).unwrap();
    let expected = model.infer(&rows, 2).unwrap();
    let got: Vec<f32> = answer["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(got, expected);

    let errors = &answer["errors"];
    assert!(errors["unknown_model"].as_str().unwrap().contains("not loaded"), "{errors}");
    assert!(errors["wrong_input"].as_str().unwrap().contains("its input is"), "{errors}");
    let index = answer["index"].as_array().unwrap();
    assert!(index.iter().any(|m| m["name"] == "fx-direction" && m["state"] == "READY"), "{index:?}");
    let stats = &answer["statistics"][0];
    assert_eq!(stats["inference_count"], "2", "two rows inferred: {stats}");
}

/// The KServe Python SDK (`kserve.InferenceGRPCClient`), unchanged, against the same endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kserve_sdk_works_unchanged() {
    let python = std::env::var("MTML_TEST_PYTHON")
        .expect("MTML_TEST_PYTHON is not set: run the suite with `cargo xtask test`, which installs the KServe SDK");
    let (runtime, addr) = serve_embedded_model().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/kserve_check.py");
    let features = mtml_feature_store::FEATURE_COUNT.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python).arg(&script).arg(addr.to_string()).arg("fx-direction").arg(features).output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(output.status.success(), "the KServe SDK failed: {}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["id"], "0af7651916cd43dd8448eb211c80319c", "the request id is echoed");
    assert_eq!(answer["model_name"], "fx-direction");
    let rows: Vec<f32> = answer["rows"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let mut model = Model::from_bytes(&runtime, "fx-direction", mtml::runtime::EMBEDDED_MODEL).unwrap();
    let expected = model.infer(&rows, 2).unwrap();
    let got: Vec<f32> = answer["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(got, expected, "the SDK got the model's own numbers");
    assert_eq!(answer["unknown_model"]["code"], "NOT_FOUND");
    assert!(answer["unknown_model"]["details"].as_str().unwrap().contains("not loaded"), "{answer}");
}
