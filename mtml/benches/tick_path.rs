//! The synchronous tick path without I/O: ingest and features for one tick, and one ONNX
//! prediction with the shipped model through ONNX Runtime.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mtml::Config;
use mtml::featurize::Featurizer;
use mtml_core::{Symbol, Tick};
use mtml_ingestion::{FileTickStamper, TickFileReader};

fn tick_path(c: &mut Criterion) {
    let config = Config::defaults();
    let runtime = mtml::app::load_runtime(&config).unwrap();
    let mut model = mtml::app::load_model(&runtime, &config).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/eurusd_fxcm_ticks_2014-05-05_0600-1200.csv.gz");
    let mut stamper = FileTickStamper::new("bench");
    let ticks: Vec<Tick> = TickFileReader::open(path)
        .unwrap()
        .map(|row| stamper.stamp(Symbol::new("EURUSD"), &row.unwrap()))
        .collect();
    let mut vector = None;
    let mut featurizer = Featurizer::new([Symbol::new("EURUSD")], 1_000, &[]);
    for tick in &ticks {
        let ingested = featurizer.ingest(tick).unwrap();
        vector = featurizer.features(tick, ingested.closed_bar.as_ref()).or(vector);
    }
    let inputs = vector.unwrap().as_f32();
    c.bench_function("onnx predict (fx-direction v1)", |b| {
        b.iter(|| model.predict(black_box(&inputs)).unwrap())
    });
    c.bench_function("ingest + features over the 18 967-tick sample (per run)", |b| {
        b.iter(|| {
            let mut featurizer = Featurizer::new([Symbol::new("EURUSD")], 1_000, &[]);
            for tick in &ticks {
                let ingested = featurizer.ingest(tick).unwrap();
                black_box(featurizer.features(tick, ingested.closed_bar.as_ref()));
            }
        })
    });
}

criterion_group!(benches, tick_path);
criterion_main!(benches);
