//! `mtml replay`: the whole pipeline on recorded ticks, through a real TCP bridge.
//!
//! The same services as `mtml run` start in process on embedded defaults; a simulated terminal
//! connects to the bridge over TCP with the EA's wire protocol, replays the file's ticks, and
//! fills the orders it receives at its current replayed quote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mtml_simulator::{Pacing, SimSymbol, SimTick, SimulatorConfig, run_simulator};
use mtml_feature_store::FEATURE_SET;
use mtml_ingestion::{FileTick, RejectReason, TickFileReader, normalize_symbol, symbol_from_path};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::app::{App, Listeners};
use crate::runtime::load_runtime;
use crate::config::{Config, Transport};
use crate::commands::report::{BridgeReport, DealReport, Mark, ReplayRun, Report, TerminalSide, figures_of};

/// How long the pipeline may make no progress before the replay gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The tick file.
    pub ticks: PathBuf,
    /// Symbol of a file without a symbol column; guessed from the file name when absent.
    pub symbol: Option<String>,
    /// Settings; the replay overrides the listen addresses and token.
    pub config: Config,
    /// Whether `config` came from the user (a file): then its journal and history are used (a
    /// journal with a live instance's orders is refused); otherwise they are in memory.
    pub config_given: bool,
    /// How many ticks the simulated terminal may be ahead of the pipeline (see
    /// [`mtml_bridge::Pacing`]).
    pub max_ahead: u64,
    /// Balance of the simulated terminal's account; `None` for `risk.starting_equity`. The
    /// terminal reports its money (ACCOUNT) and risk's margin check uses it.
    pub terminal_balance: Option<f64>,
}

/// Chain-id prefix of replays ("mtmlrepl"): their chain ids repeat from run to run.
pub const REPLAY_CHAIN_PREFIX: u64 = u64::from_be_bytes(*b"mtmlrepl");

/// Default of [`ReplayOptions::max_ahead`]: deep enough to keep the pipeline busy, shallow enough
/// that a fill waits behind at most a millisecond or so of ticks.
pub const DEFAULT_MAX_AHEAD: u64 = 8;

/// A tick file read into memory, with its symbols and their price digits.
#[derive(Debug)]
pub struct LoadedTicks {
    /// Rows with their symbol resolved.
    pub ticks: Vec<(String, FileTick)>,
    /// Price digits by symbol, inferred from the prices.
    pub digits: BTreeMap<String, u8>,
}

