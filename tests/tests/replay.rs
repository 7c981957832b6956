//! End-to-end replays: recorded ticks through a simulated terminal, the real TCP bridge, the
//! pipeline with the real ONNX model, and back to the terminal as orders and fills.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write;

use mtml::commands::replay::DEFAULT_MAX_AHEAD;
use mtml::{Config, ReplayOptions, Report, Transport, replay};
use mtml_tests::{eurusd_sample, eurusd_ticks};

fn options(ticks: std::path::PathBuf, transport: Transport) -> ReplayOptions {
    let mut config = Config::defaults();
    config.pipeline.transport = transport;
    // Tests that pass their configuration as the user's must not leave files behind either.
    config.journal.url = "sqlite::memory:".into();
    config.features.history = "sqlite::memory:".into();
    ReplayOptions { ticks, symbol: None, config, config_given: false, max_ahead: DEFAULT_MAX_AHEAD, terminal_balance: None }
}

/// What a run traded and earned: the report without its timings and the parts that describe
/// how it ran (transport, bridge, stores).
fn trades_of(report: &Report) -> serde_json::Value {
    let mut json = serde_json::to_value(report).unwrap();
    let object = json.as_object_mut().unwrap();
    for how in ["wall_time_secs", "peak_memory_mb", "ticks_per_sec", "latency", "tick_to_order_us", "example_chain", "by_model", "transport", "stores", "bridge", "slow_orders"] {
        object.remove(how).unwrap();
    }
    json
}

/// A backtest of `ticks` with the configuration of `options`.
fn backtest(options: &ReplayOptions) -> Report {
    let runtime = mtml::runtime::load_runtime(&options.config).unwrap();
    let options = mtml::commands::backtest::BacktestOptions { ticks: options.ticks.clone(), symbol: None, config: options.config.clone() };
    mtml::commands::backtest::backtest(options, &runtime).unwrap()
}

