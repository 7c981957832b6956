//! Feature update cost per tick and per bar (every update is meant to be O(1)), and what handing
//! a vector and a tick to the store writers costs the tick path.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mtml_core::{Bar, ChainIdGenerator, Ohlc, Symbol, Tick};
use mtml_feature_store::{FeatureEngine, HistoryPoint, HistoryWriter, MemoryStore, OnlineWriter, WriterSettings};

fn features(c: &mut Criterion) {
    let symbol = Symbol::new("EURUSD");
    let mut engine = FeatureEngine::new();
    for i in 0..40 {
        let price = 1.38 + f64::from(i % 7) * 1e-4;
        engine.on_bar(&Bar {
            symbol: symbol.clone(),
            open_time_ms: i64::from(i) * 60_000,
            width_ms: 60_000,
            bid: Ohlc::new(price),
            ask: Ohlc::new(price + 1e-4),
            ticks: 20,
        });
    }
    let tick = Tick {
        chain_id: ChainIdGenerator::with_prefix(1).next_id(),
        symbol: symbol.clone(),
        time_msc: 41 * 60_000,
        bid: 1.3801,
        ask: 1.3802,
        seq: 1,
        terminal: Arc::from("bench"),
        received_ns: 1,
    };
    c.bench_function("feature update per tick (warm)", |b| {
        b.iter(|| engine.on_tick(black_box(&tick)).unwrap())
    });
    let bar = Bar {
        symbol,
        open_time_ms: 0,
        width_ms: 60_000,
        bid: Ohlc::new(1.38),
        ask: Ohlc::new(1.3801),
        ticks: 30,
    };
    c.bench_function("feature update per bar", |b| b.iter(|| engine.on_bar(black_box(&bar))));

    // The writers' own tasks run on a runtime beside the bench, as in the pipeline. History goes
    // to a store that takes everything at once, so the backlog stays in memory: this is the
    // hand-off a live feed pays, not the spill of a store that cannot keep up.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let vector = engine.on_tick(&tick).unwrap();
    let (online, history) = runtime.block_on(async {
        let (online, _) = OnlineWriter::spawn(Arc::new(MemoryStore::new(5_000)), std::time::Duration::from_millis(100));
        let store = Null;
        let wal = std::env::temp_dir().join(format!("mtml-bench-{}.wal", std::process::id()));
        // Room enough that a bench pushing millions of points a second never spills to the file.
        let settings = WriterSettings { memory_points: 50_000_000, ..WriterSettings::new(wal) };
        let (history, _) = HistoryWriter::spawn(Arc::new(store), settings).unwrap();
        (online, history)
    });
    c.bench_function("store hand-off per tick (online put + history tick and vector)", |b| {
        b.iter(|| {
            online.put(black_box(&vector));
            history.push(HistoryPoint::tick(black_box(&tick)));
            history.push(HistoryPoint::features(black_box(&vector)));
        })
    });
    history.close();
    online.close();
}

/// A history store that takes every write at once and keeps nothing.
#[derive(Debug)]
struct Null;

#[async_trait::async_trait]
impl mtml_feature_store::HistoryStore for Null {
    fn describe(&self) -> String {
        "null".into()
    }
    async fn write(&self, _: &[HistoryPoint]) -> Result<(), mtml_feature_store::StoreError> {
        Ok(())
    }
    async fn ticks(&self, _: &Symbol, _: mtml_feature_store::TimeRange) -> Result<Vec<mtml_feature_store::history::TickRecord>, mtml_feature_store::StoreError> {
        Ok(Vec::new())
    }
    async fn bars(&self, _: &Symbol, _: &str, _: mtml_feature_store::TimeRange) -> Result<Vec<mtml_feature_store::history::BarRecord>, mtml_feature_store::StoreError> {
        Ok(Vec::new())
    }
    async fn features(&self, _: &Symbol, _: mtml_feature_store::TimeRange) -> Result<Vec<mtml_feature_store::history::FeatureVectorRecord>, mtml_feature_store::StoreError> {
        Ok(Vec::new())
    }
}

criterion_group!(benches, features);
criterion_main!(benches);
