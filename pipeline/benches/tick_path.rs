//! The synchronous tick path without I/O: one ONNX prediction; ingest and features over the
//! sample; and the whole path, tick in to order out and the fill back (ingest, features,
//! inference, decision, risk, execution), over the sample.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mtml_core::{ChainLog, Symbol};
use mtml_ingestion::QuoteBand;
use mtml_pipeline::Featurizer;

fn tick_path(c: &mut Criterion) {
    let runtime = common::runtime();
    let ticks = common::sample_ticks();
    let mut model = mtml_inference::Model::from_bytes(&runtime, "fx-direction", common::MODEL).unwrap();
    let mut vector = None;
    let mut featurizer = Featurizer::new([Symbol::new("EURUSD")], 1_000, &[]);
    for tick in &ticks {
        let ingested = featurizer.ingest(tick).unwrap();
        vector = featurizer.features(tick, ingested.closed_bar.as_ref()).or(vector);
    }
    let inputs = vector.unwrap().as_f32();
    c.bench_function("onnx predict (fx-direction v1)", |b| b.iter(|| model.predict(black_box(&inputs)).unwrap()));
    for (label, band) in [("", QuoteBand::default()), (", quote filter off", QuoteBand::OFF)] {
        c.bench_function(&format!("ingest + features over the 18 967-tick sample (per run){label}"), |b| {
            b.iter(|| {
                let mut featurizer = Featurizer::new([Symbol::new("EURUSD")], 1_000, &[]).with_band(band);
                for tick in &ticks {
                    let ingested = featurizer.ingest(tick).unwrap();
                    black_box(featurizer.features(tick, ingested.closed_bar.as_ref()));
                }
            })
        });
    }
    let mut group = c.benchmark_group("whole tick path");
    group.sample_size(10);
    group.bench_function("tick to order and fill over the 18 967-tick sample (per run)", |b| {
        // The pipeline (and its ONNX session) is built outside the timed part.
        b.iter_batched(
            || common::pipeline(&runtime, Arc::new(ChainLog::default())),
            |(mut pipeline, outbox)| black_box(common::run(&mut pipeline, &outbox, &ticks)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, tick_path);
criterion_main!(benches);