/// Reads the whole file, failing with file, line and reason at the first bad row.
pub fn load_ticks(path: &Path, symbol: Option<&str>) -> anyhow::Result<LoadedTicks> {
    let mut digits = DigitsScan::default();
    let ticks = rows(path, symbol)?
        .map(|row| row.inspect(|(symbol, row)| digits.add(symbol, row)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if ticks.is_empty() {
        anyhow::bail!("{}: no ticks after the header: nothing to replay", path.display());
    }
    Ok(LoadedTicks { ticks, digits: digits.digits() })
}

/// The rows of a tick file as they are read, each with its symbol: the file's column, else
/// `symbol`, else the one the file's name names. A bad row ends them with file, line and reason.
pub fn rows(path: &Path, symbol: Option<&str>) -> anyhow::Result<impl Iterator<Item = anyhow::Result<(String, FileTick)>> + use<>> {
    let fallback = match symbol {
        Some(given) => Some(normalize_symbol(given)),
        None => symbol_from_path(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
    };
    let shown = path.display().to_string();
    Ok(TickFileReader::open(path)?.map(move |row| {
        let row = row?;
        let symbol = match (&row.symbol, &fallback) {
            (Some(s), _) => normalize_symbol(s),
            (None, Some(s)) => s.clone(),
            (None, None) => anyhow::bail!("{shown}: the file has no symbol column and its name names no symbol; pass --symbol"),
        };
        Ok((symbol, row))
    }))
}

/// Each symbol's price digits, from the prices of its first 5 000 rows.
#[derive(Debug, Default)]
pub struct DigitsScan {
    prices: BTreeMap<String, Vec<f64>>,
}

impl DigitsScan {
    /// Takes a row of `symbol`.
    pub fn add(&mut self, symbol: &str, row: &FileTick) {
        let prices = match self.prices.get_mut(symbol) {
            Some(prices) => prices,
            None => self.prices.entry(symbol.to_owned()).or_default(),
        };
        if prices.len() < 10_000 {
            prices.extend([row.bid, row.ask].into_iter().filter(|p| p.is_finite()));
        }
    }

    /// Digits by symbol, for every symbol seen.
    pub fn digits(&self) -> BTreeMap<String, u8> {
        self.prices.iter().map(|(symbol, prices)| (symbol.clone(), price_digits(prices.iter().copied()))).collect()
    }
}

/// The fewest decimals (up to 8) that write every price exactly.
fn price_digits(prices: impl Iterator<Item = f64> + Clone) -> u8 {
    (0..=8u8)
        .find(|&d| {
            let scale = 10f64.powi(i32::from(d));
            prices.clone().all(|p| ((p * scale).round() - p * scale).abs() < 1e-6)
        })
        .unwrap_or(8)
}

/// Runs a replay and returns its report.
pub async fn replay(options: ReplayOptions) -> anyhow::Result<Report> {
    start_replay(options).await?.finish().await
}

/// A replay under way: its instance and simulated terminal are running.
pub struct RunningReplay {
    app: App,
    simulator: tokio::task::JoinHandle<Result<mtml_simulator::SimulatorReport, mtml_simulator::SimulatorError>>,
    stop_simulator: CancellationToken,
    ticks_to_send: u64,
    refused_before_sending: u64,
    run: ReplayRun,
    started: Instant,
    digits: BTreeMap<String, u8>,
    /// Every quote's (time, symbol, mid), to mark the deals for the figures.
    marks: Vec<Mark>,
    symbols: Vec<String>,
    figures: mtml_decision::figures::FiguresBuilder,
}

impl RunningReplay {
    /// Ticks the pipeline has taken so far (accepted or refused).
    pub fn ticks_seen(&self) -> u64 {
        self.app.ticks_seen()
    }

    /// A counter of the ticks taken so far, readable while [`RunningReplay::finish`] runs, and
    /// the ticks there are to take.
    pub fn progress(&self) -> (Arc<std::sync::atomic::AtomicU64>, u64) {
        (Arc::clone(&self.app.progress.ticks_seen), self.ticks_to_send)
    }

    /// Waits until every tick has gone through and no order is in flight, stops everything, and
    /// reports.
    pub async fn finish(self) -> anyhow::Result<Report> {
        let Self { app, simulator, stop_simulator, ticks_to_send, refused_before_sending, mut run, started, digits, marks, symbols, figures } = self;
        wait_until_drained(&app, ticks_to_send, &simulator).await?;
        stop_simulator.cancel();
        let sim_report = simulator.await.context("simulator task")??;
        if let Some(refused) = &sim_report.refused {
            anyhow::bail!("the bridge refused the simulated terminal: {refused}");
        }
        let chain_log = Arc::clone(&app.chain_log);
        let bridge_stats = app.bridge_stats.clone().context("a replay runs its bridge in process")?;
        let orders_sent = bridge_stats.orders_sent.load(std::sync::atomic::Ordering::Relaxed);
        let bridge = BridgeReport::from_stats(&bridge_stats);
        let stores = app.stores.watch();
        let mut outcome = app.stop_and_summarise(Some("replay summary".to_owned())).await?;
        if refused_before_sending > 0 {
            *outcome.counters.ticks_rejected.entry(RejectReason::NonFinitePrice.name()).or_default() +=
                refused_before_sending;
        }
        let terminal_positions = sim_report
            .positions
            .iter()
            .map(|(broker, lots)| (broker.clone(), *lots))
            .collect();
        let deals: Vec<DealReport> =
            sim_report.deals.iter().map(|d| DealReport::new(&d.client_order_id, &d.symbol, d.time_msc, d.signed_volume, d.price)).collect();
        let figures = figures_of(figures, &deals, &marks, &symbols);
        run.ticks_sent = sim_report.ticks_sent;
        run.wall_time_secs = started.elapsed().as_secs_f64();
        run.peak_memory_mb = crate::commands::report::peak_memory_mb();
        Ok(Report::build(run, TerminalSide { orders_sent, positions: terminal_positions, deals, figures, bridge, digits, stores: stores.report() }, &outcome, &chain_log))
    }
}

/// Starts a replay: reads the file, starts the instance and the simulated terminal, and returns
/// while the ticks stream ([`RunningReplay::finish`] waits for the end).
pub async fn start_replay(options: ReplayOptions) -> anyhow::Result<RunningReplay> {
    let started = Instant::now();
    let loaded = load_ticks(&options.ticks, options.symbol.as_deref())?;
    let ticks_read = loaded.ticks.len() as u64;
    let symbols: Vec<String> = loaded.digits.keys().cloned().collect();
    tracing::info!(file = %options.ticks.display(), ticks = ticks_read, symbols = %symbols.join(","), "tick file read");

    let mut config = options.config;
    if !config.is_given("pipeline", "symbols") {
        // The file's symbols, unless the configuration names the ones to trade.
        config.pipeline.symbols = symbols.clone();
    }
    if options.config_given {
        refuse_a_live_journal(&config).await?;
    } else {
        // Embedded default: a replay leaves no journal behind unless configured to.
        config.journal.url = "sqlite::memory:".into();
    }
    // History is opt-in for a replay: written only where the configuration names a store. It
    // is a record of live trading; a replay's would be thrown away (and cost most of its time).
    if !config.is_given("features", "history") {
        config.features.history = "none".into();
    }
    config.bridge.token = format!("replay-{}", std::process::id());
    // The same chain ids every run, so that a canary's split of the chains is reproducible.
    config.bridge.chain_prefix = Some(REPLAY_CHAIN_PREFIX);
    // Fills in market time, applied in market time: the same fills every run.
    config.pipeline.market_time_fills = Some(config.replay.fills());
    let runtime = load_runtime(&config)?;
    let bridge = TcpListener::bind("127.0.0.1:0").await.context("binding the bridge")?;
    let grpc = match config.pipeline.transport {
        Transport::Grpc => Some(TcpListener::bind("127.0.0.1:0").await.context("binding gRPC")?),
        Transport::InProcess => None,
    };
    // Metrics only when the configuration asks for them (a replay is usually a one-off).
    let metrics = crate::app::bind_metrics(&config).await?;
    let app = App::start(&config, &runtime, Listeners { bridge: Some(bridge), grpc, metrics }).await?;
    let bridge_addr = app.bridge_addr.context("a replay runs its bridge in process")?;
    let stream = TcpStream::connect(bridge_addr).await.context("connecting the simulator")?;
    stream.set_nodelay(true)?;
    let sim_config = SimulatorConfig {
        token: config.bridge.token.clone(),
        symbols: loaded
            .digits
            .iter()
            .map(|(name, &digits)| SimSymbol { name: name.clone(), digits })
            .collect(),
        pacing: Some(Pacing {
            processed: Arc::clone(&app.progress.ticks_seen),
            advanced: Arc::clone(&app.progress.advanced),
            // Below the tick channel's capacity: a full channel blocks the bridge's connection
            // task, and with it the order a pipeline waiting for its fill needs written.
            max_ahead: options.max_ahead.min(config.pipeline.channel_capacity as u64 / 2).max(1),
        }),
        balance: options.terminal_balance.unwrap_or(config.risk.starting_equity),
        market_time: Some(config.replay.fills()),
        ..SimulatorConfig::default()
    };
    // A terminal cannot quote NaN or infinity (the wire protocol refuses them and would close
    // the connection), so such rows are refused here, under ingestion's reason name.
    let mut refused_before_sending = 0;
    let sim_ticks: Vec<SimTick> = loaded
        .ticks
        .into_iter()
        .filter(|(_, t)| {
            let finite = t.bid.is_finite() && t.ask.is_finite();
            refused_before_sending += u64::from(!finite);
            finite
        })
        .map(|(symbol, t)| SimTick { symbol, time_msc: t.time_msc, bid: t.bid, ask: t.ask })
        .collect();
    let ticks_to_send = sim_ticks.len() as u64;
    let marks = sim_ticks.iter().map(|t| Mark::new(&symbols, &t.symbol, t.time_msc, t.bid, t.ask)).collect();
    let stop_simulator = CancellationToken::new();
    let simulator = crate::app::spawn_named("simulator", run_simulator(stream, sim_config, sim_ticks, stop_simulator.clone()));

    let run_symbols = symbols.clone();
    let run = ReplayRun {
        input: options.ticks.display().to_string(),
        symbols,
        transport: config.pipeline.transport.name(),
        model: format!("{} ({})", config.model.name, FEATURE_SET.id()),
        ticks_read,
        ticks_sent: 0,
        wall_time_secs: 0.0,
        peak_memory_mb: None,
    };
    let digits = loaded.digits.clone();
    let figures = mtml_decision::figures::FiguresBuilder::new(config.risk.starting_equity, config.replay.commission_per_lot);
    Ok(RunningReplay { app, simulator, stop_simulator, ticks_to_send, refused_before_sending, run, started, digits, marks, symbols: run_symbols, figures })
}

/// Refuses to replay into a journal that holds a live instance's orders: simulated fills would
/// mix with real ones. A replay's orders carry [`REPLAY_CHAIN_PREFIX`] in their chain ids.
async fn refuse_a_live_journal(config: &Config) -> anyhow::Result<()> {
    let journal = match crate::app::open_journal(config, crate::app::Access::ReadOnly).await {
        Ok(journal) => journal,
        // No journal yet: the replay creates one of its own.
        Err(_) => return Ok(()),
    };
    let prefix = format!("{REPLAY_CHAIN_PREFIX:016x}");
    let live = journal.orders(false).await?.into_iter().find(|order| !order.chain_id.starts_with(&prefix));
    journal.close().await;
    if let Some(order) = live {
        anyhow::bail!(
            "journal.url ({}) holds a live instance's orders (order {} for one): a replay would mix simulated fills into them; \
             give the replay a configuration with a journal.url of its own, or leave journal.url out (an in-memory journal)",
            mtml_core::text::redact_url(&config.journal.url),
            order.client_order_id
        );
    }
    Ok(())
}

/// Waits until the pipeline has taken every tick and no order is in flight.
async fn wait_until_drained<T>(
    app: &App,
    ticks: u64,
    simulator: &tokio::task::JoinHandle<T>,
) -> anyhow::Result<()> {
    let mut last_progress = (u64::MAX, Instant::now());
    loop {
        let seen = app.ticks_seen();
        if seen >= ticks && app.orders_in_flight() == 0 {
            return Ok(());
        }
        if simulator.is_finished() {
            anyhow::bail!("the simulated terminal stopped early after {seen} of {ticks} ticks");
        }
        if seen != last_progress.0 {
            last_progress = (seen, Instant::now());
        } else if last_progress.1.elapsed() > STALL_TIMEOUT {
            anyhow::bail!(
                "pipeline stalled at {seen} of {ticks} ticks with {} orders in flight",
                app.orders_in_flight()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_inferred_from_prices() {
        assert_eq!(price_digits([1.387, 1.38794].into_iter()), 5);
        assert_eq!(price_digits([86.655, 86.7].into_iter()), 3);
        assert_eq!(price_digits([100.0].into_iter()), 0);
    }
}