fn assert_orders_consistent(report: &Report) {
    assert!(report.orders_sent > 0, "the model traded: {report:#?}");
    assert_eq!(report.acks, report.orders_sent, "every order acknowledged");
    assert_eq!(report.fills, report.orders_sent, "every order filled (one deal each)");
    assert_eq!(report.order_rejects, 0);
    if report.run.transport != "none" {
        assert_eq!(report.tick_to_order_us.count, report.orders_sent, "latency measured per order (by the bridge)");
    }
    for (symbol, position) in &report.positions {
        assert_eq!(position.mtml_lots, position.terminal_lots, "{symbol}: both sides agree");
    }
    assert!((report.pnl.realized + report.pnl.unrealized - report.pnl.total).abs() < 0.011);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_shared_eurusd_file_replays_with_counts_that_add_up() {
    let report = replay(options(eurusd_ticks(), Transport::InProcess)).await.unwrap();
    assert_eq!(report.run.ticks_read, 251_588);
    assert_eq!(report.run.ticks_sent, 251_588);
    assert_eq!(report.pipeline.ticks_ingested, 251_588, "real quotes, crossed ones included, all pass");
    assert!(report.pipeline.ticks_rejected.is_empty(), "{:?}", report.pipeline.ticks_rejected);
    assert!(report.counts_add_up);
    // About 10% crossed and 12% locked quotes in this file: passed through, flagged.
    assert!((20_000..30_000).contains(&report.pipeline.crossed_quotes), "{}", report.pipeline.crossed_quotes);
    assert!((25_000..35_000).contains(&report.pipeline.locked_quotes), "{}", report.pipeline.locked_quotes);
    assert_eq!(report.pipeline.bars, 4_518, "one bar per M1 row of the reference file");
    assert_eq!(report.pipeline.predictions, report.pipeline.feature_vectors);
    assert!(report.pipeline.predictions > 240_000, "every tick after warm-up predicted");
    assert_eq!(report.pipeline.inference_errors, 0);
    assert_orders_consistent(&report);
    assert_eq!(report.bridge.connections, 1);
    assert_eq!((report.bridge.protocol_errors, report.bridge.sequence_gaps, report.bridge.ticks_dropped), (0, 0, 0));

    let chain = report.example_chain.as_ref().expect("an example chain");
    let stages: BTreeSet<&str> = chain.stages.iter().map(|s| s.stage).collect();
    let expected: BTreeSet<&str> = mtml_core::Stage::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(stages, expected, "the chain went through every stage");
    assert_eq!(chain.stages[0].stage, "bridge_receive");
    assert_eq!(chain.stages[0].offset_us, 0.0);
    assert_eq!(chain.chain_id.to_string().len(), 32);
    for stage in ["bridge_receive", "ingest", "features", "inference", "decision"] {
        assert!(report.latency[stage].count >= report.pipeline.predictions, "{stage} measured");
    }
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "ticks_read", "ticks_ingested", "bars", "predictions", "orders_sent", "fills",
        "risk_rejections", "pnl", "latency", "tick_to_order_us", "example_chain",
    ] {
        assert!(json.get(key).is_some(), "report has {key}");
    }
    assert!(json["latency"]["inference"]["p99_us"].as_f64().unwrap() > 0.0);

    // The backtest of the same file trades the same, tick for tick.
    let backtested = backtest(&options(eurusd_ticks(), Transport::InProcess));
    assert_eq!(trades_of(&backtested), trades_of(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_in_process_transports_give_the_same_pipeline_results() {
    let local = replay(options(eurusd_sample(), Transport::InProcess)).await.unwrap();
    let remote = replay(options(eurusd_sample(), Transport::Grpc)).await.unwrap();
    assert_eq!(remote.pipeline.ticks_ingested, 18_967);
    assert!(remote.counts_add_up);
    let deterministic = |r: &Report| {
        (r.pipeline.ticks_ingested, r.pipeline.crossed_quotes, r.pipeline.bars, r.pipeline.feature_vectors, r.pipeline.predictions, r.pipeline.target_changes)
    };
    assert_eq!(deterministic(&remote), deterministic(&local));
    assert_orders_consistent(&remote);
}

/// Fills in market time: the same file gives the same orders, deals, prices and PnL whatever
/// the simulator's lead over the pipeline (one tick, 64, or as much as the tick channel holds)
/// and the transport. Only timings differ. Each deal is at a quote of the file at least the fill latency
/// after its order's tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_gives_the_same_trades_every_run_whatever_the_pacing_and_transport() {
    let run = async |transport, max_ahead, latency_ms: i64| {
        let mut options = options(eurusd_sample(), transport);
        options.max_ahead = max_ahead;
        options.config.replay.fill_latency_ms = latency_ms;
        options.config.replay.slippage_points = 2.0;
        options.config.replay.commission_per_lot = 7.0;
        let report = replay(options).await.unwrap();
        assert_eq!(report.pipeline.late_outcomes, 0, "every outcome came in time");
        assert_orders_consistent(&report);
        trades_of(&report)
    };
    let first = run(Transport::InProcess, 1, 250).await;
    for (transport, max_ahead) in [(Transport::InProcess, 64), (Transport::InProcess, 100_000), (Transport::Grpc, DEFAULT_MAX_AHEAD)] {
        let again = run(transport, max_ahead, 250).await;
        assert_eq!(again, first, "{transport:?}, {max_ahead} ahead");
    }
    // Every deal is at a quote of the file: the ask or bid of a tick, two points worse.
    let quotes: Vec<(i64, f64, f64)> = mtml_ingestion::TickFileReader::open(eurusd_sample()).unwrap().map(|r| r.unwrap()).map(|r| (r.time_msc, r.bid, r.ask)).collect();
    let deals = first["deals"].as_array().unwrap();
    assert_eq!(deals.len() as u64, first["fills"].as_u64().unwrap());
    for deal in deals {
        let (time, lots, price) = (deal["time_msc"].as_i64().unwrap(), deal["lots"].as_f64().unwrap(), deal["price"].as_f64().unwrap());
        let quote = quotes.iter().find(|q| q.0 == time).expect("the deal's time is a tick's");
        let expected = if lots > 0.0 { quote.2 + 0.00002 } else { quote.1 - 0.00002 };
        assert!((price - expected).abs() < 1e-9, "deal at {price}, quote {quote:?}");
    }
    // The figures: the same PnL as the positions' (marked at the last mid), less commission on
    // every lot traded; round trips and time in the market from the deals.
    let figures = &first["figures"];
    let lots: f64 = deals.iter().map(|d| d["lots"].as_f64().unwrap().abs()).sum();
    assert!((figures["lots_traded"].as_f64().unwrap() - lots).abs() < 1e-9);
    assert!((figures["commission"].as_f64().unwrap() - lots * 7.0).abs() < 1e-9);
    let total = first["pnl"]["total"].as_f64().unwrap();
    assert!((figures["pnl"].as_f64().unwrap() - (total - lots * 7.0)).abs() < 0.011, "{figures} against {total}");
    let trades = figures["trades"].as_u64().unwrap();
    assert!(trades > 0 && trades < deals.len() as u64, "{figures}");
    assert!((0.0..=1.0).contains(&figures["exposure"].as_f64().unwrap()) && figures["hours"].as_u64().unwrap() >= 5, "{figures}");
    assert!(figures["max_drawdown"].as_f64().unwrap() > 0.0);
    // A backtest (no bridge, no socket, one thread) trades the same.
    let mut options = options(eurusd_sample(), Transport::InProcess);
    options.config.replay.fill_latency_ms = 250;
    options.config.replay.slippage_points = 2.0;
    options.config.replay.commission_per_lot = 7.0;
    let backtested = backtest(&options);
    assert_orders_consistent(&backtested);
    assert_eq!(trades_of(&backtested), first, "a backtest against the replays");
    // A longer latency fills at other quotes: the setting is in force.
    let later = run(Transport::InProcess, DEFAULT_MAX_AHEAD, 30_000).await;
    assert_ne!(later["deals"], first["deals"]);
}

fn write_temp(text: &str, suffix: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[tokio::test]
async fn a_malformed_row_stops_the_replay_with_file_line_and_reason() {
    let file = write_temp("time_utc_ms,bid,ask\n1399230051815,1.387,1.3879\n1399230051816,1.387,1.388\n1399230051817,1.387,x\n", ".csv");
    let mut options = options(file.path().to_path_buf(), Transport::InProcess);
    options.symbol = Some("EURUSD".into());
    let error = replay(options).await.unwrap_err();
    let expected = format!("{}:4: ask \"x\" is not a number", file.path().display());
    assert_eq!(error.to_string(), expected);
}

#[tokio::test]
async fn a_file_without_symbol_asks_for_one() {
    let file = write_temp("time_utc_ms,bid,ask\n1399230051815,1.387,1.3879\n", ".csv");
    let error = replay(options(file.path().to_path_buf(), Transport::InProcess)).await.unwrap_err();
    assert!(error.to_string().contains("pass --symbol"), "{error}");
}

#[tokio::test]
async fn bad_ticks_are_refused_by_reason_and_counted() {
    // EURUSD is whitelisted; GBPUSD is not. One NaN, one negative and one step back in time.
    let rows = [
        "time,symbol,bid,ask",
        "2014-05-05 06:00:00.000,EURUSD,1.38700,1.38710",
        "2014-05-05 06:00:00.100,GBPUSD,1.68700,1.68710",
        "2014-05-05 06:00:00.200,EURUSD,NaN,1.38710",
        "2014-05-05 06:00:00.300,EURUSD,-1.38700,1.38710",
        "2014-05-05 05:59:00.000,EURUSD,1.38700,1.38710",
        "2014-05-05 06:00:01.000,EURUSD,1.38720,1.38700",
    ];
    let file = write_temp(&(rows.join("\n") + "\n"), ".csv");
    let mut options = options(file.path().to_path_buf(), Transport::InProcess);
    // The configuration names the symbols to trade: the file's others are refused.
    let named = mtml::Config::from_sources(Some("[pipeline]\nsymbols = [\"EURUSD\"]"), std::iter::empty()).unwrap();
    options.config.pipeline.symbols = named.pipeline.symbols.clone();
    options.config.given = named.given;
    let report = replay(options).await.unwrap();
    assert_eq!(report.run.ticks_read, 6);
    assert_eq!(report.pipeline.ticks_ingested, 2);
    let rejected: Vec<(&str, u64)> = report.pipeline.ticks_rejected.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(
        rejected,
        [("non_finite_price", 1), ("non_positive_price", 1), ("time_went_backwards", 1), ("unknown_symbol", 1)]
    );
    assert_eq!(report.pipeline.crossed_quotes, 1, "the crossed quote passed, flagged");
    assert!(report.counts_add_up);
}

#[tokio::test]
async fn metatrader_exports_replay() {
    let text = "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\n\
                2014.05.05\t06:00:00.104\t1.38709\t1.38710\t\t\t6\n\
                2014.05.05\t06:00:00.204\t\t1.38712\t\t\t4\n\
                2014.05.05\t06:01:00.000\t1.38715\t\t\t\t2\n";
    let file = write_temp(text, ".csv");
    let mut options = options(file.path().to_path_buf(), Transport::InProcess);
    options.symbol = Some("EURUSD".into());
    let report = replay(options).await.unwrap();
    assert_eq!((report.run.ticks_read, report.pipeline.ticks_ingested, report.pipeline.bars), (3, 3, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_loss_limit_halts_trading_mid_replay() {
    let mut options = options(eurusd_sample(), Transport::InProcess);
    // A limit of 1 USD: the first losing move of a 0.1 lot position trips it.
    options.config.risk.limits.daily_loss_limit = 1.0;
    let report = replay(options).await.unwrap();
    assert_eq!(report.trading_state, "HALTED");
    let change = &report.pipeline.state_changes[0];
    assert_eq!((change.from.as_str(), change.to.as_str()), ("ACTIVE", "HALTED"));
    assert!(change.reason.starts_with("daily_loss: down "), "{}", change.reason);
    assert!(report.pipeline.risk_rejections.get("halted").copied().unwrap_or(0) > 0, "later targets refused: {report:#?}");
    assert!(report.orders_sent >= 1, "it traded before the halt");
    assert!(report.counts_add_up);
    assert_orders_consistent(&report);
}

/// The terminal's own account money reaches risk: with 100 USD free at 1:100, a 0.1 lot EURUSD
/// order (about 139 USD of margin) is refused under `margin`, and nothing trades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_margin_check_uses_the_money_the_terminal_reports() {
    let mut options = options(eurusd_sample(), Transport::InProcess);
    options.terminal_balance = Some(100.0);
    let report = replay(options).await.unwrap();
    assert_eq!(report.orders_sent, 0, "{report:#?}");
    assert!(report.pipeline.risk_rejections.get("margin").copied().unwrap_or(0) > 0, "{:?}", report.pipeline.risk_rejections);
    assert!(report.counts_add_up);

    // The same day with the default balance trades.
    let report = replay(options_default()).await.unwrap();
    assert!(report.orders_sent > 0);
    assert_eq!(report.pipeline.risk_rejections.get("margin"), None);
}

/// Periodic reconciliation while trading: the terminal is asked for its books every 20 ms of a
/// replay, and books taken between an order and its fill never count as a difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_reconciliation_while_trading_finds_no_false_differences() {
    let mut options = options(eurusd_sample(), Transport::InProcess);
    options.config.bridge.reconcile_every = std::time::Duration::from_millis(20);
    let report = replay(options).await.unwrap();
    assert!(report.bridge.syncs_completed >= 3, "{:?}", report.bridge);
    assert!(report.orders_sent > 0);
    assert_eq!(report.reconciliation_differences, 0, "{report:#?}");
    assert_orders_consistent(&report);
}

fn options_default() -> ReplayOptions {
    options(eurusd_sample(), Transport::InProcess)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatility_targeted_sizing_trades_sizes_that_follow_the_atr() {
    let mut options = options(eurusd_sample(), Transport::InProcess);
    options.config.decision.sizing = mtml_decision::Sizing::VolatilityTarget { risk_per_trade: 5.0, atr_multiple: 2.0 };
    let report = replay(options).await.unwrap();
    assert!(report.counts_add_up);
    assert_orders_consistent(&report);
    let lots = report.positions["EURUSD"].mtml_lots.abs();
    assert!(lots > 0.0 && lots <= 1.0, "sized by the ATR, within max_position_lots: {lots}");
    assert_ne!(lots, 0.1, "not the fixed default");
}
