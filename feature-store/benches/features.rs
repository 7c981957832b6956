//! Feature update cost per tick and per bar (every update is meant to be O(1)).
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mtml_core::{Bar, ChainIdGenerator, Ohlc, Symbol, Tick};
use mtml_feature_store::FeatureEngine;

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
}

criterion_group!(benches, features);
criterion_main!(benches);
