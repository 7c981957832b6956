//! Notices the bot sends from real faults and real rollouts of a running instance: a stale model
//! refused by risk, feature drift, a model promoted and rolled back from the chat and by the
//! gate, a broker rejecting orders, slow orders, and the online store going down and coming back.
//! The terminal is the simulator streaming recorded ticks; the store is a real Redis server the
//! test stops and starts; the chat is the local Bot API stand-in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mtml::{App, Config, Listeners};
use mtml_ingestion::TickFileReader;
use mtml_proto::v1;
use mtml_proto::v1::model_admin_client::ModelAdminClient;
use mtml_registry::{NewVersion, Registry};
use mtml_simulator::{Fault, SimSymbol, SimTick, SimulatorConfig, run_simulator_with_fault};
use mtml_test_support::RedisServer;
use mtml_test_support::bot_api::{BotApi, Sent};
use mtml_tests::{data, eurusd_sample};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "5550002:AAH-another-secret-token";
const CHAT: i64 = 77;
const ACTOR: u64 = 31;
const WAIT: Duration = Duration::from_secs(90);
const DAY_MS: i64 = 86_400_000;

/// Waits until a message containing `needle` is sent after the first `after`; that message.
async fn message_containing(api: &BotApi, after: usize, needle: &str) -> Sent {
    let sent = api.wait_for(WAIT, needle, |sent| sent[after.min(sent.len())..].iter().any(|s| s.text.contains(needle))).await;
    sent[after..].iter().find(|s| s.text.contains(needle)).unwrap().clone()
}

/// Asks for a destructive command, presses its confirmation button, and returns the answer.
async fn confirmed(api: &BotApi, command: &str, answer: &str) -> Sent {
    let seen = api.sent().len();
    api.user_says(ACTOR, CHAT, command);
    let ask = message_containing(api, seen, &format!("Confirm {command}?")).await;
    api.user_presses(ACTOR, CHAT, ask.message_id, &ask.buttons[0]);
    message_containing(api, seen, answer).await
}

fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Registers a shipped model as the next version of fx-direction, uploaded at `uploaded_ms`.
async fn register(registry: &Registry, runtime: &mtml_inference::OnnxRuntime, file: u32, uploaded_ms: i64) -> i64 {
    let bytes = std::fs::read(data("../models").join(format!("fx-direction-v{file}.onnx"))).unwrap();
    let signature = mtml_inference::Model::from_bytes(runtime, "fx-direction", &bytes).unwrap().signature().clone();
    let version = NewVersion {
        name: "fx-direction".into(),
        input_name: signature.input,
        features: signature.features as i64,
        output_name: signature.probabilities,
        feature_set: signature.feature_set.unwrap(),
        metrics: "{}".into(),
        uploaded_by: "test".into(),
        uploaded_ms,
        onnx: bytes,
    };
    registry.register(&version).await.unwrap().version
}

/// The sample three times over, each pass shifted an hour past the one before (a long session).
fn looped_sample() -> Vec<SimTick> {
    let rows: Vec<_> = TickFileReader::open(eurusd_sample()).unwrap().map(|row| row.unwrap()).collect();
    let span = rows.last().unwrap().time_msc - rows[0].time_msc + 3_600_000;
    (0..3)
        .flat_map(|pass| rows.iter().map(move |r| SimTick { symbol: "EURUSD".into(), time_msc: r.time_msc + pass * span, bid: r.bid, ask: r.ask }))
        .collect()
}

