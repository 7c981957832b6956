//! Model rollout end to end, with the two shipped models through real ONNX Runtime, a real
//! registry (SQLite file here; the registry's own suite runs PostgreSQL), replays through the
//! real bridge, and a running instance driven over real gRPC: shadow never acts, a canary's split
//! is reproducible, promote and rollback hot-swap under load with no failed request, a version
//! that fails to load leaves the old one serving, uploads stream in checked chunks, and the
//! stale-model guard stops orders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mtml_rollout::{UploadRequest, register};
use mtml::commands::replay::DEFAULT_MAX_AHEAD;
use mtml::{App, Config, Listeners, ReplayOptions, Report, replay};
use mtml_proto::inference as oip;
use mtml_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mtml_proto::v1;
use mtml_proto::v1::model_admin_client::ModelAdminClient;
use mtml_registry::{NewVersion, Registry, Route};
use mtml_tests::{data, eurusd_sample, eurusd_ticks};

fn model_file(version: u32) -> PathBuf {
    data("../models").join(format!("fx-direction-v{version}.onnx"))
}

/// A registry file with the two shipped models registered as versions 1 and 2.
async fn registry_with_models(dir: &Path) -> (String, Registry) {
    let url = format!("sqlite://{}?mode=rwc", dir.join("registry.db").display());
    let registry = Registry::open(&url).await.unwrap();
    let runtime = mtml::runtime::load_runtime(&Config::defaults()).unwrap();
    for version in [1, 2] {
        let upload = UploadRequest {
            name: "fx-direction".into(),
            bytes: std::fs::read(model_file(version)).unwrap(),
            metrics_json: std::fs::read_to_string(model_file(version).with_extension("metrics.json")).unwrap(),
            uploaded_by: "test".into(),
            label: format!("v{version}"),
        };
        assert_eq!(register(&runtime, &registry, upload).await.unwrap().version, i64::from(version));
    }
    (url, registry)
}

fn replay_options(ticks: PathBuf, registry_url: &str) -> ReplayOptions {
    let mut config = Config::defaults();
    config.journal.url = "sqlite::memory:".into();
    config.features.history = "sqlite::memory:".into();
    config.registry.url = registry_url.to_owned();
    config.model.from_registry = true;
    ReplayOptions { ticks, symbol: None, config, config_given: false, max_ahead: DEFAULT_MAX_AHEAD, terminal_balance: None }
}

