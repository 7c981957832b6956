//! `mtml backtest`: the pipeline on a tick file without the bridge, a socket or another thread,
//! its orders filled by a simulated broker in market time (`mtml_pipeline::backtest`). The fill
//! rule and the point where fills reach the pipeline are a replay's, so a backtest gives the
//! orders, deals and PnL a replay of the same file gives, in a fraction of the time.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use mtml_core::{ChainIdGenerator, ChainLog, Symbol, Tick};
use mtml_decision::Execution;
use mtml_decision::figures::FiguresBuilder;
use mtml_feature_store::FEATURE_SET;
use mtml_ingestion::{FileTick, RejectReason};
use mtml_pipeline::backtest::{BrokerAccount, BrokerInbox};

use crate::commands::replay::{DigitsScan, REPLAY_CHAIN_PREFIX, load_ticks, rows};
use crate::commands::report::{DealReport, ReplayRun, Report, TerminalSide};
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

/// Runs a backtest on this thread and reports as a replay does. The file is read twice, as it
/// streams, and never held: first for its symbols and their price digits (the pipeline must know
/// its symbols before the first tick), then through the pipeline.
pub fn backtest(options: BacktestOptions, runtime: &mtml_inference::OnnxRuntime) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut scan = DigitsScan::default();
    let mut any = false;
    for row in rows(&options.ticks, options.symbol.as_deref())? {
        let (symbol, row) = row?;
        scan.add(&symbol, &row);
        any = true;
    }
    if !any {
        anyhow::bail!("{}: no ticks after the header: nothing to backtest", options.ticks.display());
    }
    let source = rows(&options.ticks, options.symbol.as_deref())?;
    backtest_rows(&options.ticks, &scan.digits(), source, options.config, runtime, started)
}

/// A backtest of `rows` read from `path`, whose symbols have `digits`.
fn backtest_rows(
    path: &Path,
    digits: &BTreeMap<String, u8>,
    rows: impl Iterator<Item = anyhow::Result<(String, FileTick)>>,
    mut config: Config,
    runtime: &mtml_inference::OnnxRuntime,
    started: Instant,
) -> anyhow::Result<Report> {
    let symbols: Vec<String> = digits.keys().cloned().collect();
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
    let (mut ticks_read, mut refused_before, mut failure) = (0u64, 0u64, None);
    let terminal: Arc<str> = Arc::from("backtest");
    let chain_ids = ChainIdGenerator::with_prefix(REPLAY_CHAIN_PREFIX);
    let canonical: HashMap<&str, Symbol> = symbols.iter().map(|s| (s.as_str(), Symbol::new(s))).collect();
    let ticks = rows
        .map_while(|row| row.map_err(|e| failure = Some(e)).ok())
        .inspect(|_| ticks_read += 1)
        .filter(|(_, row)| {
            let finite = row.bid.is_finite() && row.ask.is_finite();
            refused_before += u64::from(!finite);
            finite
        })
        .enumerate()
        .map(|(i, (symbol, row))| Tick {
            chain_id: chain_ids.next_id(),
            symbol: canonical.get(symbol.as_str()).cloned().unwrap_or_else(|| Symbol::new(&symbol)),
            time_msc: row.time_msc,
            bid: row.bid,
            ask: row.ask,
            seq: i as u64 + 1,
            terminal: Arc::clone(&terminal),
            received_ns: 0,
        });
    let tick_digits: HashMap<Symbol, u8> = digits.iter().map(|(s, d)| (Symbol::new(s), *d)).collect();
    let account = BrokerAccount { account: Arc::from("backtest@mtml-sim"), balance: config.risk.starting_equity, leverage: 100 };
    let mut figures = FiguresBuilder::new(config.risk.starting_equity, config.replay.commission_per_lot);
    let deals = mtml_pipeline::backtest::run(&mut pipeline, &inbox, ticks, config.replay.fills(), &tick_digits, &account, &mut figures);
    if let Some(error) = failure {
        return Err(error);
    }
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
    let figures = figures.finish();
    let run = ReplayRun {
        input: path.display().to_string(),
        symbols,
        transport: "none",
        model: format!("{} ({})", config.model.name, FEATURE_SET.id()),
        ticks_read,
        ticks_sent: ticks_read - refused_before,
        wall_time_secs: started.elapsed().as_secs_f64(),
        peak_memory_mb: crate::commands::report::peak_memory_mb(),
    };
    let terminal = TerminalSide {
        orders_sent: outcome.execution.orders_sent,
        positions,
        deals,
        figures,
        digits: digits.clone(),
        ..TerminalSide::default()
    };
    Ok(Report::build(run, terminal, &outcome, &chain_log))
}

/// Settings to try: `section.key` and its values (`--grid decision.buy_above=0.52,0.53`).
pub type Grid = Vec<(String, Vec<String>)>;

/// Reads `--grid` arguments: `section.key=v1,v2,...`.
pub fn parse_grid(args: &[String]) -> anyhow::Result<Grid> {
    args.iter()
        .map(|arg| {
            let (setting, values) = arg.split_once('=').ok_or_else(|| anyhow::anyhow!("--grid {arg}: expected section.key=value,value,..."))?;
            let (section, key) = setting.split_once('.').ok_or_else(|| anyhow::anyhow!("--grid {arg}: {setting} is not section.key"))?;
            if section.is_empty() || key.is_empty() || key.contains('.') {
                anyhow::bail!("--grid {arg}: {setting} is not section.key");
            }
            let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).collect();
            if values.iter().any(String::is_empty) {
                anyhow::bail!("--grid {arg}: an empty value");
            }
            Ok((setting.to_owned(), values))
        })
        .collect()
}