/// A distribution of training features far from any live value: every feature drifts.
fn distribution_elsewhere(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("distribution.json");
    mtml::commands::export::export_features(&eurusd_sample(), Some("EURUSD"), &dir.join("rows.csv"), Some(&path)).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for feature in json["features"].as_array_mut().unwrap() {
        for edge in feature["edges"].as_array_mut().unwrap() {
            *edge = serde_json::json!(edge.as_f64().unwrap() + 1e6);
        }
    }
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_rollouts_of_a_running_instance_reach_the_chat() {
    let api = BotApi::start(TOKEN).await;
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let registry_url = format!("sqlite://{}?mode=rwc", dir.path().join("registry.db").display());
    let registry = Registry::open(&registry_url).await.unwrap();
    let mut config = Config::defaults();
    let runtime = mtml::runtime::load_runtime(&config).unwrap();
    // The champion was uploaded ten days ago, over the seven-day age limit; version 2 is fresh.
    let old = register(&registry, &runtime, 1, now_ms() - 10 * DAY_MS).await;
    let fresh = register(&registry, &runtime, 2, now_ms()).await;
    registry.promote("fx-direction", old, "test", now_ms()).await.unwrap();

    config.bridge.token = "tok".into();
    config.journal.url = format!("sqlite://{}?mode=rwc", dir.path().join("journal.db").display());
    config.registry.url = registry_url;
    config.features.online = redis.url();
    config.features.history = "none".into();
    config.features.store_timeout = Duration::from_millis(300);
    config.model.from_registry = true;
    config.model.registry_poll = Duration::from_millis(100);
    config.model.max_age_days = 7;
    config.model.feature_distribution = Some(distribution_elsewhere(dir.path()));
    config.model.drift_window = 500;
    // A challenger is judged as soon as both models have a resolved signal, and never passes.
    config.model.gate = Some(mtml_rollout::Gate { min_resolved: 1, promote_hit_rate_gain: 2.0, promote_pnl_gain_bps: 0.0, rollback_hit_rate_gain: 1.5, max_psi: 1e9 });
    // Signals resolve four market hours on (some 13 000 ticks): the chat can compare before the gate judges.
    config.model.compare_horizon_ms = 4 * 3_600_000;
    // Every order counts as slow.
    config.pipeline.slow_order = Duration::from_nanos(1);
    config.pipeline.stale_features_ms = i64::MAX / 2;
    config.telegram.token = TOKEN.into();
    config.telegram.api_url = api.url.clone();
    config.telegram.chats = vec![CHAT];
    config.telegram.act_users = vec![ACTOR];
    config.telegram.poll = Duration::from_secs(1);

    let bridge = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut app = App::start(&config, &runtime, Listeners { bridge: Some(bridge), grpc: Some(grpc), metrics: None }).await.unwrap();
    app.start_telegram_console(mtml::commands::telegram::Operations::of(&app).unwrap());
    let mut models = ModelAdminClient::connect(format!("http://{}", app.grpc_addr.unwrap())).await.unwrap();
    // A terminal whose broker rejects every order, streaming a long session as a live feed does.
    let stop = CancellationToken::new();
    let sim_config = SimulatorConfig { token: "tok".into(), symbols: vec![SimSymbol { name: "EURUSD".into(), digits: 5 }], ticks_per_second: Some(800), ..SimulatorConfig::default() };
    let stream = tokio::net::TcpStream::connect(app.bridge_addr.unwrap()).await.unwrap();
    let terminal = tokio::spawn(run_simulator_with_fault(stream, sim_config, looped_sample(), Fault::RejectOrders, stop.clone()));

    // The stale champion's orders are refused by risk; features drift from their training values.
    message_containing(&api, 0, "📉 stale model fx-direction:1").await;
    message_containing(&api, 0, "📉 feature drift").await;

    // The chat lists the models and promotes the fresh one; orders flow, are slow, and the broker refuses them.
    let seen = api.sent().len();
    api.user_says(ACTOR, CHAT, "/models");
    let list = message_containing(&api, seen, "2 versions").await;
    assert!(list.text.contains("champion") && list.text.contains("registered"), "{}", list.text);
    confirmed(&api, &format!("/promote fx-direction:{fresh}"), "this instance serves revision").await;
    message_containing(&api, seen, &format!("🧠 model promote: fx-direction:{fresh} champion in place of {old}")).await;
    assert!(api.sent()[seen..].iter().any(|s| s.text.contains(&format!("(by telegram:{ACTOR})"))), "the notice names who");
    let seen = api.sent().len();
    let signal = message_containing(&api, seen, "📈 signal").await;
    assert!(signal.text.contains(&format!("fx-direction:{fresh}")), "{}", signal.text);
    message_containing(&api, seen, "⛔ broker rejected").await;
    message_containing(&api, seen, "🐢 slow order EURUSD").await;

    // The online store goes down and comes back.
    let seen = api.sent().len();
    redis.stop();
    let down = message_containing(&api, seen, "store down").await;
    assert!(down.text.contains("redis"), "{}", down.text);
    redis.restart();
    message_containing(&api, seen, "store back after").await;

    // An operator puts the old model on trial; the chat compares; the gate rolls it back.
    let seen = api.sent().len();
    let request = v1::RolloutRequest { name: "fx-direction".into(), version: old, route: Some(v1::rollout_request::Route::Shadow(v1::Shadow {})), actor: "operator".into() };
    models.rollout(request).await.unwrap();
    message_containing(&api, seen, "(by operator)").await;
    api.user_says(ACTOR, CHAT, "/compare fx-direction");
    let compared = message_containing(&api, seen, "challenger on shadow").await;
    assert!(compared.text.contains(&format!("fx-direction:{old}")), "{}", compared.text);
    let gate = message_containing(&api, seen, "(by gate)").await;
    assert!(gate.text.contains("🧠 model rollback"), "{}", gate.text);

    // The chat rolls the champion back to the version before it.
    let seen = api.sent().len();
    confirmed(&api, "/rollback fx-direction", &format!("champion {fresh} rolled back to {old}")).await;
    message_containing(&api, seen, &format!("(by telegram:{ACTOR})")).await;

    stop.cancel();
    let _ = terminal.await.unwrap();
    drop(models);
    app.stop().await.unwrap();
    assert_eq!(api.flood_violations(), 0, "never two messages to the chat within a second");
    let all: String = api.sent().iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join("\n");
    assert!(!all.contains("secret-token"), "the token is never in a message");
}
