//! The `mtml` binary: parses arguments and configuration, sets up tracing, and calls into the
//! libraries. Nothing else lives here.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use mtml::{App, Config, Listeners, ReplayOptions, Transport};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(name = "mtml", version, about = "MetaTrader 5 bridge and ML inference pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start every service in one process: the bridge for terminals, the gRPC API, the pipeline.
    Run {
        /// TOML configuration; every setting also has a default and an MTML_* variable.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Replay recorded ticks through the whole pipeline and a simulated terminal over TCP.
    Replay {
        /// CSV (optionally gzipped) or MetaTrader 5 tick export.
        #[arg(long)]
        ticks: PathBuf,
        /// Symbol of a file without a symbol column (guessed from the file name otherwise).
        #[arg(long)]
        symbol: Option<String>,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// TOML configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Bridge-to-ingestion transport (overrides the configuration).
        #[arg(long, value_enum)]
        transport: Option<TransportArg>,
        /// Ticks the simulated terminal may send ahead of the pipeline.
        #[arg(long, default_value_t = mtml::replay::DEFAULT_MAX_AHEAD)]
        max_ahead: u64,
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
        command: ModelsCommand,
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
    /// The instance's gRPC address (default: grpc.listen of the configuration).
    #[arg(long)]
    grpc: Option<String>,
    /// TOML configuration.
    #[arg(long)]
    config: Option<PathBuf>,
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

/// Where a models command acts: on a running instance (`--server`) or on the registry
/// database of the configuration.
#[derive(clap::Args)]
struct Target {
    /// A running instance's gRPC address (http://host:port): act through its ModelAdmin
    /// service, which applies rollout changes there at once.
    #[arg(long)]
    server: Option<String>,
    /// TOML configuration (for `registry.url`), when acting on the registry directly.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Validate an ONNX model against the feature set and register it as a new version.
    Upload {
        /// The ONNX file.
        file: PathBuf,
        /// Name to register it under.
        #[arg(long)]
        name: String,
        /// Training metrics, a JSON object (models/*.metrics.json).
        #[arg(long)]
        metadata: Option<PathBuf>,
        /// The sha256 the file must have.
        #[arg(long)]
        sha256: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Every registered version.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// One version in full, and the model's rollout: NAME (latest), NAME:VERSION,
    /// NAME:champion or NAME:challenger.
    Show {
        /// NAME[:VERSION | :champion | :challenger].
        spec: String,
        #[command(flatten)]
        target: Target,
    },
    /// Put NAME:VERSION on trial beside the champion: as a shadow (recorded, never acted on) or
    /// a canary (acted on for a share of chains, split by chain id).
    Rollout {
        /// NAME:VERSION.
        spec: String,
        /// Run beside the champion on the same inputs; never acted on.
        #[arg(long, conflicts_with = "canary")]
        shadow: bool,
        /// Act on this percentage of chains (1 to 100).
        #[arg(long, value_name = "PERCENT")]
        canary: Option<u8>,
        /// With --canary: only these symbols (comma separated).
        #[arg(long, value_delimiter = ',', requires = "canary")]
        symbols: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Make NAME:VERSION the champion.
    Promote {
        /// NAME:VERSION.
        spec: String,
        #[command(flatten)]
        target: Target,
    },
    /// Undo the latest step of NAME: withdraw its challenger, or without one restore the
    /// champion before the last promote.
    Rollback {
        /// NAME.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Champion against challenger on a running instance's traffic: agreement, probability
    /// shift, latency, hit rate and signal PnL.
    Compare {
        /// NAME.
        name: String,
        /// The running instance (http://host:port).
        #[arg(long)]
        server: String,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
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
    let config = Config::load(args.config.as_deref())?;
    let address = args.grpc.unwrap_or_else(|| {
        let listen = config.grpc.listen;
        let host = if listen.ip().is_unspecified() { "127.0.0.1".to_owned() } else { listen.ip().to_string() };
        format!("{host}:{}", listen.port())
    });
    let mut client = mtml_proto::v1::admin_client::AdminClient::connect(format!("http://{address}"))
        .await
        .with_context(|| format!("connecting to mtml at {address}"))?;
    let request = mtml_proto::v1::SetTradingStateRequest { state: state as i32, reason: args.reason };
    let reply = client.set_trading_state(request).await.map_err(|status| anyhow::anyhow!("{}", status.message()))?;
    let now = mtml_proto::v1::TradingState::try_from(reply.into_inner().state)
        .map_or("UNKNOWN".to_owned(), |s| s.as_str_name().trim_start_matches("TRADING_STATE_").to_owned());
    println!("trading state: {now}");
    Ok(())
}

fn actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `mtml models ...`: through a running instance with `--server`, else on the registry.
async fn models(command: ModelsCommand) -> anyhow::Result<()> {
    use mtml::models_cmd::{admin_client, rollout_text, status_error};
    use mtml_proto::v1;
    let local_status = |state: &mtml_registry::RolloutState, message: String| {
        mtml::model_admin::rollout_status(state, message, &mtml::rollout::Serving::default())
    };
    match command {
        ModelsCommand::Upload { file, name, metadata, sha256, target } => {
            let upload = mtml::models_cmd::Upload { file: &file, name: &name, metadata: metadata.as_deref(), sha256: sha256.as_deref() };
            let (version, sha, size) = match &target.server {
                Some(server) => {
                    let v = mtml::models_cmd::upload_remote(server, upload, mtml::models_cmd::UPLOAD_CHUNK).await?;
                    (v.version, v.sha256, v.size_bytes)
                }
                None => {
                    let config = Config::load(target.config.as_deref())?;
                    let runtime = mtml::app::load_runtime(&config)?;
                    let row = mtml::models_cmd::upload(&runtime, &open_registry(&config).await?, upload).await?;
                    (row.version.to_string(), row.sha256, u64::try_from(row.size_bytes).unwrap_or(0))
                }
            };
            println!("registered {name}:{version} (sha256 {sha}, {size} bytes)");
        }
        ModelsCommand::List { target } => {
            let rows = match &target.server {
                Some(server) => {
                    let list = admin_client(server).await?.list_models(v1::ListModelsRequest {}).await.map_err(status_error)?;
                    list.into_inner().models.iter().map(mtml::models_cmd::row_from_proto).collect()
                }
                None => open_registry(&Config::load(target.config.as_deref())?).await?.list().await?,
            };
            print!("{}", mtml::models_cmd::list_table(&rows));
        }
        ModelsCommand::Show { spec, target } => {
            let (row, status) = match &target.server {
                Some(server) => {
                    let shown = admin_client(server).await?.show_model(v1::ShowModelRequest { spec }).await.map_err(status_error)?.into_inner();
                    (mtml::models_cmd::row_from_proto(&shown.version.unwrap_or_default()), shown.rollout.unwrap_or_default())
                }
                None => {
                    let registry = open_registry(&Config::load(target.config.as_deref())?).await?;
                    let (name, version) = mtml::models_cmd::split_spec(&spec);
                    let version = registry.resolve(name, version).await?;
                    (registry.show(name, Some(version)).await?, local_status(&registry.rollout_state(name).await?, String::new()))
                }
            };
            print!("{}{}", mtml::models_cmd::show_text(&row), rollout_text(&status));
        }
        ModelsCommand::Rollout { spec, shadow, canary, symbols, target } => {
            let (name, version) = mtml::models_cmd::parse_version_spec(&spec)?;
            let route = match (shadow, canary) {
                (true, None) => mtml_registry::Route::Shadow,
                (false, Some(percent)) => mtml_registry::Route::Canary { percent, symbols },
                _ => anyhow::bail!("say how {spec} takes traffic: --shadow, or --canary PERCENT [--symbols A,B]"),
            };
            let status = match &target.server {
                Some(server) => {
                    let route = match route {
                        mtml_registry::Route::Shadow => v1::rollout_request::Route::Shadow(v1::Shadow {}),
                        mtml_registry::Route::Canary { percent, symbols } => v1::rollout_request::Route::Canary(v1::Canary { percent: u32::from(percent), symbols }),
                    };
                    let request = v1::RolloutRequest { name: name.to_owned(), version, route: Some(route), actor: actor() };
                    admin_client(server).await?.rollout(request).await.map_err(status_error)?.into_inner()
                }
                None => {
                    let registry = open_registry(&Config::load(target.config.as_deref())?).await?;
                    let described = route.to_string();
                    let state = registry.start_rollout(name, version, route, &actor(), now_ms()).await?;
                    local_status(&state, format!("{spec} on {described}"))
                }
            };
            print!("{}", rollout_text(&status));
        }
        ModelsCommand::Promote { spec, target } => {
            let (name, version) = mtml::models_cmd::parse_version_spec(&spec)?;
            let status = match &target.server {
                Some(server) => {
                    let request = v1::PromoteRequest { name: name.to_owned(), version, actor: actor() };
                    admin_client(server).await?.promote(request).await.map_err(status_error)?.into_inner()
                }
                None => {
                    let registry = open_registry(&Config::load(target.config.as_deref())?).await?;
                    local_status(&registry.promote(name, version, &actor(), now_ms()).await?, format!("{spec} is the champion"))
                }
            };
            print!("{}", rollout_text(&status));
        }
        ModelsCommand::Rollback { name, target } => {
            let status = match &target.server {
                Some(server) => {
                    let request = v1::RollbackRequest { name: name.clone(), actor: actor() };
                    admin_client(server).await?.rollback(request).await.map_err(status_error)?.into_inner()
                }
                None => {
                    let registry = open_registry(&Config::load(target.config.as_deref())?).await?;
                    let (outcome, state) = registry.rollback(&name, &actor(), now_ms()).await?;
                    local_status(&state, outcome.to_string())
                }
            };
            print!("{}", rollout_text(&status));
        }
        ModelsCommand::Compare { name, server, json } => {
            let report = admin_client(&server).await?.compare_models(v1::CompareModelsRequest { name }).await.map_err(status_error)?.into_inner();
            if json {
                println!("{}", if report.active { report.report_json } else { "null".to_owned() });
            } else {
                print!("{}", report.report_text);
            }
        }
    }
    Ok(())
}

async fn open_registry(config: &Config) -> anyhow::Result<mtml_registry::Registry> {
    mtml_registry::Registry::open(&config.registry.url)
        .await
        .with_context(|| format!("opening the model registry at {}", config.registry.url))
}

async fn open_journal(config: Option<&std::path::Path>) -> anyhow::Result<mtml_journal::Journal> {
    let config = Config::load(config)?;
    mtml_journal::Journal::open(&config.journal.url)
        .await
        .with_context(|| format!("opening the journal at {}", config.journal.url))
}

#[derive(Clone, Copy, ValueEnum)]
enum TransportArg {
    InProcess,
    Grpc,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MTML_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,mtml=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => {
                let config = Config::load(config.as_deref())?;
                let onnx = mtml::app::load_runtime(&config)?;
                let bridge = TcpListener::bind(config.bridge.listen)
                    .await
                    .with_context(|| format!("binding the bridge to {}", config.bridge.listen))?;
                let grpc = TcpListener::bind(config.grpc.listen)
                    .await
                    .with_context(|| format!("binding gRPC to {}", config.grpc.listen))?;
                if config.bridge.token.is_empty() {
                    tracing::warn!("bridge.token is empty: any terminal that can connect is served");
                }
                let app = App::start(&config, &onnx, Listeners { bridge, grpc: Some(grpc) }).await?;
                eprintln!("mtml running: terminals on {}, gRPC on {:?}; ctrl-c stops", app.bridge_addr, app.grpc_addr);
                let outcome = app.run_until_signal().await?;
                let execution = &outcome.execution;
                eprintln!(
                    "stopped after {} ticks: {} orders sent, {} fills, {} unknown outcomes settled, {} reconciliation differences",
                    outcome.counters.ticks_seen,
                    execution.orders_sent,
                    execution.fills,
                    execution.unknown_settled,
                    execution.reconciliation_differences
                );
                Ok(())
            }
            Command::Replay { ticks, symbol, report, config, transport, max_ahead } => {
                let config_given = config.is_some();
                let mut config = Config::load(config.as_deref())?;
                if let Some(transport) = transport {
                    config.pipeline.transport = match transport {
                        TransportArg::InProcess => Transport::InProcess,
                        TransportArg::Grpc => Transport::Grpc,
                    };
                }
                let result =
                    mtml::replay(ReplayOptions { ticks, symbol, config, config_given, max_ahead, terminal_balance: None }).await?;
                print!("{}", result.summary());
                if let Some(path) = report {
                    let json = serde_json::to_string_pretty(&result)?;
                    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
                    println!("report written to {}", path.display());
                }
                if !result.counts_add_up {
                    anyhow::bail!("counts do not add up: see the report");
                }
                Ok(())
            }
            Command::Halt(args) => set_state(args, mtml_proto::v1::TradingState::Halted).await,
            Command::Reduce(args) => set_state(args, mtml_proto::v1::TradingState::Reducing).await,
            Command::Resume(args) => set_state(args, mtml_proto::v1::TradingState::Active).await,
            Command::Positions { config } => {
                let journal = open_journal(config.as_deref()).await?;
                print!("{}", mtml::journal_view::positions(&journal).await?);
                Ok(())
            }
            Command::Orders { open, config } => {
                let journal = open_journal(config.as_deref()).await?;
                print!("{}", mtml::journal_view::orders(&journal, open).await?);
                Ok(())
            }
            Command::Pnl { day, config } => {
                let journal = open_journal(config.as_deref()).await?;
                let since = day.then(mtml::journal_view::start_of_utc_day);
                print!("{}", mtml::journal_view::pnl(&journal, since).await?);
                Ok(())
            }
            Command::Ea { command: EaCommand::Install { terminal_dirs, dry_run, config } } => {
                let config = Config::load(config.as_deref())?;
                let roots = mtml::ea_install::SearchRoots::from_env();
                let bridge = config.bridge.listen.to_string();
                print!("{}", mtml::ea_install::install(&terminal_dirs, &roots, dry_run, &bridge)?);
                Ok(())
            }
            Command::Models { command } => models(command).await,
            Command::Features { command: FeaturesCommand::Export { ticks, out, symbol } } => {
                let rows = mtml::export::export_features(&ticks, symbol.as_deref(), &out)?;
                println!("wrote {rows} rows of {} to {}", mtml_feature_store::FEATURE_SET.id(), out.display());
                Ok(())
            }
            Command::Features { command: FeaturesCommand::Describe { json } } => {
                print!("{}", mtml::export::describe_feature_set(json));
                Ok(())
            }
        }
    })
}
