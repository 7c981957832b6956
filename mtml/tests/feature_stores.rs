//! The feature stores in a running instance, against real Redis and InfluxDB servers started by
//! the test: a recorded day streamed by a simulated terminal, InfluxDB killed mid-stream and
//! restarted, and then everything read back through the `mtml.v1.Features` gRPC API and compared
//! with `mtml features export`'s offline computation of the same ticks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtml::{App, Config, Listeners};
use mtml_simulator::{Pacing, run_simulator};
use mtml_simulator::{SimSymbol, SimTick, SimulatorConfig};
use mtml_core::{ChainIdGenerator, MINUTE_MS, Symbol, Tick};
use mtml_ingestion::{BarBuilder, TickFileReader};
use mtml_proto::v1::features_client::FeaturesClient;
use mtml_proto::v1::{GetHistoryRequest, GetLatestRequest, HistoryKind, StoreStatusRequest, WriterStatus};
use mtml_test_support::{InfluxServer, RedisServer};
use tokio_util::sync::CancellationToken;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/eurusd_fxcm_ticks_2014-05-05_0600-1200.csv.gz")
}

/// The bars a builder of `width_ms` closes over the whole file (the last one stays open).
fn offline_bars(width_ms: i64) -> Vec<mtml_core::Bar> {
    let mut builder = BarBuilder::new(width_ms);
    let ids = ChainIdGenerator::with_prefix(1);
    TickFileReader::open(sample())
        .unwrap()
        .filter_map(|row| {
            let row = row.unwrap();
            let tick = Tick { chain_id: ids.next_id(), symbol: Symbol::new("EURUSD"), time_msc: row.time_msc, bid: row.bid, ask: row.ask, seq: 0, terminal: Arc::from("t"), received_ns: 0 };
            builder.update(&tick)
        })
        .collect()
}

static LAST_STATUS: std::sync::Mutex<Option<(WriterStatus, WriterStatus)>> = std::sync::Mutex::new(None);

/// The last status read, for the message of a wait that timed out.
fn last_status() -> Option<(WriterStatus, WriterStatus)> {
    LAST_STATUS.lock().unwrap().clone()
}

