//! The stores against real servers: Redis and InfluxDB, each started by the test on free ports
//! (see `mtml-test-support`), stopped mid-stream for the outage tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mtml_core::Symbol;
use mtml_feature_store::history::influx::InfluxV1;
use mtml_feature_store::history::{HistoryPoint, HistoryStore, NS_PER_MS, TimeRange, conformance as history_conformance};
use mtml_feature_store::store::conformance as online_conformance;
use mtml_feature_store::{HistoryWriter, OnlineStore, OnlineWriter, RedisSettings, RedisStore, StoreError, WriterSettings};
use mtml_test_support::{InfluxServer, RedisServer};

fn redis_store(server: &RedisServer) -> RedisStore {
    let mut settings = RedisSettings::new(&server.url());
    settings.timeout = Duration::from_millis(500);
    RedisStore::new(settings).expect("a valid Redis URL")
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{what} did not happen within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

mod redis_conformance {
    use super::*;

    async fn open() -> (RedisStore, RedisServer) {
        let server = RedisServer::start();
        (redis_store(&server), server)
    }

    async fn close(_store: RedisStore, _server: RedisServer) {}

    mtml_feature_store::online_store_conformance!(mtml_feature_store::store::conformance => open, close);
}

#[tokio::test]
async fn a_damaged_redis_value_is_an_error_naming_the_key() {
    let server = RedisServer::start();
    let store = redis_store(&server);
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = store.key(&Symbol::new("EURUSD"));
    let _: () = redis::cmd("SET").arg(&key).arg("not a vector").query_async(&mut connection).await.unwrap();
    let error = store.latest(&Symbol::new("EURUSD"), 0).await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains(&key), "{error}");
}

#[tokio::test]
async fn redis_keys_expire_after_the_ttl() {
    let server = RedisServer::start();
    let mut settings = RedisSettings::new(&server.url());
    settings.ttl = Duration::from_millis(200);
    let store = RedisStore::new(settings).unwrap();
    store.put_many(&[online_conformance::vector("EURUSD", 1_000, 1.0)]).await.unwrap();
    assert!(store.latest(&Symbol::new("EURUSD"), 1_000).await.unwrap().is_some());
    eventually("the key expiring", async || store.latest(&Symbol::new("EURUSD"), 1_000).await.unwrap().is_none().then_some(())).await;
}

#[tokio::test]
async fn while_redis_is_down_reads_fail_by_name_and_the_writer_catches_up_when_it_returns() {
    let mut server = RedisServer::start();
    let store = Arc::new(redis_store(&server));
    let (writer, task) = OnlineWriter::spawn(store.clone(), Duration::from_millis(20));
    writer.put(&online_conformance::vector("EURUSD", 1_000, 1.0));
    let eur = Symbol::new("EURUSD");
    eventually("the first write", async || store.latest(&eur, 1_000).await.ok().flatten()).await;

    server.stop();
    for t in 2..=500 {
        writer.put(&online_conformance::vector("EURUSD", t * 1_000, t as f64));
    }
    let error = eventually("a read failing", async || store.latest(&eur, 0).await.err()).await;
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error}");
    assert!(error.to_string().contains(&server.url()), "the error names the store: {error}");
    let stats = writer.stats();
    eventually("the outage showing", async || stats.outage.load(std::sync::atomic::Ordering::Relaxed).then_some(())).await;

    server.restart();
    let latest = eventually("the latest vector arriving", async || {
        store.latest(&eur, 500_000).await.ok().flatten().filter(|l| l.vector.time_msc == 500_000)
    })
    .await;
    assert_eq!(latest.vector, online_conformance::vector("EURUSD", 500_000, 500.0), "the newest vector, not a stale one");
    writer.close();
    task.await.unwrap();
    assert!(!stats.outage.load(std::sync::atomic::Ordering::Relaxed));
    assert!(stats.write_failures.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn redis_down_at_start_is_an_error_not_a_crash() {
    let mut server = RedisServer::start();
    server.stop();
    let store = redis_store(&server);
    let error = store.latest(&Symbol::new("EURUSD"), 0).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error}");
    server.restart();
    let store_after = eventually("a read working once Redis is up", async || store.latest(&Symbol::new("EURUSD"), 0).await.ok()).await;
    assert_eq!(store_after, None);
}

mod influxdb_conformance {
    use super::*;

