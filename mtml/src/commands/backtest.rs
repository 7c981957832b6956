//! `mtml backtest`: the pipeline on a tick file without the bridge, a socket or another thread,
//! its orders filled by a simulated broker in market time (`mtml_pipeline::backtest`). The fill
//! rule and the point where fills reach the pipeline are a replay's, so a backtest gives the
//! orders, deals and PnL a replay of the same file gives, in a fraction of the time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mtml_core::{ChainIdGenerator, ChainLog, Symbol, Tick};
use mtml_decision::Execution;
use mtml_decision::figures::FiguresBuilder;
use mtml_feature_store::FEATURE_SET;
use mtml_ingestion::RejectReason;
use mtml_pipeline::backtest::{BrokerAccount, BrokerInbox};

use crate::commands::replay::{REPLAY_CHAIN_PREFIX, load_ticks};
use crate::commands::report::{DealReport, Mark, ReplayRun, Report, TerminalSide, figures_of};
use crate::config::Config;

/// What to backtest.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    /// The tick file.
    pub ticks: PathBuf,
    /// The symbol of a file without a symbol column, if its name names none.
    pub symbol: Option<String>,
    /// The configuration (models, decision, risk, `[replay]`'s broker).
    pub config: Config,
}

/// Runs a backtest on this thread and reports as a replay does.
pub fn backtest(options: BacktestOptions, runtime: &mtml_inference::OnnxRuntime) -> anyhow::Result<Report> {
    let started = Instant::now();
    let loaded = load_ticks(&options.ticks, options.symbol.as_deref())?;
    let symbols: Vec<String> = loaded.digits.keys().cloned().collect();
    let mut config = options.config;
    if !config.is_given("pipeline", "symbols") {
        config.pipeline.symbols = symbols.clone();
    }
    let model = crate::runtime::load_model(runtime, &config)?;
    let source = if config.model.path.is_some() { "file" } else { "embedded" };
    let models = mtml_rollout::Models::champion_only(mtml_rollout::Slot { label: format!("{}:{source}", config.model.name), born_ms: None, model });
    let inbox = BrokerInbox::default();
    let chain_log = Arc::new(ChainLog::default());
    let mut pipeline = crate::app::pipeline_builder(&config, models, Execution::new("bt"), inbox.sink()).chain_log(Arc::clone(&chain_log)).build();

    // Ticks as the bridge stamps a replay's: the same chain ids, in the same order. A terminal
    // cannot quote NaN or infinity, so a replay refuses such rows before sending them; so here.
    let ticks_read = loaded.ticks.len() as u64;
    let terminal: Arc<str> = Arc::from("backtest");
    let chain_ids = ChainIdGenerator::with_prefix(REPLAY_CHAIN_PREFIX);
    let finite: Vec<&(String, mtml_ingestion::FileTick)> = loaded.ticks.iter().filter(|(_, t)| t.bid.is_finite() && t.ask.is_finite()).collect();
    let refused_before = ticks_read - finite.len() as u64;
    let marks: Vec<Mark> = finite.iter().map(|(symbol, t)| Mark::new(&symbols, symbol, t.time_msc, t.bid, t.ask)).collect();
    let canonical: Vec<Symbol> = symbols.iter().map(|s| Symbol::new(s)).collect();
    let ticks = finite.iter().enumerate().map(|(i, (symbol, row))| Tick {
        chain_id: chain_ids.next_id(),
        symbol: canonical[symbols.iter().position(|s| s == symbol).unwrap_or(0)].clone(),
        time_msc: row.time_msc,
        bid: row.bid,
        ask: row.ask,
        seq: i as u64 + 1,
        terminal: Arc::clone(&terminal),
        received_ns: 0,
    });
    let digits: HashMap<Symbol, u8> = loaded.digits.iter().map(|(s, d)| (Symbol::new(s), *d)).collect();
    let account = BrokerAccount { account: Arc::from("backtest@mtml-sim"), balance: config.risk.starting_equity, leverage: 100 };
    let deals = mtml_pipeline::backtest::run(&mut pipeline, &inbox, ticks, config.replay.fills(), &digits, &account);
    let mut outcome = pipeline.finish();
    if refused_before > 0 {
        *outcome.counters.ticks_rejected.entry(RejectReason::NonFinitePrice.name()).or_default() += refused_before;
    }

    let deals: Vec<DealReport> = deals.iter().map(|d| DealReport::new(&d.client_order_id, d.symbol.as_str(), d.time_msc, d.lots, d.price)).collect();
    let mut positions = std::collections::BTreeMap::new();
    for deal in &deals {
        *positions.entry(deal.symbol.clone()).or_insert(0.0) += deal.lots;
    }
    for lots in positions.values_mut() {
        *lots = (*lots * 100.0_f64).round() / 100.0;
    }
    let figures = figures_of(FiguresBuilder::new(config.risk.starting_equity, config.replay.commission_per_lot), &deals, &marks, &symbols);
    let run = ReplayRun {
        input: options.ticks.display().to_string(),
        symbols,
        transport: "none",
        model: format!("{} ({})", config.model.name, FEATURE_SET.id()),
        ticks_read,
        ticks_sent: finite.len() as u64,
        wall_time_secs: started.elapsed().as_secs_f64(),
    };
    let terminal = TerminalSide {
        orders_sent: outcome.execution.orders_sent,
        positions,
        deals,
        figures,
        digits: loaded.digits.clone(),
        ..TerminalSide::default()
    };
    Ok(Report::build(run, terminal, &outcome, &chain_log))
}
