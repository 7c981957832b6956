//! Load tool for ingestion and the feature stores, against real servers it starts itself (Redis
//! and InfluxDB, as the tests do): Redis writes/s and read latency, InfluxDB and SQLite points/s,
//! the cost of a history push on the tick path, ticks/s through the gRPC ingestion stream with
//! features, and the recorded week replayed with the stores on and off.
//!
//! `cargo run --release -p mtml --example store_load` (needs `redis-server` and `influxd`, from
//! `MTML_TEST_REDIS_SERVER`/`MTML_TEST_INFLUXD` or `PATH`). The numbers go into
//! docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mtml::Config;
use mtml_pipeline::Featurizer;
use mtml_core::{ChainIdGenerator, Symbol, Tick};
use mtml_feature_store::history::influx::InfluxV1;
use mtml_feature_store::history::sqlite::SqliteHistory;
use mtml_feature_store::store::conformance::vector;
use mtml_feature_store::{FeatureVector, HistoryPoint, HistoryStore, HistoryWriter, OnlineStore, RedisSettings, RedisStore, WriterSettings};
use mtml_ingestion::grpc::{IngestionService, forward_ticks};
use mtml_test_support::{InfluxServer, RedisServer};

fn vectors(n: usize, symbols: usize) -> Vec<FeatureVector> {
    (0..n).map(|i| vector(&format!("SYM{}", i % symbols), 1_400_000_000_000 + i as i64, i as f64 * 0.001)).collect()
}

fn feature_points(n: usize) -> Vec<HistoryPoint> {
    vectors(n, 4).iter().map(HistoryPoint::features).collect()
}

fn rate(n: usize, elapsed: Duration) -> String {
    format!("{:.0}", n as f64 / elapsed.as_secs_f64())
}

async fn online(store: &dyn OnlineStore, name: &str) {
    let batch = vectors(100, 20);
    let rounds = 500;
    let start = Instant::now();
    for _ in 0..rounds {
        store.put_many(&batch).await.unwrap();
    }
    println!("| {name} put_many, 100 vectors per round trip | {} vectors/s |", rate(rounds * 100, start.elapsed()));
    let one = vectors(1, 1);
    let start = Instant::now();
    for _ in 0..5_000 {
        store.put_many(&one).await.unwrap();
    }
    println!("| {name} put_many, 1 vector per round trip | {} vectors/s |", rate(5_000, start.elapsed()));
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let symbol = Symbol::new("SYM0");
    for _ in 0..10_000 {
        let t = Instant::now();
        store.latest(&symbol, 0).await.unwrap().unwrap();
        latency.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    println!(
        "| {name} latest (one GET) | p50 {:.1} µs, p99 {:.1} µs |",
        latency.value_at_quantile(0.5) as f64 / 1e3,
        latency.value_at_quantile(0.99) as f64 / 1e3
    );
}

async fn history(store: &dyn HistoryStore, name: &str) {
    let points = feature_points(100_000);
    let start = Instant::now();
    for chunk in points.chunks(5_000) {
        store.write(chunk).await.unwrap();
    }
    println!("| {name} write, feature vectors in batches of 5 000 | {} points/s |", rate(points.len(), start.elapsed()));
    let ticks: Vec<HistoryPoint> = (0..100_000u64)
        .map(|i| HistoryPoint::Tick(mtml_feature_store::history::conformance::tick("EURUSD", 1_400_000_000_000 + i as i64, i, 1.3)))
        .collect();
    let start = Instant::now();
    for chunk in ticks.chunks(5_000) {
        store.write(chunk).await.unwrap();
    }
    println!("| {name} write, ticks in batches of 5 000 | {} points/s |", rate(ticks.len(), start.elapsed()));
}

async fn push_cost(store: Arc<dyn HistoryStore>, wal: PathBuf) {
    let (writer, task) = HistoryWriter::spawn(store, WriterSettings::new(wal)).unwrap();
    let points = feature_points(200_000);
    let start = Instant::now();
    for point in points {
        writer.push(point);
    }
    let pushed = start.elapsed();
    writer.close();
    task.await.unwrap();
    let drained = start.elapsed();
    println!(
        "| HistoryWriter::push on the tick path (InfluxDB behind) | {:.0} ns per point; 200 000 written after {:.2} s |",
        pushed.as_nanos() as f64 / 200_000.0,
        drained.as_secs_f64()
    );
}

async fn ingestion_with_features() {
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/eurusd_fxcm_ticks_2014-05-04_07.csv.gz");
    let ids = ChainIdGenerator::new();
    let ticks: Vec<Tick> = mtml_ingestion::TickFileReader::open(sample)
        .unwrap()
        .enumerate()
        .map(|(i, row)| {
            let row = row.unwrap();
            Tick { chain_id: ids.next_id(), symbol: Symbol::new("EURUSD"), time_msc: row.time_msc, bid: row.bid, ask: row.ask, seq: i as u64 + 1, terminal: Arc::from("1@s/1"), received_ns: 0 }
        })
        .collect();
    let total = ticks.len();
    let (pipeline_tx, mut pipeline_rx) = tokio::sync::mpsc::channel(4096);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IngestionService::new(pipeline_tx).into_server())
            .serve_with_incoming(mtml::services::grpc_incoming(listener)),
    );
    let consumer = std::thread::spawn(move || {
        let mut featurizer = Featurizer::new([Symbol::new("EURUSD")], 1_000, &[300_000, 3_600_000]);
        let mut vectors = 0;
        while let Some(tick) = pipeline_rx.blocking_recv() {
            let ingested = featurizer.ingest(&tick).unwrap();
            vectors += u64::from(featurizer.features(&tick, ingested.closed_bar.as_ref()).is_some());
        }
        vectors
    });
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let start = Instant::now();
    let forwarder = tokio::spawn(forward_ticks(tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap(), mtml_auth::Bearer::default(), rx));
    for tick in ticks {
        tx.send(tick).await.unwrap();
    }
    drop(tx);
    let stats = forwarder.await.unwrap().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(stats.accepted, total as u64);
    println!("| gRPC StreamTicks (batches of up to 512) into validation, bars (M1, M5, H1) and features | {} ticks/s ({total} ticks) |", rate(total, elapsed));
    drop(consumer);
}