    async fn open() -> (InfluxV1, InfluxServer) {
        let server = InfluxServer::start();
        (InfluxV1::new(&server.url("mtml_conformance"), Duration::from_secs(5)).expect("a valid InfluxDB URL"), server)
    }

    async fn close(_store: InfluxV1, _server: InfluxServer) {}

    mtml_feature_store::history_store_conformance!(mtml_feature_store::history::conformance => open, close);
}

#[tokio::test]
async fn influxdb_refuses_bad_data_by_name_and_a_wrong_endpoint_says_what_was_expected() {
    let server = InfluxServer::start();
    let store = InfluxV1::new(&server.url("mtml_bad"), Duration::from_secs(5)).unwrap();
    let mut tick = history_conformance::tick("EURUSD", 1_000, 1, 1.1);
    tick.bid = f64::INFINITY;
    let error = store.write(&[HistoryPoint::Tick(tick)]).await.unwrap_err();
    assert!(matches!(error, StoreError::Refused { .. }) && error.to_string().contains("bid is inf"), "{error}");

    // Nothing listens here: unavailable, naming the address.
    let port = mtml_test_support::free_port();
    let down = InfluxV1::new(&format!("http://127.0.0.1:{port}/mtml"), Duration::from_secs(1)).unwrap();
    let error = down.write(&[HistoryPoint::Tick(history_conformance::tick("EURUSD", 1_000, 1, 1.1))]).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }) && error.to_string().contains(&port.to_string()), "{error}");
}

/// The outage test: InfluxDB is killed mid-stream and restarted; every point pushed
/// arrives exactly once.
#[tokio::test]
async fn influxdb_killed_mid_stream_and_restarted_loses_and_duplicates_nothing() {
    let mut server = InfluxServer::start();
    let store: Arc<dyn HistoryStore> = Arc::new(InfluxV1::new(&server.url("mtml_outage"), Duration::from_secs(2)).unwrap());
    let wal = tempfile::tempdir().unwrap();
    let settings = WriterSettings {
        batch_points: 5_000,
        memory_points: 8_000,
        wal_path: wal.path().join("history.wal"),
        retry: Duration::from_millis(50),
        max_retry: Duration::from_millis(300),
        flush_interval: Duration::from_millis(20),
    };
    let (writer, task) = HistoryWriter::spawn(store.clone(), settings).unwrap();
    let stats = writer.stats();
    let point = |i: u64| {
        // Ticks of one millisecond in fours: sequence numbers keep them apart.
        HistoryPoint::Tick(history_conformance::tick("EURUSD", 1_400_000_000_000 + (i / 4) as i64, i, 1.3 + (i % 1000) as f64 * 1e-5))
    };
    const TOTAL: u64 = 50_000;
    for i in 0..15_000 {
        writer.push(point(i));
    }
    eventually("the first points stored", async || (stats.snapshot().written >= 10_000).then_some(())).await;

    server.stop();
    for i in 15_000..40_000 {
        writer.push(point(i));
        if i % 5_000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    eventually("the outage showing", async || stats.snapshot().outage.then_some(())).await;
    let during = stats.snapshot();
    assert!(during.in_memory <= 8_000, "memory bounded: {during:?}");
    assert!(during.spilled > 0 && during.in_wal > 0, "the overflow is in the write-ahead file: {during:?}");

    server.restart();
    for i in 40_000..TOTAL {
        writer.push(point(i));
    }
    writer.close();
    task.await.unwrap();
    let after = stats.snapshot();
    assert_eq!((after.accepted, after.written, after.in_memory, after.in_wal, after.refused), (TOTAL, TOTAL, 0, 0, 0), "{after:?}");
    assert!(after.write_failures > 0, "the outage was seen: {after:?}");

    let all = TimeRange::new(0, i64::MAX / NS_PER_MS, 1_000_000);
    let stored = store.ticks(&Symbol::new("EURUSD"), all).await.unwrap();
    let seqs: Vec<u64> = stored.iter().map(|t| t.seq).collect();
    assert_eq!(seqs.len() as u64, TOTAL, "exactly once: no point lost, none twice");
    assert_eq!(seqs, (0..TOTAL).collect::<Vec<_>>(), "every sequence, in time order");
    let HistoryPoint::Tick(expected) = point(31_337) else { unreachable!() };
    assert_eq!(stored[31_337], expected, "values intact");
}
