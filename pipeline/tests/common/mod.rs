//! A pipeline on the shipped model and the shared EURUSD sample, with a terminal stand-in that
//! fills every order at once at the quote it was decided on: the whole tick path, tick in to
//! order out and fill back, without sockets. Shared by the tests and the benchmark.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};

use mtml_core::{ChainLog, ExecutionEvent, Fill, OrderRequest, Symbol, Tick};
use mtml_decision::{DecisionConfig, DecisionEngine, Desk, Execution, RiskEngine, RiskLimits, Sizing};
use mtml_inference::{Model, OnnxRuntime};
use mtml_ingestion::{FileTickStamper, TickFileReader};
use mtml_pipeline::{Pipeline, PipelineBuilder};
use mtml_rollout::{Models, Slot};

pub const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/eurusd_fxcm_ticks_2014-05-05_0600-1200.csv.gz");
pub const MODEL: &[u8] = include_bytes!("../../../models/fx-direction-v1.onnx");

pub fn eurusd() -> Symbol {
    Symbol::new("EURUSD")
}

/// The sample's ticks, stamped with chain ids of a fixed prefix.
pub fn sample_ticks() -> Vec<Tick> {
    let mut stamper = FileTickStamper::new("bench");
    TickFileReader::open(SAMPLE).unwrap().map(|row| stamper.stamp(eurusd(), &row.unwrap())).collect()
}

pub fn runtime() -> OnnxRuntime {
    OnnxRuntime::load(&mtml_inference::locate_library(None).unwrap()).unwrap()
}

/// The default decision and risk settings of `mtml` (README, `[decision]` and `[risk]`).
pub fn desk() -> Desk {
    desk_with(|_| {})
}

/// The test desk with its risk limits changed by `change`.
pub fn desk_with(change: impl FnOnce(&mut RiskLimits)) -> Desk {
    let decision = DecisionEngine::new(DecisionConfig {
        buy_above: 0.53,
        sell_below: 0.47,
        min_agreeing: 1,
        sizing: Sizing::FixedLots(0.1),
        max_lots: 1.0,
        cooldown_ms: 60_000,
    });
    let mut limits = RiskLimits::sizes_only([eurusd()].into(), 0.5, 1.0);
    limits.price_band_bps = 50.0;
    limits.max_feature_age_ms = 5_000;
    change(&mut limits);
    Desk::new(decision, RiskEngine::new(limits), Execution::new("t"), 10_000.0)
}

/// Orders the pipeline handed out, not yet answered.
pub type Outbox = Arc<Mutex<Vec<OrderRequest>>>;

/// The wall clock the test pipelines read before their first tick.
pub const WALL_CLOCK_MS: i64 = 1_700_000_000_000;

struct WallClock;

impl mtml_core::clock::Clock for WallClock {
    fn now_ms(&self) -> i64 {
        WALL_CLOCK_MS
    }
}

pub fn pipeline(runtime: &OnnxRuntime, chain_log: Arc<ChainLog>) -> (Pipeline, Outbox) {
    pipeline_with(runtime, chain_log, desk())
}

/// A pipeline on the embedded model with the given desk.
pub fn pipeline_with(runtime: &OnnxRuntime, chain_log: Arc<ChainLog>, desk: Desk) -> (Pipeline, Outbox) {
    let model = Model::from_bytes(runtime, "fx-direction", MODEL).unwrap();
    let models = Models::champion_only(Slot { label: "fx-direction:embedded".into(), born_ms: None, model });
    let outbox = Outbox::default();
    let sink = Arc::clone(&outbox);
    let orders = Box::new(move |order: OrderRequest| sink.lock().unwrap().push(order));
    let pipeline =
        PipelineBuilder::new([eurusd()], models, desk, orders).chain_log(chain_log).clock(Arc::new(WallClock)).build();
    (pipeline, outbox)
}

/// Fills every order handed out at the tick's quote (the ask to buy, the bid to sell).
pub fn fill_all(pipeline: &mut Pipeline, outbox: &Outbox, tick: &Tick) -> usize {
    let orders: Vec<OrderRequest> = std::mem::take(&mut *outbox.lock().unwrap());
    for (n, order) in orders.iter().enumerate() {
        let price = match order.side {
            mtml_core::Side::Buy => tick.ask,
            mtml_core::Side::Sell => tick.bid,
        };
        pipeline.on_event(&ExecutionEvent::Filled(Fill {
            chain_id: order.chain_id,
            client_order_id: order.client_order_id.clone(),
            ticket: n as u64 + 1,
            symbol: order.symbol.clone(),
            side: order.side,
            volume: order.volume,
            price,
            time_msc: tick.time_msc,
        }));
    }
    orders.len()
}

/// Every tick through the pipeline, each order filled right after its tick. Returns the
/// orders in the order they were made.
pub fn run(pipeline: &mut Pipeline, outbox: &Outbox, ticks: &[Tick]) -> Vec<OrderRequest> {
    let mut all = Vec::new();
    for tick in ticks {
        pipeline.on_tick(tick);
        all.extend(outbox.lock().unwrap().iter().cloned());
        fill_all(pipeline, outbox, tick);
    }
    all
}