async fn replay_week(label: &str, config: Config) {
    let options = mtml::ReplayOptions {
        ticks: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/eurusd_fxcm_ticks_2014-05-04_07.csv.gz"),
        symbol: Some("EURUSD".into()),
        config,
        config_given: true,
        max_ahead: mtml::commands::replay::DEFAULT_MAX_AHEAD,
        terminal_balance: None,
    };
    let report = mtml::replay(options).await.unwrap();
    println!("| replay of the week, {label} | {} ticks/s, {} orders |", report.ticks_per_sec, report.orders_sent);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let redis = RedisServer::start();
    let influx = InfluxServer::start();
    let dir = tempfile::tempdir().unwrap();
    println!("| what | result |\n|---|---|");
    online(&mtml_feature_store::MemoryStore::new(5_000), "memory").await;
    online(&RedisStore::new(RedisSettings::new(&redis.url())).unwrap(), "Redis").await;
    history(&InfluxV1::new(&influx.url("load"), Duration::from_secs(10)).unwrap(), "InfluxDB 1.6 (v1 API, gzip)").await;
    let sqlite_url = format!("sqlite://{}", dir.path().join("h.db").display());
    history(&SqliteHistory::open(&sqlite_url).await.unwrap(), "SQLite file").await;
    push_cost(Arc::new(InfluxV1::new(&influx.url("push"), Duration::from_secs(10)).unwrap()), dir.path().join("push.wal")).await;
    ingestion_with_features().await;

    let mut base = Config::defaults();
    base.pipeline.symbols = vec!["EURUSD".into()];
    base.journal.url = "sqlite::memory:".into();
    let mut off = base.clone();
    off.features.history = "none".into();
    replay_week("memory online store, no history", off).await;
    let mut embedded = base.clone();
    embedded.features.history = format!("sqlite://{}", dir.path().join("week.db").display());
    embedded.features.history_wal = dir.path().join("week-sqlite.wal");
    replay_week("memory online store, SQLite history", embedded).await;
    let mut servers = base.clone();
    servers.features.online = redis.url();
    servers.features.history = influx.url("week");
    servers.features.history_wal = dir.path().join("week-influx.wal");
    replay_week("Redis online store, InfluxDB history", servers).await;
}