/// What a replay decided, independent of fill timing.
fn decisions(r: &Report) -> (u64, u64, u64, u64, u64) {
    let p = &r.pipeline;
    (p.feature_vectors, p.predictions, p.target_changes, p.challenger_predictions, p.challenger_acted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_never_acts_and_a_canary_split_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let (url, registry) = registry_with_models(dir.path()).await;
    registry.promote("fx-direction", 1, "test", 1).await.unwrap();

    let alone = replay(replay_options(eurusd_sample(), &url)).await.unwrap();
    assert_eq!(alone.models, "champion fx-direction:1");
    assert!(alone.rollout.is_none());
    assert!(alone.orders_sent > 0, "the champion trades");

    registry.start_rollout("fx-direction", 2, Route::Shadow, "test", 2).await.unwrap();
    let shadow = replay(replay_options(eurusd_sample(), &url)).await.unwrap();
    assert_eq!(shadow.models, "champion fx-direction:1, challenger fx-direction:2 on shadow");
    assert_eq!(shadow.pipeline.challenger_predictions, shadow.pipeline.predictions, "the shadow saw every vector");
    assert_eq!(shadow.pipeline.challenger_acted, 0, "and acted on none");
    assert_eq!(shadow.pipeline.target_changes, alone.pipeline.target_changes, "decisions are the champion's alone");
    let report = shadow.rollout.as_ref().expect("a comparison report");
    assert_eq!(report.predictions, shadow.pipeline.predictions);
    assert_eq!(report.challenger.acted_on, 0);
    assert_eq!(report.champion.acted_on, report.predictions);
    assert!(report.class_agreement > 0.0 && report.class_agreement < 1.0, "two different models: {report:?}");
    assert!(report.probability_psi > 0.0);
    assert!(report.champion.resolved_signals > 0 && report.champion.hit_rate.is_some(), "{report:?}");
    assert!(report.challenger.latency_p50_us > 0.0);
    assert_eq!((report.champion.orders, report.challenger.orders), (shadow.orders_sent, 0), "every order was the champion's");
    assert_eq!(report.champion.fills, shadow.fills, "fed from execution");

    let canary = Route::Canary { percent: 30, symbols: vec![] };
    registry.start_rollout("fx-direction", 2, canary, "test", 3).await.unwrap();
    let first = replay(replay_options(eurusd_sample(), &url)).await.unwrap();
    let again = replay(replay_options(eurusd_sample(), &url)).await.unwrap();
    assert_eq!(decisions(&first), decisions(&again), "the same chains go the same way every run");
    let share = first.pipeline.challenger_acted as f64 / first.pipeline.challenger_predictions as f64;
    assert!((0.25..0.35).contains(&share), "the canary acted on {share:.3} of chains, asked for 0.30");
    assert_ne!(first.pipeline.target_changes, alone.pipeline.target_changes, "the canary's votes changed decisions");
    let report = first.rollout.as_ref().unwrap();
    assert_eq!(report.challenger.acted_on + report.champion.acted_on, report.predictions);
    assert_eq!(report.role, "canary 30%");
    assert_eq!(report.champion.orders + report.challenger.orders, first.orders_sent, "each order is one model's");
    assert_eq!(report.champion.fills + report.challenger.fills, first.fills);
    assert!(report.challenger.orders > 0, "the canary decided some orders: {report:?}");
    assert!(report.challenger.resolved_fills + report.champion.resolved_fills > 0);

    // A canary limited to a symbol the replay does not trade takes no chain.
    let elsewhere = Route::Canary { percent: 100, symbols: vec!["GBPUSD".into()] };
    registry.start_rollout("fx-direction", 2, elsewhere, "test", 4).await.unwrap();
    let other = replay(replay_options(eurusd_sample(), &url)).await.unwrap();
    assert_eq!(other.pipeline.challenger_acted, 0);
    assert_eq!(other.pipeline.target_changes, alone.pipeline.target_changes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stale_model_guard_refuses_orders_from_an_old_model() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("registry.db").display());
    let registry = Registry::open(&url).await.unwrap();
    let runtime = mtml::runtime::load_runtime(&Config::defaults()).unwrap();
    let bytes = std::fs::read(model_file(1)).unwrap();
    let model = mtml_inference::Model::from_bytes(&runtime, "fx-direction", &bytes).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let signature = model.signature();
    let old = NewVersion {
        name: "fx-direction".into(),
        input_name: signature.input.clone(),
        features: signature.features as i64,
        output_name: signature.probabilities.clone(),
        feature_set: signature.feature_set.clone().unwrap(),
        metrics: "{}".into(),
        uploaded_by: "test".into(),
        uploaded_ms: now - 10 * 86_400_000,
        onnx: bytes,
    };
    registry.register(&old).await.unwrap();
    registry.promote("fx-direction", 1, "test", now).await.unwrap();

    let mut options = replay_options(eurusd_sample(), &url);
    options.config.model.max_age_days = 30;
    let fresh_enough = replay(options).await.unwrap();
    assert!(fresh_enough.orders_sent > 0, "10 days is within 30");
    assert_eq!(fresh_enough.pipeline.stale_model_flags, 0);

    let mut options = replay_options(eurusd_sample(), &url);
    options.config.model.max_age_days = 7;
    let stale = replay(options).await.unwrap();
    assert_eq!(stale.orders_sent, 0, "no order from a model over its age limit");
    assert!(stale.pipeline.stale_model_flags > 0);
    assert_eq!(stale.pipeline.risk_rejections.get("stale_model").copied(), Some(stale.pipeline.stale_model_flags), "{:?}", stale.pipeline.risk_rejections);
    assert_eq!(stale.pipeline.predictions, fresh_enough.pipeline.predictions, "the model still predicts; risk refuses");
}

/// A running instance on the registry, with its gRPC API.
async fn start(url: &str) -> (App, String) {
    let mut config = Config::defaults();
    config.journal.url = "sqlite::memory:".into();
    config.features.history = "sqlite::memory:".into();
    config.features.history_wal = std::env::temp_dir().join(format!("mtml-rollout-test-{}.wal", std::process::id()));
    config.registry.url = url.to_owned();
    config.model.from_registry = true;
    config.model.registry_poll = Duration::from_millis(50);
    let runtime = mtml::runtime::load_runtime(&config).unwrap();
    let bridge = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::start(&config, &runtime, Listeners { bridge: Some(bridge), grpc: Some(grpc), metrics: None }).await.unwrap();
    let endpoint = format!("http://{}", app.grpc_addr.unwrap());
    (app, endpoint)
}

fn infer_request() -> oip::ModelInferRequest {
    let f = mtml_feature_store::FEATURE_COUNT;
    let values: Vec<f32> = (0..f).map(|i| (i as f32 - 6.0) * 0.01).collect();
    oip::ModelInferRequest {
        model_name: "fx-direction".into(),
        inputs: vec![oip::model_infer_request::InferInputTensor {
            name: "features".into(),
            datatype: "FP32".into(),
            shape: vec![1, f as i64],
            contents: Some(oip::InferTensorContents { fp32_contents: values, ..Default::default() }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_rollback_under_load_drop_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (url, registry) = registry_with_models(dir.path()).await;
    registry.promote("fx-direction", 1, "test", 1).await.unwrap();
    let (app, endpoint) = start(&url).await;
    let mut admin = ModelAdminClient::connect(endpoint.clone()).await.unwrap();

    // Eight callers keep ModelInfer busy for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen = Arc::new(parking_lot::Mutex::new(std::collections::BTreeSet::new()));
    let mut callers = Vec::new();
    for _ in 0..8 {
        let mut client = GrpcInferenceServiceClient::connect(endpoint.clone()).await.unwrap();
        let (stop, ok, failed, seen) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed), Arc::clone(&seen));
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.model_infer(infer_request()).await {
                    Ok(response) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        seen.lock().insert(response.into_inner().model_version);
                    }
                    Err(status) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {status}");
                    }
                }
            }
        }));
    }
    let version = |admin: ModelAdminClient<tonic::transport::Channel>| async move {
        let mut admin = admin;
        admin.show_model(v1::ShowModelRequest { spec: "fx-direction:champion".into() }).await.unwrap().into_inner()
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let promoted = admin.promote(v1::PromoteRequest { name: "fx-direction".into(), version: 2, actor: "test".into() }).await.unwrap().into_inner();
    assert_eq!((promoted.champion, promoted.serving_revision, promoted.serving_error.as_str()), (2, promoted.revision, ""), "in force here when answered");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shown = version(admin.clone()).await;
    assert_eq!(shown.version.unwrap().state, "champion");
    let rolled = admin.rollback(v1::RollbackRequest { name: "fx-direction".into(), actor: "test".into() }).await.unwrap().into_inner();
    assert_eq!(rolled.champion, 1);
    assert!(rolled.message.contains("rolled back to 1"), "{}", rolled.message);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A shadow rollout, then a comparison from the running pipeline (no ticks here: empty).
    let shadow = v1::RolloutRequest { name: "fx-direction".into(), version: 2, route: Some(v1::rollout_request::Route::Shadow(v1::Shadow {})), actor: "test".into() };
    let status = admin.rollout(shadow).await.unwrap().into_inner();
    assert_eq!((status.challenger, status.route.as_str()), (2, "shadow"));
    let compare = admin.compare_models(v1::CompareModelsRequest { name: "fx-direction".into() }).await.unwrap().into_inner();
    assert!(compare.active, "the pipeline has the shadow");
    let report: serde_json::Value = serde_json::from_str(&compare.report_json).unwrap();
    assert_eq!(report["role"], "shadow");
    assert_eq!(report["challenger"]["model"], "fx-direction:2");

    // A registry version whose bytes are damaged fails to load: the old models keep serving.
    registry.corrupt_for_test("fx-direction", 2).await.unwrap();
    let failed_promote = admin.promote(v1::PromoteRequest { name: "fx-direction".into(), version: 2, actor: "test".into() }).await.unwrap().into_inner();
    assert_eq!(failed_promote.champion, 2, "the registry records the promote");
    assert!(failed_promote.serving_error.contains("corrupt"), "{failed_promote:?}");
    assert!(failed_promote.serving_revision < failed_promote.revision, "this instance did not apply it");
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed across two swaps and a failed load");
    assert!(ok.load(Ordering::Relaxed) > 100, "load was applied: {}", ok.load(Ordering::Relaxed));
    let seen: Vec<String> = seen.lock().iter().cloned().collect();
    assert_eq!(seen, ["1", "2"], "requests were served by both versions");
    let outcome = app.stop().await.unwrap();
    assert_eq!(outcome.counters.model_swaps, 3, "promote, rollback, shadow; the damaged version never swapped in");
    assert_eq!(outcome.models, "champion fx-direction:1, challenger fx-direction:2 on shadow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_mid_replay_swaps_models_between_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let (url, registry) = registry_with_models(dir.path()).await;
    registry.promote("fx-direction", 1, "test", 1).await.unwrap();
    let mut options = replay_options(eurusd_ticks(), &url);
    options.config.model.registry_poll = Duration::from_millis(20);
    let running = mtml::commands::replay::start_replay(options).await.unwrap();
    // Promote once a few thousand ticks have gone through: well inside the replay, whatever the
    // machine's speed.
    while running.ticks_seen() < 2_000 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    registry.promote("fx-direction", 2, "test", 2).await.unwrap();
    let report = running.finish().await.unwrap();
    assert_eq!(report.pipeline.model_swaps, 1);
    assert_eq!(report.models, "champion fx-direction:2");
    assert_eq!(report.pipeline.inference_errors, 0);
    assert_eq!(report.pipeline.predictions, report.pipeline.feature_vectors, "every vector predicted across the swap");
    assert!(report.counts_add_up);
}

/// Chunks of a test upload: small, so that a model takes several.
const CHUNK: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_in_checked_chunks_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("registry.db").display());
    let (app, endpoint) = start(&url).await;
    fn upload(path: &Path) -> mtml::commands::models::Upload<'_> {
        mtml::commands::models::Upload { file: path, name: "fx-direction", metadata: None, sha256: None }
    }

    let v1 = model_file(1);
    let registered = mtml::commands::models::upload_remote(&endpoint.parse().unwrap(), upload(&v1), CHUNK).await.unwrap();
    assert_eq!((registered.version.as_str(), registered.state.as_str()), ("1", "registered"));
    assert_eq!(registered.size_bytes, std::fs::metadata(&v1).unwrap().len());

    // v2 arrives in several chunks and its checksum still holds.
    let v2 = model_file(2);
    assert!(std::fs::metadata(&v2).unwrap().len() as usize > 4 * CHUNK, "v2 needs several chunks");
    let second = mtml::commands::models::upload_remote(&endpoint.parse().unwrap(), upload(&v2), CHUNK).await.unwrap();
    assert_eq!(second.sha256, mtml_registry::sha256_hex(&std::fs::read(&v2).unwrap()));

    let again = mtml::commands::models::upload_remote(&endpoint.parse().unwrap(), upload(&v1), CHUNK).await.unwrap_err();
    assert!(again.to_string().contains("already has these bytes as version 1"), "{again}");

    let fixtures = data("../tests/fixtures");
    let wrong = mtml::commands::models::upload_remote(&endpoint.parse().unwrap(), upload(&fixtures.join("wrong-feature-count.onnx")), CHUNK).await.unwrap_err();
    assert!(wrong.to_string().contains("takes 13 features, but feature set fx@2 has 14"), "{wrong}");
    let not_onnx = dir.path().join("not.onnx");
    std::fs::write(&not_onnx, b"this is not a model").unwrap();
    let refused = mtml::commands::models::upload_remote(&endpoint.parse().unwrap(), upload(&not_onnx), CHUNK).await.unwrap_err();
    assert!(refused.to_string().contains("is not a model mtml can serve"), "{refused}");

    // Raw streams: a truncated body, a damaged one, and no header.
    let bytes = std::fs::read(&v2).unwrap();
    let header = |size: usize, sha256: String| v1::UploadModelChunk {
        part: Some(v1::upload_model_chunk::Part::Header(v1::UploadHeader {
            name: "fx-direction".into(),
            metrics_json: String::new(),
            sha256,
            size_bytes: size as u64,
            uploaded_by: "test".into(),
        })),
    };
    let data_chunk = |b: &[u8]| v1::UploadModelChunk { part: Some(v1::upload_model_chunk::Part::Data(b.to_vec())) };
    let mut client = ModelAdminClient::connect(endpoint.clone()).await.unwrap();
    let truncated = vec![header(bytes.len(), mtml_registry::sha256_hex(&bytes)), data_chunk(&bytes[..bytes.len() / 2])];
    let status = client.upload_model(tokio_stream::iter(truncated)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("truncated"), "{}", status.message());
    let mut damaged_bytes = bytes.clone();
    damaged_bytes[1000] ^= 0xff;
    let damaged = vec![header(bytes.len(), mtml_registry::sha256_hex(&bytes)), data_chunk(&damaged_bytes)];
    let status = client.upload_model(tokio_stream::iter(damaged)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DataLoss);
    assert!(status.message().contains("refusing a damaged copy"), "{}", status.message());
    let unchecked = vec![header(bytes.len(), String::new()), data_chunk(&bytes)];
    let status = client.upload_model(tokio_stream::iter(unchecked)).await.unwrap_err();
    assert!(status.message().contains("carries no sha256"), "{}", status.message());
    let headless = vec![data_chunk(&bytes)];
    let status = client.upload_model(tokio_stream::iter(headless)).await.unwrap_err();
    assert!(status.message().contains("must be its header"), "{}", status.message());

    let listed = client.list_models(v1::ListModelsRequest {}).await.unwrap().into_inner().models;
    assert_eq!(listed.iter().map(|m| m.version.as_str()).collect::<Vec<_>>(), ["1", "2"], "only the good uploads were stored");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_rolls_back_a_drifting_challenger_and_promotes_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let (url, registry) = registry_with_models(dir.path()).await;
    registry.promote("fx-direction", 1, "test", 1).await.unwrap();
    registry.start_rollout("fx-direction", 2, Route::Shadow, "test", 2).await.unwrap();
    let gated = |gate: mtml_rollout::Gate| {
        let mut options = replay_options(eurusd_ticks(), &url);
        options.config.model.registry_poll = Duration::from_millis(20);
        options.config.model.gate = Some(gate);
        options
    };

    // Any probability shift at all breaks this gate: the challenger is withdrawn mid-replay.
    let strict = mtml_rollout::Gate { min_resolved: 50, promote_hit_rate_gain: 1.0, promote_pnl_gain_bps: 0.0, rollback_hit_rate_gain: -1.0, max_psi: 1e-9 };
    let report = replay(gated(strict)).await.unwrap();
    assert_eq!(report.models, "champion fx-direction:1", "the shadow was rolled back");
    assert_eq!(report.pipeline.model_swaps, 1);
    let last = registry.rollout_events("fx-direction").await.unwrap().pop().unwrap();
    assert_eq!((last.action.as_str(), last.version, last.actor.as_str()), ("rollback", 2, "gate"));

    // A gate any challenger meets promotes it once it has the evidence.
    registry.start_rollout("fx-direction", 2, Route::Shadow, "test", 3).await.unwrap();
    let lenient = mtml_rollout::Gate { min_resolved: 50, promote_hit_rate_gain: -1.0, promote_pnl_gain_bps: -1e12, rollback_hit_rate_gain: -2.0, max_psi: 1e9 };
    let report = replay(gated(lenient)).await.unwrap();
    assert_eq!(report.models, "champion fx-direction:2");
    let state = registry.rollout_state("fx-direction").await.unwrap();
    assert_eq!((state.champion, state.challenger), (Some(2), None));
    let last = registry.rollout_events("fx-direction").await.unwrap().pop().unwrap();
    assert_eq!((last.action.as_str(), last.actor.as_str()), ("promote", "gate"));
    assert_eq!(report.pipeline.inference_errors, 0);
    assert_eq!(report.pipeline.predictions, report.pipeline.feature_vectors);
}
