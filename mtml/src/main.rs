//! The `mtml` binary: parses arguments and configuration, sets up tracing, and calls into the
//! libraries. Nothing else lives here.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use mtml::client::ServerUrl;
use mtml::{out, outln};
use mtml::commands::{chains, ea_install, export, journal, models, replay, trading_state};
use mtml::{App, Config, Listeners, ReplayOptions, Transport};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(name = "mtml", version, about = "MetaTrader 5 bridge and ML inference pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Seconds a call to a running instance (--server) may take before it is given up.
    #[arg(long, global = true, default_value_t = mtml::client::REQUEST_TIMEOUT.as_secs_f64())]
    timeout: f64,
}

#[derive(Subcommand)]
enum Command {
    /// Start every service in one process: the bridge for terminals, the gRPC API, the pipeline.
    Run {
        /// TOML configuration; every setting also has a default and an MTML_* variable.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the bridge alone, next to its terminals: ticks go to the pipeline named by
    /// bridge.pipeline, orders come in on this process's gRPC API.
    Bridge {
        /// TOML configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run everything but the bridge: ticks come in on the gRPC API, orders go to the bridge
    /// named by pipeline.bridge.
    Pipeline {
        /// TOML configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replay recorded ticks through the whole pipeline and a simulated terminal over TCP.
    Replay {
        /// CSV (optionally gzipped) or MetaTrader 5 tick export.
        #[arg(long)]
        ticks: PathBuf,
        #[command(flatten)]
        run: RecordedRun,
        /// Bridge-to-ingestion transport (overrides the configuration).
        #[arg(long, value_enum)]
        transport: Option<TransportArg>,
        /// Ticks the simulated terminal may send ahead of the pipeline (at most half of
        /// `pipeline.channel_capacity`).
        #[arg(long, default_value_t = replay::DEFAULT_MAX_AHEAD)]
        max_ahead: u64,
    },
    /// Backtest recorded ticks: the pipeline driven straight from the file by a simulated
    /// broker in market time (the same trades as a replay, without the bridge).
    Backtest {
        /// CSV (optionally gzipped) or MetaTrader 5 tick export; several files run side by side.
        #[arg(long, num_args = 1.., required = true)]
        ticks: Vec<PathBuf>,
        #[command(flatten)]
        run: RecordedRun,
        /// Settings to try, `section.key=v1,v2,...` (repeatable): every combination runs, on
        /// separate cores, and a table compares them.
        #[arg(long)]
        grid: Vec<String>,
        /// Runs of a grid at once (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Feature tooling.
    Features {
        #[command(subcommand)]
        command: FeaturesCommand,
    },
    /// Positions as the journal has them.
    Positions {
        /// TOML configuration (for `journal.url`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Orders from the journal, oldest first.
    Orders {
        /// Only orders not yet filled, rejected, cancelled or expired.
        #[arg(long)]
        open: bool,
        /// TOML configuration (for `journal.url`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The audit log: every admin call through the gRPC API and every Telegram command, with
    /// who, what, when, how it ended and its chain.
    Audit {
        /// Only entries this long ago or since (30m, 1h, 2d); all without.
        #[arg(long)]
        since: Option<String>,
        /// TOML configuration (for `journal.url`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Access tokens (`[auth]`).
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Realised PnL from the journal's fills.
    Pnl {
        /// Only today's (UTC) fills.
        #[arg(long)]
        day: bool,
        /// TOML configuration (for `journal.url`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Halt a running instance: no new orders.
    Halt(StateArgs),
    /// Reduce a running instance: only orders that reduce exposure.
    Reduce(StateArgs),
    /// Resume normal trading on a running instance.
    Resume(StateArgs),
    /// The model registry: upload, list, show, rollout, promote, rollback, compare.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// The chain history: every chain that led to an order, stage by stage.
    Chain {
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// The Telegram bot (`[telegram]`; the token may come from MTML_TELEGRAM_TOKEN).
    Telegram {
        #[command(subcommand)]
        command: TelegramCommand,
    },
    /// The MetaTrader 5 expert advisor.
    Ea {
        #[command(subcommand)]
        command: EaCommand,
    },
}

#[derive(clap::Args)]
struct StateArgs {
    /// Why, for the journal and the logs.
    #[arg(long, default_value = "operator command")]
    reason: String,
    /// The running instance's URL (default: http:// and grpc.listen of the configuration).
    #[arg(long)]
    server: Option<ServerUrl>,
    /// TOML configuration.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ChainCommand {
    /// One chain as a waterfall: each stage's offset, duration and place on the time line.
    Show {
        /// The chain id (32 hex digits, as reports, orders and logs print it).
        chain_id: String,
        /// TOML configuration (for `journal.url`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Recent chains, latest first, or the slowest.
    Recent {
        /// The N slowest instead of the latest.
        #[arg(long, value_name = "N")]
        slowest: Option<i64>,
        /// Only chains a stage refused (risk, ingestion).
        #[arg(long, conflicts_with = "errors")]
        rejected: bool,
        /// Only chains a stage failed.
        #[arg(long)]
        errors: bool,
        /// How many (without --slowest).
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Only chains recorded this long ago or since (30m, 1h, 2d).
        #[arg(long)]
        since: Option<String>,
        /// TOML configuration (for `journal.url`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Per-stage latency (p50, p99, max) and the bottleneck of the slowest chains.
    Health {
        /// Only chains recorded this long ago or since (30m, 1h, 2d).
        #[arg(long)]
        since: Option<String>,
        /// TOML configuration (for `journal.url`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Reads a token on standard input (never an argument: it would show in the process list
    /// and the shell's history) and prints the `sha256:<hex>` form an `auth.*` entry takes
    /// (`"name:sha256:<hex>"`), so the configuration need not hold the token itself.
    Hash,
}

#[derive(Subcommand)]
enum TelegramCommand {
    /// Verify the token with getMe and send a test message to every configured chat.
    Check {
        /// TOML configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the bot on its own against a running instance: notices of this process only (its
    /// start and stop), commands answered through the instance's gRPC API and journal.
    Run {
        /// The running instance's URL (default: http:// and grpc.listen of the configuration).
        #[arg(long)]
        server: Option<ServerUrl>,
        /// TOML configuration (for `[telegram]` and `journal.url`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum EaCommand {
    /// Copy the EA into MetaTrader 5 data folders (found automatically, or given) and print the
    /// steps left to do in the terminal.
    Install {
        /// A terminal's data folder (or its MQL5 folder); repeatable. Default: every one found.
        #[arg(long = "terminal-dir")]
        terminal_dirs: Vec<PathBuf>,
        /// Show what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// TOML configuration, for the bridge address shown in the instructions.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum FeaturesCommand {
    /// Replay history through the online feature code and write training rows.
    Export {
        /// Tick file, as for replay.
        #[arg(long)]
        ticks: PathBuf,
        /// Output file: Parquet if it ends in .parquet, CSV otherwise.
        #[arg(long)]
        out: PathBuf,
        /// Symbol of a file without a symbol column.
        #[arg(long)]
        symbol: Option<String>,
        /// Also write the rows' feature distribution (JSON) here, for model.feature_distribution:
        /// the reference live feature drift is measured against.
        #[arg(long)]
        distribution: Option<PathBuf>,
    },
    /// The feature set this build computes (the one models must declare): its id, then one
    /// line per feature in input order; JSON with --json.
    Describe {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

async fn set_state(args: StateArgs, state: mtml_proto::v1::TradingState) -> anyhow::Result<()> {
    let server = match args.server {
        Some(server) => server,
        None => {
            let config = Config::load(args.config.as_deref())?;
            ServerUrl::of_listener(config.grpc.listen, config.tls.cert.is_some()).with_client(&config.client)?
        }
    };
    outln!("trading state: {}", trading_state::set_trading_state(&server, state, args.reason).await?);
    Ok(())
}

async fn open_journal(config: Option<&std::path::Path>) -> anyhow::Result<mtml_journal::Journal> {
    mtml::app::open_journal(&Config::load(config)?, mtml::app::Access::ReadOnly).await
}

/// A report path that cannot be written is found before the run, not after it.
fn writable(report: Option<&std::path::Path>) -> anyhow::Result<()> {
    match report {
        Some(path) => std::fs::write(path, b"").with_context(|| format!("--report {}: cannot write there", path.display())),
        None => Ok(()),
    }
}

/// What a replay and a backtest both take: the symbol of the ticks, where the reports go, the
/// configuration.
#[derive(clap::Args, Debug)]
struct RecordedRun {
    /// Symbol of a file without a symbol column (guessed from the file name otherwise).
    #[arg(long)]
    symbol: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the report as a self-contained HTML page here (charts, deals, latency).
    #[arg(long)]
    html: Option<PathBuf>,
    /// TOML configuration.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// A replay's or backtest's report: the summary, the JSON file, and a failure when its counts do
/// not add up or most ticks were refused.
fn publish(result: &mtml::Report, report: Option<&std::path::Path>, html: Option<&std::path::Path>) -> anyhow::Result<()> {
    out!("{}", result.summary());
    if let Some(path) = report {
        let json = serde_json::to_string_pretty(result)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        outln!("report written to {}", path.display());
    }
    if let Some(path) = html {
        std::fs::write(path, mtml::commands::html::html(result)).with_context(|| format!("writing {}", path.display()))?;
        outln!("HTML report written to {}", path.display());
    }
    if !result.counts_add_up {
        anyhow::bail!("counts do not add up: see the report");
    }
    let refused: u64 = result.pipeline.ticks_rejected.values().sum();
    if refused * 2 > result.run.ticks_read {
        let hint = if result.pipeline.ticks_rejected.contains_key("time_went_backwards") { " (is the file sorted oldest first?)" } else { "" };
        anyhow::bail!("{refused} of {} ticks were refused: {}{hint}", result.run.ticks_read, result.rejections_text());
    }
    Ok(())
}

/// A replay's progress on one line of a terminal, every half second: ticks taken, share, rate.
async fn show_progress((seen, total): (std::sync::Arc<std::sync::atomic::AtomicU64>, u64)) {
    let started = std::time::Instant::now();
    let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        every.tick().await;
        let n = seen.load(std::sync::atomic::Ordering::Relaxed);
        let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
        eprint!("\r\x1b[2Kreplay: {n} of {total} ticks ({:.0}%), {rate:.0} ticks/s", n as f64 * 100.0 / total.max(1) as f64);
    }
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("binding {what} to {addr}"))
}

/// "gRPC on ADDR, metrics on http://ADDR/metrics" (https with `[tls]`), as the running line
/// prints them.
fn listening(config: &Config, grpc: Option<std::net::SocketAddr>, metrics: Option<std::net::SocketAddr>) -> String {
    let grpc = grpc.map_or_else(|| "nothing".to_owned(), |addr| addr.to_string());
    let scheme = if config.tls.cert.is_some() { "https" } else { "http" };
    let metrics = metrics.map_or_else(String::new, |addr| format!(", metrics on {scheme}://{addr}/metrics"));
    format!("gRPC on {grpc}{metrics}")
}

/// What a stopped pipeline did, on one line.
fn stopped(outcome: mtml_pipeline::PipelineOutcome) {
    let execution = &outcome.execution;
    eprintln!(
        "stopped after {} ticks: {} orders sent, {} fills, {} unknown outcomes settled, {} reconciliation differences",
        outcome.counters.ticks_seen,
        execution.orders_sent,
        execution.fills,
        execution.unknown_settled,
        execution.reconciliation_differences
    );
}

#[derive(Clone, Copy, ValueEnum)]
enum TransportArg {
    InProcess,
    Grpc,
}

/// Errors are printed as one line of causes, never with a backtrace (whatever `RUST_BACKTRACE`
/// says): the user gets what went wrong and what to do, and exit status 1.
fn main() -> std::process::ExitCode {
    no_onnxruntime_telemetry();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Keeps ONNX Runtime from queueing telemetry for Microsoft (see
/// [`mtml_inference::TELEMETRY_OFF_ENV`]): its variable is set before the library can load.
#[allow(unsafe_code)]
fn no_onnxruntime_telemetry() {
    // SAFETY: the first thing `main` does, while the process has a single thread: nothing else
    // reads or writes the environment at the same time.
    unsafe { std::env::set_var(mtml_inference::TELEMETRY_OFF_ENV, "1") };
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if !(cli.timeout.is_finite() && cli.timeout > 0.0) {
        anyhow::bail!("--timeout {}: give a number of seconds above 0", cli.timeout);
    }
    mtml::client::set_request_timeout(std::time::Duration::from_secs_f64(cli.timeout));
    // MTML_LOG=debug would be mostly sqlx's query lines: they stay at warn unless named.
    let filter = match std::env::var("MTML_LOG") {
        Ok(given) if !given.contains("sqlx") => tracing_subscriber::EnvFilter::try_new(format!("{given},sqlx=warn")),
        Ok(given) => tracing_subscriber::EnvFilter::try_new(given),
        Err(_) => tracing_subscriber::EnvFilter::try_new("warn,mtml=info"),
    };
    let filter = filter.unwrap_or_else(|error| {
        eprintln!("MTML_LOG is not a log filter ({error}); logging warn,mtml=info");
        tracing_subscriber::EnvFilter::new("warn,mtml=info")
    });
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match std::env::var(mtml::config::LOG_FORMAT_ENV).as_deref() {
        // One JSON object per line, for a log shipper (Loki, Elasticsearch, Datadog...).
        Ok("json") => logs.json().with_current_span(true).init(),
        Ok("text") | Err(_) => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        Ok(other) => {
            logs.with_ansi(false).init();
            tracing::warn!("{} {other:?} is neither \"text\" nor \"json\"; logging text", mtml::config::LOG_FORMAT_ENV);
        }
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => {
                let config = Config::load(config.as_deref())?;
                let onnx = mtml::runtime::load_runtime(&config)?;
                let bridge = bind(config.bridge.listen, "the bridge").await?;
                let (grpc, metrics) = (bind(config.grpc.listen, "gRPC").await?, mtml::app::bind_metrics(&config).await?);
                let mut app = App::start(&config, &onnx, Listeners { bridge: Some(bridge), grpc: Some(grpc), metrics }).await?;
                if let Some(operations) = mtml::commands::telegram::Operations::of(&app) {
                    app.start_telegram_console(operations);
                }
                let terminals = app.bridge_addr.map_or_else(String::new, |addr| addr.to_string());
                eprintln!("mtml running: terminals on {terminals}, {}; ctrl-c stops", listening(&config, app.grpc_addr, app.metrics_addr));
                stopped(app.run_until_signal().await?);
                Ok(())
            }
            Command::Pipeline { config } => {
                let config = Config::load(config.as_deref())?;
                let onnx = mtml::runtime::load_runtime(&config)?;
                let (grpc, metrics) = (bind(config.grpc.listen, "gRPC").await?, mtml::app::bind_metrics(&config).await?);
                let mut app = App::start(&config, &onnx, Listeners { bridge: None, grpc: Some(grpc), metrics }).await?;
                if let Some(operations) = mtml::commands::telegram::Operations::of(&app) {
                    app.start_telegram_console(operations);
                }
                let bridge = config.pipeline.bridge.as_ref().map_or("", |url| url.as_str());
                eprintln!("mtml pipeline running: {}; orders to {bridge}; ctrl-c stops", listening(&config, app.grpc_addr, app.metrics_addr));
                stopped(app.run_until_signal().await?);
                Ok(())
            }
            Command::Bridge { config } => {
                let config = Config::load(config.as_deref())?;
                let bridge = bind(config.bridge.listen, "the bridge").await?;
                let (grpc, metrics) = (bind(config.grpc.listen, "gRPC").await?, mtml::app::bind_metrics(&config).await?);
                let app = mtml::bridge_app::BridgeApp::start(&config, bridge, grpc, metrics).await?;
                let pipeline = config.bridge.pipeline.as_ref().map_or("", |url| url.as_str());
                eprintln!(
                    "mtml bridge running: terminals on {}, {}; ticks to {pipeline}; ctrl-c stops",
                    app.bridge_addr,
                    listening(&config, Some(app.grpc_addr), app.metrics_addr)
                );
                app.run_until_signal().await
            }
            Command::Replay { ticks, run: RecordedRun { symbol, report, html, config }, transport, max_ahead } => {
                writable(report.as_deref())?;
                writable(html.as_deref())?;
                let config_given = config.is_some() || std::env::var_os(mtml::config::CONFIG_ENV).is_some_and(|v| !v.is_empty());
                let mut config = Config::load(config.as_deref())?;
                if let Some(transport) = transport {
                    config.pipeline.transport = match transport {
                        TransportArg::InProcess => Transport::InProcess,
                        TransportArg::Grpc => Transport::Grpc,
                    };
                }
                let running = mtml::commands::replay::start_replay(ReplayOptions { ticks, symbol, config, config_given, max_ahead, terminal_balance: None }).await?;
                let progress = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| tokio::spawn(show_progress(running.progress())));
                let result = running.finish().await;
                if let Some(progress) = progress {
                    progress.abort();
                    eprint!("\r\x1b[2K");
                }
                publish(&result?, report.as_deref(), html.as_deref())
            }
            Command::Backtest { ticks, run: RecordedRun { symbol, report, html, config: file }, grid, jobs } => {
                use mtml::commands::backtest;
                writable(report.as_deref())?;
                writable(html.as_deref())?;
                let config = Config::load(file.as_deref())?;
                let runtime = mtml::runtime::load_runtime(&config)?;
                if let ([ticks], true) = (ticks.as_slice(), grid.is_empty()) {
                    let options = backtest::BacktestOptions { ticks: ticks.clone(), symbol, config };
                    let result = tokio::task::spawn_blocking(move || backtest::backtest(options, &runtime)).await??;
                    return publish(&result, report.as_deref(), html.as_deref());
                }
                let grid = backtest::parse_grid(&grid)?;
                let workers = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
                let runs = tokio::task::spawn_blocking(move || backtest::backtest_grid(&ticks, symbol.as_deref(), file.as_deref(), &grid, &runtime, workers)).await??;
                out!("{}", backtest::grid_table(&runs));
                if let Some(path) = report {
                    std::fs::write(&path, serde_json::to_string_pretty(&runs)?).with_context(|| format!("writing {}", path.display()))?;
                    outln!("report written to {}", path.display());
                }
                Ok(())
            }
            Command::Chain { command } => {
                let since_ms = |since: Option<String>| -> anyhow::Result<i64> {
                    let now = mtml_core::clock::Clock::now_ms(&mtml_core::clock::SystemClock);
                    since.map_or(Ok(0), |text| Ok(now - chains::parse_since(&text)?))
                };
                match command {
                    ChainCommand::Show { chain_id, config } => out!("{}", chains::show(&open_journal(config.as_deref()).await?, &chain_id).await?),
                    ChainCommand::Recent { slowest, rejected, errors, limit, since, config } => {
                        let journal = open_journal(config.as_deref()).await?;
                        let outcome = (rejected.then_some("rejected")).or(errors.then_some("error"));
                        let rows = journal.chains(since_ms(since)?, slowest.is_some(), slowest.unwrap_or(limit), outcome).await?;
                        out!("{}", mtml_journal::chain_report::chain_list(&rows));
                    }
                    ChainCommand::Health { since, config } => {
                        let journal = open_journal(config.as_deref()).await?;
                        out!("{}", mtml_journal::chain_report::health(&journal.spans_since(since_ms(since)?).await?));
                    }
                }
                Ok(())
            }
            Command::Halt(args) => set_state(args, mtml_proto::v1::TradingState::Halted).await,
            Command::Reduce(args) => set_state(args, mtml_proto::v1::TradingState::Reducing).await,
            Command::Resume(args) => set_state(args, mtml_proto::v1::TradingState::Active).await,
            Command::Positions { config } => {
                let journal = open_journal(config.as_deref()).await?;
                out!("{}", journal::positions(&journal).await?);
                Ok(())
            }
            Command::Orders { open, config } => {
                let journal = open_journal(config.as_deref()).await?;
                out!("{}", journal::orders(&journal, open).await?);
                Ok(())
            }
            Command::Audit { since, config } => {
                let journal = open_journal(config.as_deref()).await?;
                let since_ms = match since {
                    Some(text) => mtml_core::clock::Clock::now_ms(&mtml_core::clock::SystemClock) - chains::parse_since(&text)?,
                    None => 0,
                };
                out!("{}", journal::audit(&journal, since_ms).await?);
                Ok(())
            }
            Command::Auth { command: AuthCommand::Hash } => {
                let mut token = String::new();
                std::io::stdin().read_line(&mut token).context("reading the token from standard input")?;
                let token = token.trim();
                anyhow::ensure!(token.len() >= 16, "the token on standard input is shorter than 16 characters");
                outln!("sha256:{}", mtml_auth::token_digest_hex(token));
                Ok(())
            }
            Command::Pnl { day, config } => {
                let journal = open_journal(config.as_deref()).await?;
                let since = day.then(journal::start_of_utc_day);
                out!("{}", journal::pnl(&journal, since).await?);
                Ok(())
            }
            Command::Ea { command: EaCommand::Install { terminal_dirs, dry_run, config } } => {
                let config = Config::load(config.as_deref())?;
                let roots = ea_install::SearchRoots::from_env();
                out!("{}", ea_install::install(&terminal_dirs, &roots, dry_run, config.bridge.listen)?);
                Ok(())
            }
            Command::Models { command } => models::run(command).await,
            Command::Telegram { command: TelegramCommand::Check { config } } => {
                let config = Config::load(config.as_deref())?;
                let settings = config.telegram_settings()?.context("no bot token: set telegram.token or MTML_TELEGRAM_TOKEN")?;
                let name = mtml_telegram::check(&settings).await?;
                outln!("token of @{name} verified; test message sent to {} chat(s)", settings.chats.len());
                Ok(())
            }
            Command::Telegram { command: TelegramCommand::Run { server, config } } => {
                let config = Config::load(config.as_deref())?;
                let settings = config.telegram_settings()?.context("no bot token: set telegram.token or MTML_TELEGRAM_TOKEN")?;
                let server = match server {
                    Some(server) => server.with_client(&config.client)?,
                    None => ServerUrl::of_listener(config.grpc.listen, config.tls.cert.is_some()).with_client(&config.client)?,
                };
                let journal = mtml::app::open_journal(&config, mtml::app::Access::ReadWrite).await?;
                let mut bot = mtml_telegram::Telegram::start(&settings)?;
                bot.console(&settings, std::sync::Arc::new(mtml::commands::telegram::Operations { server, journal }));
                tracing::info!("telegram bot running");
                mtml::app::shutdown_signal().await;
                bot.stop().await;
                Ok(())
            }
            Command::Features { command: FeaturesCommand::Export { ticks, out, symbol, distribution } } => {
                let rows = export::export_features(&ticks, symbol.as_deref(), &out, distribution.as_deref())?;
                if rows == 0 {
                    anyhow::bail!("{}: no training rows (no tick made a feature vector; see the log for refused ticks); {} holds only a header", ticks.display(), out.display());
                }
                outln!("wrote {rows} rows of {} to {}", mtml_feature_store::FEATURE_SET.id(), out.display());
                Ok(())
            }
            Command::Features { command: FeaturesCommand::Describe { json } } => {
                out!("{}", export::describe_feature_set(json));
                Ok(())
            }
        }
    })
}