async fn status(client: &mut FeaturesClient<tonic::transport::Channel>) -> (WriterStatus, WriterStatus) {
    let reply = client.store_status(StoreStatusRequest {}).await.unwrap().into_inner();
    let status = (reply.online.unwrap(), reply.history.unwrap());
    *LAST_STATUS.lock().unwrap() = Some(status.clone());
    status
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < Duration::from_secs(120), "{what} did not happen within 120 s ({:?})", last_status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_through_redis_and_influxdb_with_an_outage_reads_back_equal_to_the_offline_export() {
    let redis = RedisServer::start();
    let mut influx = InfluxServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.bridge.token = "tok".into();
    config.journal.url = "sqlite::memory:".into();
    config.features.online = redis.url();
    config.features.history = influx.url("mtml_e2e");
    config.features.history_wal = dir.path().join("history.wal");
    config.features.history_memory_points = 4_000;
    config.features.store_timeout = Duration::from_millis(500);
    config.features.timeframes = vec!["M5".into(), "H1".into()];
    // Every tick's features are fresh at the replayed market time only.
    config.pipeline.stale_features_ms = i64::MAX / 2;
    let runtime = mtml::runtime::load_runtime(&config).unwrap();
    let bridge = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::start(&config, &runtime, Listeners { bridge: Some(bridge), grpc: Some(grpc), metrics: None }).await.unwrap();
    let mut client = FeaturesClient::connect(format!("http://{}", app.grpc_addr.unwrap()))
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20);

    let ticks: Vec<SimTick> = TickFileReader::open(sample())
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            SimTick { symbol: "EURUSD".into(), time_msc: row.time_msc, bid: row.bid, ask: row.ask }
        })
        .collect();
    let total = ticks.len() as u64;
    let sim_config = SimulatorConfig {
        token: "tok".into(),
        symbols: vec![SimSymbol { name: "EURUSD".into(), digits: 5 }],
        pacing: Some(Pacing { processed: Arc::clone(&app.progress.ticks_seen), advanced: Arc::clone(&app.progress.advanced), max_ahead: 8 }),
        ..SimulatorConfig::default()
    };
    let stream = tokio::net::TcpStream::connect(app.bridge_addr.unwrap()).await.unwrap();
    let stop = CancellationToken::new();
    let simulator = tokio::spawn(run_simulator(stream, sim_config, ticks, stop.clone()));

    // InfluxDB dies a quarter into the day; the tick path carries on regardless.
    wait_for("a quarter of the day", async || app.ticks_seen() >= total / 4).await;
    influx.stop();
    let seen_at_outage = app.ticks_seen();
    wait_for("the outage to show", async || status(&mut client).await.1.outage).await;
    wait_for("ticks flowing during the outage", async || app.ticks_seen() >= seen_at_outage + total / 4).await;
    let (_, during) = status(&mut client).await;
    assert!(during.in_wal > 0 && during.in_memory <= 4_000, "backlog bounded in memory, the rest in the file: {during:?}");
    influx.restart();
    wait_for("the whole day", async || app.ticks_seen() >= total).await;
    wait_for("history to catch up", async || {
        let (_, history) = status(&mut client).await;
        !history.outage && history.written == history.accepted && history.in_wal == 0 && history.in_memory == 0
    })
    .await;
    let (online, history) = status(&mut client).await;
    assert!(history.store.contains("influxdb") && online.store.contains("redis"), "{history:?} {online:?}");
    assert!(history.write_failures > 0 && history.spilled > 0, "the outage was lived through: {history:?}");
    assert_eq!((history.refused, history.in_memory, history.in_wal), (0, 0, 0), "{history:?}");

    // The offline computation of the same ticks.
    let (exported, _) = mtml::commands::export::feature_rows(&sample(), Some("EURUSD")).unwrap();
    let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();

    // Latest features from Redis: the last exported vector, bit for bit.
    let latest = client.get_latest(GetLatestRequest { symbol: "EURUSD".into() }).await.unwrap().into_inner();
    let last = exported.last().unwrap();
    assert_eq!(latest.time_ms, last.time_msc);
    assert_eq!(bits(&latest.features.iter().map(|f| f.value).collect::<Vec<_>>()), bits(&last.values));
    assert_eq!(latest.feature_set, mtml_feature_store::FEATURE_SET.id());

    // Feature history from InfluxDB: every exported vector, in order, bit for bit.
    let all = |kind: HistoryKind, timeframe: &str| GetHistoryRequest {
        kind: kind as i32,
        symbol: "EURUSD".into(),
        timeframe: timeframe.into(),
        from_ms: 0,
        to_ms: i64::MAX / 1_000_000,
        limit: 0,
    };
    let features = client.get_history(all(HistoryKind::Features, "")).await.unwrap().into_inner();
    assert_eq!(features.features.len(), exported.len(), "every vector stored once");
    for (stored, offline) in features.features.iter().zip(&exported) {
        assert_eq!(stored.time_ms, offline.time_msc);
        assert_eq!(bits(&stored.values), bits(&offline.values), "at {}", offline.time_msc);
    }
    assert_eq!(features.feature_names.len(), mtml_feature_store::FEATURE_COUNT);
    assert_eq!(online.accepted, exported.len() as u64, "every vector went to the online writer");
    assert!(online.written >= 1 && online.written <= online.accepted, "coalesced per symbol: {online:?}");

    // Tick history: every tick once, in order, with its chain id.
    let stored_ticks = client.get_history(all(HistoryKind::Ticks, "")).await.unwrap().into_inner().ticks;
    assert_eq!(stored_ticks.len() as u64, total, "every tick stored exactly once");
    assert!(stored_ticks.windows(2).all(|w| w[0].seq < w[1].seq), "in sequence order");
    assert!(stored_ticks.iter().all(|t| t.chain_id.is_some()));

    // Bars of each timeframe equal the offline builder's (the open last bar is not stored).
    for (timeframe, width) in [("M1", MINUTE_MS), ("M5", 5 * MINUTE_MS), ("H1", 60 * MINUTE_MS)] {
        let stored = client.get_history(all(HistoryKind::Bars, timeframe)).await.unwrap().into_inner().bars;
        let offline = offline_bars(width);
        assert_eq!(stored.len(), offline.len(), "{timeframe} bar count");
        for (s, o) in stored.iter().zip(&offline) {
            assert_eq!((s.open_time_ms, s.width_ms, s.ticks), (o.open_time_ms, o.width_ms, o.ticks), "{timeframe}");
            assert_eq!([s.bid_open, s.bid_high, s.bid_low, s.bid_close], [o.bid.open, o.bid.high, o.bid.low, o.bid.close], "{timeframe}");
            assert_eq!([s.ask_open, s.ask_high, s.ask_low, s.ask_close], [o.ask.open, o.ask.high, o.ask.low, o.ask.close], "{timeframe}");
        }
    }

    // Bad requests say what is wrong.
    let unknown = client.get_latest(GetLatestRequest { symbol: "XAUUSD".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(unknown.message().contains("XAUUSD") && unknown.message().contains("EURUSD"), "{unknown:?}");
    let bad = client.get_history(all(HistoryKind::Bars, "M7x")).await.unwrap_err();
    assert!(bad.message().contains("M7x"), "{bad:?}");
    let backwards = client.get_history(GetHistoryRequest { from_ms: 10, to_ms: 5, ..all(HistoryKind::Ticks, "") }).await.unwrap_err();
    assert_eq!(backwards.code(), tonic::Code::InvalidArgument);

    // Redis down: the read fails by name, and the instance keeps serving.
    drop(redis);
    let down = client.get_latest(GetLatestRequest { symbol: "EURUSD".into() }).await.unwrap_err();
    assert_eq!(down.code(), tonic::Code::Unavailable);
    assert!(down.message().contains("redis"), "{down:?}");
    assert!(client.store_status(StoreStatusRequest {}).await.is_ok(), "still serving");

    stop.cancel();
    let _ = simulator.await;
    app.stop().await.unwrap();
    assert!(!dir.path().join("history.wal").exists(), "the drained write-ahead file is removed at shutdown");
}