/// Every combination of the grid's values, each as its settings.
pub fn combinations(grid: &Grid) -> Vec<Vec<(String, String)>> {
    grid.iter().fold(vec![Vec::new()], |done, (setting, values)| {
        done.iter()
            .flat_map(|settings| {
                values.iter().map(move |value| {
                    let mut next = settings.clone();
                    next.push((setting.clone(), value.clone()));
                    next
                })
            })
            .collect()
    })
}

/// One combination's run on one file.
#[derive(Debug, serde::Serialize)]
pub struct GridRun {
    /// The tick file.
    pub ticks: String,
    /// The settings tried.
    pub settings: Vec<(String, String)>,
    /// What it did.
    pub report: Report,
}

/// Backtests every file of `ticks` with every combination of `grid` on top of the
/// configuration `file`, on `workers` threads at once (each file is read once); the runs file by
/// file in the grid's order. A setting the configuration does not take stops everything before
/// the first run, named.
pub fn backtest_grid(ticks: &[PathBuf], symbol: Option<&str>, file: Option<&Path>, grid: &Grid, runtime: &mtml_inference::OnnxRuntime, workers: usize) -> anyhow::Result<Vec<GridRun>> {
    let configs = (combinations(grid).into_iter())
        .map(|settings| Config::load_with(file, &settings).map(|config| (settings, config)))
        .collect::<Result<Vec<_>, _>>()?;
    let loaded = ticks.iter().map(|path| load_ticks(path, symbol)).collect::<anyhow::Result<Vec<_>>>()?;
    let jobs: Vec<(usize, usize)> = (0..ticks.len()).flat_map(|f| (0..configs.len()).map(move |c| (f, c))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<parking_lot::Mutex<Option<anyhow::Result<Report>>>> = jobs.iter().map(|_| parking_lot::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(f, c)) = jobs.get(i) else { break };
                    let rows = loaded[f].ticks.iter().cloned().map(Ok);
                    *results[i].lock() = Some(backtest_rows(&ticks[f], &loaded[f].digits, rows, configs[c].1.clone(), runtime, Instant::now()));
                }
            });
        }
    });
    jobs.into_iter()
        .zip(results)
        .map(|((f, c), result)| {
            let report = result.into_inner().unwrap_or_else(|| Err(anyhow::anyhow!("not run")));
            let settings = configs[c].0.clone();
            let what = std::iter::once(ticks[f].display().to_string()).chain(settings.iter().map(|(k, v)| format!("{k}={v}"))).collect::<Vec<_>>().join(" ");
            Ok(GridRun { ticks: ticks[f].display().to_string(), report: report.map_err(|e| e.context(what))?, settings })
        })
        .collect()
}

/// The grid's runs side by side, one row each: the settings, then what each traded and earned.
pub fn grid_table(runs: &[GridRun]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let Some(first) = runs.first() else { return s };
    // The file as a column when there are several.
    let name = |run: &GridRun| Path::new(&run.ticks).file_name().map_or_else(|| run.ticks.clone(), |n| n.to_string_lossy().into_owned());
    let files = runs.iter().any(|r| r.ticks != first.ticks);
    let width = runs.iter().map(|r| name(r).len()).max().unwrap_or(5).max(5);
    let mut heads: Vec<String> = first.settings.iter().map(|(k, _)| k.clone()).collect();
    if files {
        heads.insert(0, format!("{:<width$}", "ticks"));
    }
    let _ = writeln!(s, "{}  {:>6} {:>6} {:>10} {:>9} {:>8} {:>12} {:>8} {:>9}", heads.join("  "), "orders", "trades", "pnl", "return%", "sharpe", "max drawdown", "hit rate", "exposure");
    let best = runs.iter().map(|r| r.report.figures.pnl).fold(f64::NEG_INFINITY, f64::max);
    for run in runs {
        let f = &run.report.figures;
        let mut cells: Vec<String> = run.settings.iter().map(|(_, v)| v.clone()).collect();
        if files {
            cells.insert(0, name(run));
        }
        let values: Vec<String> = cells.iter().zip(&heads).map(|(v, head)| format!("{v:<width$}", width = head.len())).collect();
        let _ = writeln!(
            s,
            "{}  {:>6} {:>6} {:>10.2} {:>9.3} {:>8} {:>12.2} {:>8} {:>8.0}%{}",
            values.join("  "),
            run.report.orders_sent,
            f.trades,
            f.pnl,
            f.return_pct,
            f.sharpe.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
            f.max_drawdown,
            f.hit_rate.map_or_else(|| "-".to_owned(), |h| format!("{:.0}%", h * 100.0)),
            f.exposure * 100.0,
            if f.pnl == best { "  <- best pnl" } else { "" }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_is_read_and_expanded_into_every_combination() {
        let grid = parse_grid(&["decision.buy_above=0.52, 0.53,0.55".into(), "risk.max_position_lots=0.5,1".into()]).unwrap();
        let all = combinations(&grid);
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], [("decision.buy_above".to_owned(), "0.52".to_owned()), ("risk.max_position_lots".to_owned(), "0.5".to_owned())]);
        assert_eq!(all[5], [("decision.buy_above".to_owned(), "0.55".to_owned()), ("risk.max_position_lots".to_owned(), "1".to_owned())]);
        for (bad, says) in [("buy_above=1", "is not section.key"), ("decision.buy_above", "expected section.key=value"), ("decision.buy_above=0.5,", "an empty value")] {
            let error = parse_grid(&[bad.into()]).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
