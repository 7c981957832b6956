//! The model server on the shipped models through the real ONNX Runtime: loading, hot swap with
//! requests in flight, a failed load that leaves the old version serving, micro-batching, and
//! refusals that name the model and what it expected.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mtml_inference::{InferenceError, Model, ModelRepository, ModelServer, OnnxRuntime, ServeError};

const V1: &[u8] = include_bytes!("../../models/fx-direction-v1.onnx");
const V2: &[u8] = include_bytes!("../../models/fx-direction-v2.onnx");
const WRONG_COUNT: &[u8] = include_bytes!("../../tests/fixtures/wrong-feature-count.onnx");

fn runtime() -> OnnxRuntime {
    OnnxRuntime::load(&mtml_inference::locate_library(None).unwrap()).unwrap()
}

fn server(workers: usize, max_batch: usize) -> ModelServer {
    let repository = ModelRepository { in_memory: BTreeMap::from([("fx".to_owned(), Arc::from(V1))]), dir: None };
    ModelServer::new(runtime(), repository, workers).with_max_batch(max_batch)
}

fn features(model: &Model) -> usize {
    model.signature().features
}

fn rows(n: usize, width: usize) -> Vec<f32> {
    (0..n * width).map(|i| ((i % 7) as f32 - 3.0) / 10.0).collect()
}

#[test]
fn a_model_loads_with_its_signature_and_predicts_a_probability() {
    let runtime = runtime();
    let mut model = Model::from_bytes(&runtime, "fx", V1).unwrap();
    let width = features(&model);
    assert_eq!(width, 14, "the shipped models take the feature set's 14 features");
    let p = model.predict(&rows(1, width)).unwrap();
    assert!((0.0..=1.0).contains(&p), "{p}");
    // Two rows at once give the same answers as one at a time.
    let batch = model.infer(&rows(2, width), 2).unwrap();
    assert_eq!(batch.len(), 4, "[2, 2] probabilities");
    let first = model.infer(&rows(2, width)[..width], 1).unwrap();
    assert!((batch[0] - first[0]).abs() < 1e-6);
}

#[test]
fn wrong_shapes_and_garbage_are_refused_by_name() {
    let runtime = runtime();
    let mut model = Model::from_bytes(&runtime, "fx", V1).unwrap();
    let error = model.predict(&[0.0; 3]).unwrap_err();
    assert!(matches!(error, InferenceError::Shape { expected: 14, got: 3, .. }), "{error}");
    assert_eq!(error.to_string(), "model fx expects 14 features, got 3");
    let mut bad = rows(1, 14);
    bad[5] = f32::NAN;
    assert_eq!(model.predict(&bad).unwrap_err().to_string(), "model fx: feature 5 is not finite");
    let garbage = Model::from_bytes(&runtime, "junk", b"not an onnx file").unwrap_err();
    assert!(garbage.to_string().starts_with("cannot load"), "{garbage}");
    // A model of another width loads; serving it the live width is refused.
    let mut narrow = Model::from_bytes(&runtime, "narrow", WRONG_COUNT).unwrap();
    assert_ne!(narrow.signature().features, 14);
    assert!(matches!(narrow.predict(&rows(1, 14)), Err(InferenceError::Shape { .. })));
}

#[tokio::test]
async fn a_reload_swaps_versions_and_a_failed_load_keeps_the_old_one_serving() {
    let server = Arc::new(server(2, 1));
    let loader = Arc::clone(&server);
    let v1 = tokio::task::spawn_blocking(move || loader.load("fx")).await.unwrap().unwrap();
    assert_eq!(v1.version(), "1");
    let before = v1.infer(rows(1, 14), 1).await.unwrap();

    // A registry version installed beside it replaces it; a request on the old handle still
    // finishes on the old sessions.
    let loader = Arc::clone(&server);
    let v2 = tokio::task::spawn_blocking(move || loader.install("fx", "2", V2)).await.unwrap().unwrap();
    assert_eq!(server.get("fx", "").unwrap().version(), "2");
    assert_eq!(v1.infer(rows(1, 14), 1).await.unwrap(), before, "in-flight callers keep their version");
    let after = v2.infer(rows(1, 14), 1).await.unwrap();
    assert_ne!(before, after, "v2 is another model");
    assert!(matches!(server.get("fx", "1"), Err(ServeError::UnknownVersion { .. })));

    // Garbage for version 3: refused, version 2 keeps serving, the index says why.
    let loader = Arc::clone(&server);
    let failed = tokio::task::spawn_blocking(move || loader.install("fx", "3", b"garbage")).await.unwrap().unwrap_err();
    assert!(matches!(failed, ServeError::Load { .. }), "{failed}");
    assert_eq!(server.get("fx", "").unwrap().version(), "2");
    let entry = |server: &ModelServer| server.index().into_iter().find(|e| e.name == "fx").unwrap();
    assert_eq!((entry(&server).version.as_str(), entry(&server).state.as_str()), ("2", "READY"), "still serving");

    // Unloaded: refused by name, and the index says why the last load failed.
    server.unload("fx").unwrap();
    assert!(matches!(server.get("fx", ""), Err(ServeError::NotLoaded(name)) if name == "fx"));
    let after = entry(&server);
    assert_eq!(after.state, "LOAD_FAILED");
    assert!(after.reason.contains("\"fx\" failed to load"), "{}", after.reason);
    assert!(matches!(server.load("missing"), Err(ServeError::UnknownModel(_))));
}

#[tokio::test]
async fn queued_requests_run_as_one_execution_up_to_max_batch() {
    // One worker, batches of up to 8 rows: 32 concurrent single-row requests take fewer than 32
    // executions, and every one gets the answer it would have had alone.
    let server = Arc::new(server(1, 8));
    let loader = Arc::clone(&server);
    let model = tokio::task::spawn_blocking(move || loader.load("fx")).await.unwrap().unwrap();
    let alone = model.infer(rows(1, 14), 1).await.unwrap();
    // A large request first keeps the worker busy while the small ones queue behind it.
    let busy = {
        let model = Arc::clone(&model);
        tokio::spawn(async move { model.infer(rows(20_000, 14), 20_000).await.unwrap() })
    };
    let calls: Vec<_> = (0..32).map(|_| {
        let model = Arc::clone(&model);
        tokio::spawn(async move { model.infer(rows(1, 14), 1).await.unwrap() })
    }).collect();
    for call in calls {
        let answer = call.await.unwrap();
        assert!((answer[0] - alone[0]).abs() < 1e-6);
    }
    assert_eq!(busy.await.unwrap().len(), 40_000);
    let stats = &model.stats;
    assert_eq!(stats.inference_count.load(Ordering::Relaxed), 1 + 20_000 + 32);
    let executions = stats.execution_count.load(Ordering::Relaxed);
    assert!(executions < 34, "{executions} executions for 34 requests");
}
