//! The tick path from tick in to order out, and the fill back, without sockets.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use mtml_core::{ChainLog, Stage};

#[test]
fn the_sample_goes_from_ticks_to_orders_and_fills_the_same_way_every_run() {
    let runtime = common::runtime();
    let ticks = common::sample_ticks();
    let log = Arc::new(ChainLog::default());
    let (mut pipeline, outbox) = common::pipeline(&runtime, Arc::clone(&log));
    let orders = common::run(&mut pipeline, &outbox, &ticks);
    let outcome = pipeline.finish();
    let counters = &outcome.counters;
    assert_eq!(counters.ticks_seen, ticks.len() as u64);
    assert_eq!(counters.ticks_ingested + counters.ticks_rejected.values().sum::<u64>(), counters.ticks_seen, "every tick ingested or refused by name");
    assert_eq!(counters.predictions, counters.feature_vectors);
    assert!(!orders.is_empty(), "the model trades the sample");
    assert_eq!(outcome.execution.orders_sent, orders.len() as u64);
    assert_eq!(outcome.execution.fills, orders.len() as u64, "every order filled");
    // The position is the sum of the fills, and one target move at a time of 0.1 lots.
    let net: f64 = orders.iter().map(|o| o.volume * o.side.sign()).sum();
    let position = outcome.positions[&common::eurusd()].lots;
    assert!((position - net).abs() < 1e-9, "{position} against {net}");
    assert!(position.abs() <= 0.1 + 1e-9);
    // An order's chain has every stage of the synchronous path, in order.
    let stages: Vec<Stage> = log.chain(orders[0].chain_id).unwrap().iter().map(|s| s.stage).collect();
    assert_eq!(stages, [Stage::Ingest, Stage::Features, Stage::Inference, Stage::Decision, Stage::Risk, Stage::Execution]);

    // The same ticks again: the same orders, at the same prices and chains.
    let (mut again, outbox) = common::pipeline(&runtime, Arc::new(ChainLog::default()));
    let repeated = common::run(&mut again, &outbox, &ticks);
    let key = |o: &mtml_core::OrderRequest| (o.chain_id, o.side, o.volume.to_bits(), o.decision_price.to_bits());
    assert_eq!(orders.iter().map(key).collect::<Vec<_>>(), repeated.iter().map(key).collect::<Vec<_>>());
}

#[test]
fn a_halted_pipeline_decides_but_sends_nothing() {
    let runtime = common::runtime();
    let ticks = common::sample_ticks();
    let (mut pipeline, outbox) = common::pipeline(&runtime, Arc::new(ChainLog::default()));
    let (reply, answer) = tokio::sync::oneshot::channel();
    pipeline.on_command(mtml_pipeline::PipelineCommand::SetTradingState {
        state: mtml_decision::TradingState::Halted,
        reason: "test".into(),
        reply,
    });
    assert_eq!(answer.blocking_recv().unwrap(), Ok(mtml_decision::TradingState::Halted));
    let orders = common::run(&mut pipeline, &outbox, &ticks);
    let outcome = pipeline.finish();
    assert!(orders.is_empty());
    assert!(outcome.counters.target_changes > 0, "the model still decided");
    assert!(outcome.counters.risk_rejections.get("halted").is_some_and(|&n| n > 0), "{:?}", outcome.counters.risk_rejections);
    assert_eq!(outcome.counters.risk_rejections.len(), 1, "refused as halted and for nothing else");
    assert_eq!(outcome.execution.orders_sent, 0);
    assert_eq!(outcome.counters.state_changes.len(), 1);
    assert_eq!(outcome.counters.state_changes[0].to, "HALTED");
    assert_eq!(outcome.counters.state_changes[0].at_ms, common::WALL_CLOCK_MS, "before the first tick, dated by the wall clock, not 0");
}

#[test]
fn one_bad_quote_neither_marks_the_position_nor_trips_the_drawdown_guard() {
    let runtime = common::runtime();
    let ticks = common::sample_ticks();
    let desk = common::desk_with(|limits| limits.max_drawdown = 500.0);
    let (mut pipeline, outbox) = common::pipeline_with(&runtime, Arc::new(ChainLog::default()), desk);
    // Trade until the first fill opens a position.
    let last = ticks
        .iter()
        .find(|tick| {
            pipeline.on_tick(tick);
            common::fill_all(&mut pipeline, &outbox, tick) > 0
        })
        .expect("the sample opens a position")
        .clone();
    let bad = |n: u64, bid: f64, ask: f64| mtml_core::Tick { seq: last.seq + n, time_msc: last.time_msc + n as i64, bid, ask, ..last.clone() };
    pipeline.on_tick(&bad(1, last.bid, last.ask * 10.0));
    pipeline.on_tick(&bad(2, last.bid * 10.0, last.ask * 10.0));
    pipeline.on_tick(&bad(3, last.bid, last.ask));
    let outcome = pipeline.finish();
    assert!((outcome.positions[&common::eurusd()].lots).abs() > 0.0, "a position was open throughout");
    assert_eq!(outcome.counters.ticks_rejected.get("wide_spread"), Some(&1), "{:?}", outcome.counters.ticks_rejected);
    assert_eq!(outcome.counters.ticks_rejected.get("outlier_price"), Some(&1), "{:?}", outcome.counters.ticks_rejected);
    assert_eq!(outcome.trading_state, mtml_decision::TradingState::Active, "{:?}", outcome.counters.state_changes);
    assert!(outcome.counters.state_changes.is_empty(), "{:?}", outcome.counters.state_changes);
}
