//! Typed configuration, parsed once, with every problem reported together.
//!
//! Sources, later ones winning: built-in defaults, the TOML file (`--config`, else the file
//! `MTML_CONFIG` names), `MTML_<SECTION>_<KEY>`
//! environment variables (`MTML_DECISION_BUY_ABOVE=0.6`). An unknown key, a value of the wrong
//! type and a value out of range are all problems; [`Config::load`] lists every one of them.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the bridge hands ticks to ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// A bounded channel in this process.
    InProcess,
    /// The `mtml.v1.Ingestion` gRPC stream over loopback.
    Grpc,
}

impl Transport {
    /// The name in the configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transport::InProcess => "in-process",
            Transport::Grpc => "grpc",
        }
    }
}

/// Every setting of mtml.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Terminal-facing bridge.
    pub bridge: BridgeSettings,
    /// gRPC API.
    pub grpc: GrpcSettings,
    /// The metrics and health endpoints.
    pub metrics: MetricsSettings,
    /// `[otlp]`.
    pub otlp: OtlpSettings,
    /// The tick pipeline.
    pub pipeline: PipelineSettings,
    /// The model.
    pub model: ModelSettings,
    /// Decision thresholds and sizing.
    pub decision: DecisionSettings,
    /// Risk limits.
    pub risk: RiskSettings,
    /// The journal.
    pub journal: JournalSettings,
    /// The model registry.
    pub registry: RegistrySettings,
    /// Feature stores and history.
    pub features: FeatureSettings,
    /// ONNX Runtime.
    pub runtime: RuntimeSettings,
    /// `[telegram]`
    pub telegram: TelegramConfig,
    /// `[auth]`: who may call this instance.
    pub auth: AuthSettings,
    /// `[client]`: how this process calls another mtml.
    pub client: crate::client::ClientSettings,
    /// `[tls]`: this process's servers speak TLS.
    pub tls: crate::tls::TlsSettings,
    /// `[replay]`: the simulated broker of replays.
    pub replay: ReplaySettings,
    /// The settings the file or the environment gave (`section.key`); the rest are defaults.
    pub given: std::collections::BTreeSet<String>,
}

/// `[replay]`: how a replay's simulated broker fills, in market time, so that a replay gives the
/// same fills every run (see `mtml_simulator::MarketTimeFills`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplaySettings {
    /// Market time from the tick an order was decided on to the quote it fills at, ms (at least
    /// the next quote).
    pub fill_latency_ms: i64,
    /// Points a market order's fill moves against it.
    pub slippage_points: f64,
    /// Commission per lot traded, account currency, in the report's costs.
    pub commission_per_lot: f64,
}

impl ReplaySettings {
    /// The simulated broker's fill rule.
    pub fn fills(&self) -> mtml_core::MarketTimeFills {
        mtml_core::MarketTimeFills { latency_ms: self.fill_latency_ms, slippage_points: self.slippage_points }
    }
}

/// `[registry]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrySettings {
    /// `postgres://user@host/db`, or `sqlite://path?mode=rwc` (the default, a file in the current
    /// folder), or `sqlite::memory:`.
    pub url: String,
}

/// `[features]`: where the latest feature vectors and the history go.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSettings {
    /// `memory` (the default, in-process) or `redis://host:port/db`.
    pub online: String,
    /// Redis keys expire this long after their last write.
    pub online_ttl: Duration,
    /// `none`, `sqlite://path?mode=rwc` (the default, a file in the current folder),
    /// `sqlite::memory:`, or InfluxDB's v1 API: `http://[user:password@]host:8086/DATABASE`.
    pub history: String,
    /// The write-ahead file history points spill to while the history store is down or slow.
    pub history_wal: PathBuf,
    /// Points per history write.
    pub history_batch: usize,
    /// History points held in memory before they spill to the write-ahead file.
    pub history_memory_points: usize,
    /// A store call slower than this counts as failed (and is retried).
    pub store_timeout: Duration,
    /// Bar timeframes built and stored besides M1 (`M5`, `M15`, `H1`, `H4`, `D1`...).
    pub timeframes: Vec<String>,
}

/// `[journal]`.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalSettings {
    /// `postgres://user@host/db`, or `sqlite://path?mode=rwc` (the default, a file in the current
    /// folder), or `sqlite::memory:`.
    pub url: String,
    /// Chains older than this many days leave the chain history (checked at start and hourly);
    /// 0 keeps them all.
    pub chain_retention_days: u64,
    /// The share of ordinary chains (no order, refusal or error: those are all kept) the chain
    /// history keeps too, in 1/10 000 (`chain_sample = 0.01` in the file is 100, 1%).
    pub chain_sample_basis_points: u16,
}

/// `[auth]`: bearer tokens per role (`read`, `trade`, `admin`), each `name:token` or
/// `name:sha256:<hex>`; with none, every caller is admitted, and the gRPC API and metrics may
/// listen on loopback only.
#[derive(Clone, PartialEq, Default)]
pub struct AuthSettings {
    /// Tokens of the read role.
    pub read: Vec<String>,
    /// Tokens of the trade role.
    pub trade: Vec<String>,
    /// Tokens of the admin role.
    pub admin: Vec<String>,
    /// Token name → when it expires (`2027-01-31` or an RFC 3339 time).
    pub expires: BTreeMap<String, String>,
    /// Names of revoked tokens.
    pub revoked: Vec<String>,
}

impl AuthSettings {
    /// The tokens, checked: an entry's problem names it, never its secret.
    pub fn tokens(&self) -> Result<mtml_auth::Tokens, String> {
        let mut tokens = mtml_auth::Tokens::default();
        for (role, specs) in [(mtml_auth::Role::Read, &self.read), (mtml_auth::Role::Trade, &self.trade), (mtml_auth::Role::Admin, &self.admin)] {
            for spec in specs {
                tokens.add(role, spec).map_err(|e| format!("auth.{role}: {e}"))?;
            }
        }
        for (name, at) in &self.expires {
            let at = mtml_auth::parse_expiry(at).map_err(|e| format!("auth.expires.{name}: {e}"))?;
            tokens.expire(name, at).map_err(|e| format!("auth.expires: {e}"))?;
        }
        for name in &self.revoked {
            tokens.revoke(name).map_err(|e| format!("auth.revoked: {e}"))?;
        }
        Ok(tokens)
    }
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |specs: &[String]| specs.iter().map(|s| s.split(':').next().unwrap_or_default().to_owned()).collect::<Vec<_>>();
        f.debug_struct("AuthSettings")
            .field("read", &names(&self.read))
            .field("trade", &names(&self.trade))
            .field("admin", &names(&self.admin))
            .field("expires", &self.expires)
            .field("revoked", &self.revoked)
            .finish()
    }
}

/// `[telegram]`: the bot, on when a token is given (`telegram.token` or `MTML_TELEGRAM_TOKEN`).
#[derive(Clone, PartialEq)]
pub struct TelegramConfig {
    /// The bot token; empty for no bot. Never logged or shown.
    pub token: String,
    /// The Bot API's base URL.
    pub api_url: String,
    /// Chats that get notices.
    pub chats: Vec<i64>,
    /// Users who may read.
    pub read_users: Vec<u64>,
    /// Users who may also act.
    pub act_users: Vec<u64>,
    /// Notice levels for every chat (`fill = "silent"`), over the defaults.
    pub notify: BTreeMap<String, String>,
    /// How long a confirmation button stays valid.
    pub confirm: Duration,
    /// Long-polling timeout of getUpdates.
    pub poll: Duration,
    /// The daily summary's time, UTC (`"21:00"`), or empty for none.
    pub daily_summary: Option<(u8, u8)>,
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_empty() { "" } else { "<hidden>" };
        f.debug_struct("TelegramConfig").field("token", &token).field("api_url", &self.api_url).field("chats", &self.chats).finish_non_exhaustive()
    }
}

/// `[bridge]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeSettings {
    /// Where terminals connect.
    pub listen: SocketAddr,
    /// Where a bridge run on its own (`mtml bridge`) sends ticks: the gRPC API of the pipeline
    /// (`mtml pipeline`).
    pub pipeline: Option<crate::client::ServerUrl>,
    /// Token every EA must present.
    pub token: String,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Silence after which a terminal is dropped.
    pub silence_timeout: Duration,
    /// How often the bridge asks each terminal for its books (SYNC) to reconcile positions
    /// while connected; zero turns periodic reconciliation off (it still runs on every connect).
    pub reconcile_every: Duration,
    /// How long an order may go unanswered before the terminal's books are asked to settle it.
    pub order_timeout: Duration,
    /// Terminal connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Orders an account may hold unanswered or pending at once; more are refused, counted.
    pub max_orders_in_flight: usize,
    /// Terminals connect over TLS, with `[tls]`'s certificate and key (the EA's `InpTls`).
    pub tls: bool,
    /// Broker symbol to canonical symbol, beyond suffix detection.
    pub symbol_map: BTreeMap<String, String>,
    /// What to do with ticks when the pipeline is full: block (never lose one) or drop (counted).
    pub backpressure: mtml_bridge::Backpressure,
    /// Windows named pipe to serve terminals on besides TCP (`\\.\pipe\NAME`); `None` for none.
    pub pipe_name: Option<String>,
    /// Fixed chain-id prefix (replays set it, so their chain ids repeat); not read from files.
    pub chain_prefix: Option<u64>,
}

/// `[grpc]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcSettings {
    /// Where the gRPC API listens.
    pub listen: SocketAddr,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// Where `/metrics`, `/healthz` and `/readyz` are served over HTTP; `None` (the default,
    /// `listen = ""`) serves none.
    pub listen: Option<SocketAddr>,
}

/// `[otlp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// An OpenTelemetry collector's OTLP/gRPC endpoint (`http://collector:4317`) the chains are
    /// exported to as traces; `None` (the default) exports nothing.
    pub endpoint: Option<crate::client::ServerUrl>,
}

/// `[pipeline]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSettings {
    /// Canonical symbols accepted.
    pub symbols: Vec<String>,
    /// Bridge to ingestion transport.
    pub transport: Transport,
    /// Where a pipeline run on its own (`mtml pipeline`) sends orders: the gRPC API of the
    /// bridge (`mtml bridge`).
    pub bridge: Option<crate::client::ServerUrl>,
    /// Capacity of the tick channel between bridge and pipeline: when full, the bridge stops
    /// reading terminals (backpressure), it never drops.
    pub channel_capacity: usize,
    /// How far a tick's time may step back before it is refused.
    pub backwards_tolerance_ms: i64,
    /// Features older than this are served marked stale.
    pub stale_features_ms: i64,
    /// Tick arrival to order sent above this is a slow order (counted, and told on Telegram).
    pub slow_order: Duration,
    /// The band a quote must fall in to be believed (`max_spread`, `outlier_band`).
    pub quote_band: mtml_ingestion::QuoteBand,
    /// Set by a replay, not read from the file: orders fill this long after their tick in
    /// market time, and the pipeline applies their outcomes in market time (waiting for them
    /// when they are late), so that every run decides on the same state.
    pub market_time_fills: Option<mtml_core::MarketTimeFills>,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    /// Model name.
    pub name: String,
    /// ONNX file; `None` uses the model built into the binary.
    pub path: Option<PathBuf>,
    /// Folder of `NAME.onnx` files the Open Inference Protocol's repository serves besides the
    /// live model; `None` for none.
    pub repository: Option<PathBuf>,
    /// ONNX Runtime sessions (worker threads) per model version served over the protocol.
    pub workers: usize,
    /// Rows a protocol worker may run as one execution from requests already queued
    /// (micro-batching); 1 runs each request alone.
    pub max_batch: usize,
    /// Take the champion and challenger of `name` from the registry (and follow its rollout
    /// changes) instead of `path` or the embedded model; the embedded model serves until a
    /// version is promoted.
    pub from_registry: bool,
    /// How often to look for rollout changes in the registry.
    pub registry_poll: Duration,
    /// Horizon over which the champion/challenger comparison scores signals, ms.
    pub compare_horizon_ms: i64,
    /// A model registered longer ago than this is flagged to risk, which then refuses orders
    /// (the stale-model guard); 0 for no limit.
    pub max_age_days: u64,
    /// The automatic promotion and rollback gate of a rollout, if on (`gate = true`).
    pub gate: Option<mtml_rollout::Gate>,
    /// The distribution of the model's training features (`mtml features export
    /// --distribution`), against which live feature drift is measured; `None` measures none.
    pub feature_distribution: Option<PathBuf>,
    /// Feature vectors (one per tick) the drift is measured over, a sliding window; alerts wait
    /// until it is full. Ticks are highly autocorrelated: the window should span hours.
    pub drift_window: usize,
    /// PSI above which a feature's drift raises an alert.
    pub drift_threshold: f64,
}

/// `[decision]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionSettings {
    /// Long at or above this probability of "up".
    pub buy_above: f32,
    /// Short at or below this probability of "up".
    pub sell_below: f32,
    /// Position size, lots (with `sizing = "fixed"`).
    pub lots: f64,
    /// How positions are sized.
    pub sizing: mtml_decision::Sizing,
    /// Minimum time between target changes per symbol (market time).
    pub cooldown: Duration,
}

/// `[risk]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskSettings {
    /// The limits as configured; [`Config::risk_limits`] adds the whitelist (`pipeline.symbols`)
    /// and the stale-model limit.
    pub limits: mtml_decision::RiskLimits,
    /// Equity at start, for the daily loss and drawdown limits until the terminal reports its own.
    pub starting_equity: f64,
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSettings {
    /// The ONNX Runtime shared library; `None` searches beside the executable, the user's cache
    /// and `.cache/onnxruntime` (see `mtml_inference::library_candidates`).
    pub onnxruntime_lib: Option<PathBuf>,
}

/// Every problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.len() {
            1 => write!(f, "invalid configuration (1 problem):")?,
            n => write!(f, "invalid configuration ({n} problems):")?,
        }
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The variable naming the configuration file of commands given no `--config`.
pub const CONFIG_ENV: &str = "MTML_CONFIG";

/// The variable choosing the log format: `text` (the default; colour only on a terminal) or
/// `json` (one object per line).
pub const LOG_FORMAT_ENV: &str = "MTML_LOG_FORMAT";

/// `MTML_*` variables that are not settings: the configuration file, the log filter and format,
/// and the crash point of crash-recovery tests (`mtml_core::crash_point`). Variables starting
/// `MTML_TEST_` belong to the test harness and are not settings either.
const RESERVED_ENV: [&str; 4] = [CONFIG_ENV, "MTML_LOG", LOG_FORMAT_ENV, mtml_core::crash_point::CRASH_AT_VAR];

const SECTIONS: [&str; 17] = [
    "bridge", "grpc", "metrics", "otlp", "pipeline", "model", "decision", "risk", "journal", "registry", "features", "runtime", "telegram", "auth",
    "client", "tls", "replay",
];

impl Config {
    /// Loads from a file (the one given, else the one `MTML_CONFIG` names, else none) plus the
    /// process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, &[])
    }

    /// [`Config::load`] with `overrides` (`section.key`, value) on top of the environment, read
    /// as `MTML_SECTION_KEY` variables are: a backtest grid's settings.
    pub fn load_with(file: Option<&Path>, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        let from_env = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
        let file = file.or(from_env.as_deref());
        let text = match file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError {
                problems: vec![format!("cannot read {}: {e}", path.display())],
            })?),
            None => None,
        };
        let overrides = overrides.iter().map(|(setting, value)| (format!("MTML_{}", setting.replacen('.', "_", 1).to_ascii_uppercase()), value.clone()));
        Self::from_sources(text.as_deref(), std::env::vars().chain(overrides))
    }

    /// The Telegram bot's settings, or `None` when no token is configured.
    pub fn telegram_settings(&self) -> Result<Option<mtml_telegram::TelegramSettings>, ConfigError> {
        let t = &self.telegram;
        if t.token.is_empty() {
            return Ok(None);
        }
        let levels = mtml_telegram::Levels::with_overrides(t.notify.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(|e| ConfigError { problems: vec![format!("telegram.notify: {e}")] })?;
        Ok(Some(mtml_telegram::TelegramSettings {
            token: t.token.clone(),
            api_url: t.api_url.clone(),
            chats: t.chats.iter().map(|chat| (*chat, levels.clone())).collect(),
            access: mtml_telegram::Access { read: t.read_users.iter().copied().collect(), act: t.act_users.iter().copied().collect() },
            confirm_within: t.confirm,
            poll_timeout: t.poll,
            daily_summary_at: t.daily_summary,
        }))
    }

    /// Whether the file or the environment set `section.key` (otherwise it is the default).
    pub fn is_given(&self, section: &str, key: &str) -> bool {
        self.given.contains(&format!("{section}.{key}"))
    }

    /// The built-in defaults.
    pub fn defaults() -> Self {
        Self::from_sources(None, std::iter::empty()).unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// Parses TOML text (if any) with `MTML_*` variables from `env` on top.
    pub fn from_sources(
        toml_text: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut table = match toml_text.map(str::parse::<toml::Table>) {
            None => toml::Table::new(),
            Some(Ok(table)) => table,
            Some(Err(error)) => {
                return Err(ConfigError { problems: vec![format!("not valid TOML: {error}")] });
            }
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("MTML_") else { continue };
            if RESERVED_ENV.contains(&name.as_str()) || name.starts_with("MTML_TEST_") {
                continue;
            }
            let rest = rest.to_ascii_lowercase();
            let Some((section, key)) = rest.split_once('_') else {
                problems.push(format!("environment variable {name}: expected MTML_<SECTION>_<KEY>"));
                continue;
            };
            // Values are read as TOML (numbers, booleans, arrays), falling back to a string.
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            match table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(section_table) => {
                    section_table.insert(key.to_owned(), parsed);
                }
                _ => problems.push(format!("environment variable {name}: {section} is not a section")),
            }
        }
        let given = (table.iter())
            .filter_map(|(section, value)| Some((section, value.as_table()?)))
            .flat_map(|(section, keys)| keys.keys().map(move |key| format!("{section}.{key}")))
            .collect();
        let mut x = Extract { table: &table, problems, used: HashSet::new() };
        let lots = x.float("decision", "lots", 0.1);
        let config = Config {
            bridge: BridgeSettings {
                listen: x.addr("bridge", "listen", "127.0.0.1:5555"),
                pipeline: x.server("bridge", "pipeline"),
                token: x.string("bridge", "token", ""),
                heartbeat: Duration::from_secs(x.positive("bridge", "heartbeat_secs", 5)),
                silence_timeout: Duration::from_secs(x.positive("bridge", "silence_timeout_secs", 30)),
                reconcile_every: Duration::from_secs(x.non_negative("bridge", "reconcile_secs", 60)),
                order_timeout: Duration::from_secs(x.positive("bridge", "order_timeout_secs", 30)),
                max_connections: usize::try_from(x.positive("bridge", "max_connections", 64)).unwrap_or(64),
                max_orders_in_flight: usize::try_from(x.positive("bridge", "max_orders_in_flight", 256)).unwrap_or(256),
                tls: x.boolean("bridge", "tls", false),
                symbol_map: x.string_map("bridge", "symbol_map"),
                pipe_name: Some(x.string("bridge", "pipe_name", "")).filter(|n| !n.is_empty()),
                chain_prefix: None,
                backpressure: match x.string("bridge", "backpressure", "block").as_str() {
                    "block" => mtml_bridge::Backpressure::Block,
                    "drop-newest" => mtml_bridge::Backpressure::DropNewest,
                    other => {
                        x.problem(format!("bridge.backpressure: {other:?} is not \"block\" or \"drop-newest\""));
                        mtml_bridge::Backpressure::Block
                    }
                },
            },
            grpc: GrpcSettings { listen: x.addr("grpc", "listen", "127.0.0.1:50051") },
            metrics: MetricsSettings { listen: x.optional_addr("metrics", "listen") },
            otlp: OtlpSettings { endpoint: x.server("otlp", "endpoint") },
            pipeline: PipelineSettings {
                symbols: x.strings("pipeline", "symbols", &["EURUSD"]),
                transport: match x.string("pipeline", "transport", "in-process").as_str() {
                    "in-process" => Transport::InProcess,
                    "grpc" => Transport::Grpc,
                    other => {
                        x.problem(format!("pipeline.transport: {other:?} is not \"in-process\" or \"grpc\""));
                        Transport::InProcess
                    }
                },
                bridge: x.server("pipeline", "bridge"),
                channel_capacity: x.positive("pipeline", "channel_capacity", 4096) as usize,
                backwards_tolerance_ms: x.positive("pipeline", "backwards_tolerance_ms", 1000) as i64,
                stale_features_ms: x.positive("pipeline", "stale_features_ms", 5000) as i64,
                slow_order: Duration::from_millis(x.positive("pipeline", "slow_order_ms", 50)),
                quote_band: {
                    let default = mtml_ingestion::QuoteBand::default();
                    mtml_ingestion::QuoteBand {
                        max_spread: x.positive_fraction("pipeline", "max_spread", default.max_spread),
                        max_deviation: x.positive_fraction("pipeline", "outlier_band", default.max_deviation),
                        ..default
                    }
                },
                market_time_fills: None,
            },
            replay: ReplaySettings {
                fill_latency_ms: x.non_negative("replay", "fill_latency_ms", 100) as i64,
                slippage_points: x.float("replay", "slippage_points", 0.0),
                commission_per_lot: x.float("replay", "commission_per_lot", 0.0),
            },
            model: ModelSettings {
                name: x.string("model", "name", "fx-direction"),
                path: x.path("model", "path"),
                repository: x.path("model", "repository"),
                workers: usize::try_from(x.positive("model", "workers", 2)).unwrap_or(2),
                max_batch: usize::try_from(x.positive("model", "max_batch", 1)).unwrap_or(1),
                from_registry: x.boolean("model", "from_registry", false),
                registry_poll: Duration::from_millis(x.positive("model", "registry_poll_ms", 1000)),
                compare_horizon_ms: i64::try_from(x.positive("model", "compare_horizon_secs", 60)).unwrap_or(60) * 1000,
                max_age_days: x.non_negative("model", "max_age_days", 0),
                feature_distribution: x.path("model", "feature_distribution"),
                drift_window: usize::try_from(x.positive("model", "drift_window", 50_000)).unwrap_or(50_000),
                drift_threshold: x.positive_fraction("model", "drift_threshold", 0.25),
                gate: {
                    let on = x.boolean("model", "gate", false);
                    let gate = mtml_rollout::Gate {
                        min_resolved: x.positive("model", "gate_min_resolved", 500),
                        promote_hit_rate_gain: x.float("model", "gate_promote_hit_rate_gain", 0.01),
                        promote_pnl_gain_bps: x.float("model", "gate_promote_pnl_gain_bps", 0.0),
                        rollback_hit_rate_gain: x.float("model", "gate_rollback_hit_rate_gain", -0.02),
                        max_psi: x.float("model", "gate_max_psi", 0.25),
                    };
                    on.then_some(gate)
                },
            },
            decision: DecisionSettings {
                buy_above: x.float("decision", "buy_above", 0.53) as f32,
                sell_below: x.float("decision", "sell_below", 0.47) as f32,
                lots,
                sizing: match x.string("decision", "sizing", "fixed").as_str() {
                    "fixed" => mtml_decision::Sizing::FixedLots(lots),
                    "fraction" => mtml_decision::Sizing::FractionOfEquity(x.float("decision", "equity_fraction", 0.5)),
                    "volatility" => mtml_decision::Sizing::VolatilityTarget {
                        risk_per_trade: x.float("decision", "risk_per_trade", 50.0),
                        atr_multiple: x.float("decision", "atr_multiple", 2.0),
                    },
                    other => {
                        x.problem(format!("decision.sizing: {other:?} is not \"fixed\", \"fraction\" or \"volatility\""));
                        mtml_decision::Sizing::FixedLots(0.1)
                    }
                },
                cooldown: Duration::from_secs(x.positive("decision", "cooldown_secs", 60)),
            },
            risk: RiskSettings {
                limits: mtml_decision::RiskLimits {
                    symbols: Default::default(),
                    max_order_lots: x.float("risk", "max_order_lots", 0.5),
                    max_position_lots: x.float("risk", "max_position_lots", 1.0),
                    max_total_lots: x.float("risk", "max_total_lots", 5.0),
                    max_total_notional: x.float("risk", "max_total_notional", 1_000_000.0),
                    max_open_orders: x.positive("risk", "max_open_orders", 10) as usize,
                    max_orders_per_minute: u32::try_from(x.positive("risk", "max_orders_per_minute", 30))
                        .unwrap_or(u32::MAX),
                    price_band_bps: x.float("risk", "price_band_bps", 50.0),
                    daily_loss_limit: x.float("risk", "daily_loss_limit", 1_000.0),
                    max_drawdown: x.float("risk", "max_drawdown", 2_000.0),
                    max_feature_age_ms: x.positive("risk", "max_feature_age_ms", 5_000) as i64,
                    margin_safety: 1.0,
                    max_model_age_ms: i64::MAX,
                },
                starting_equity: x.float("risk", "starting_equity", 10_000.0),
            },
            journal: JournalSettings {
                url: x.string("journal", "url", "sqlite://mtml-journal.db?mode=rwc"),
                chain_retention_days: x.non_negative("journal", "chain_retention_days", 7),
                chain_sample_basis_points: (x.fraction("journal", "chain_sample", 0.01) * 10_000.0).round() as u16,
            },
            registry: RegistrySettings { url: x.string("registry", "url", "sqlite://mtml-registry.db?mode=rwc") },
            features: FeatureSettings {
                online: x.string("features", "online", "memory"),
                online_ttl: Duration::from_secs(x.positive("features", "online_ttl_secs", 3600)),
                history: x.string("features", "history", "sqlite://mtml-history.db?mode=rwc"),
                history_wal: x.path("features", "history_wal").unwrap_or_else(|| PathBuf::from("mtml-history.wal")),
                history_batch: x.positive("features", "history_batch", 5_000) as usize,
                history_memory_points: x.positive("features", "history_memory_points", 100_000) as usize,
                store_timeout: Duration::from_millis(x.positive("features", "store_timeout_ms", 2_000)),
                timeframes: x.strings("features", "timeframes", &["M5", "M15", "H1"]),
            },
            runtime: RuntimeSettings { onnxruntime_lib: x.path("runtime", "onnxruntime_lib") },
            telegram: TelegramConfig {
                token: x.string("telegram", "token", ""),
                api_url: x.string("telegram", "api_url", "https://api.telegram.org"),
                chats: x.integers("telegram", "chats"),
                read_users: x.integers("telegram", "read_users").into_iter().filter_map(|id| u64::try_from(id).ok()).collect(),
                act_users: x.integers("telegram", "act_users").into_iter().filter_map(|id| u64::try_from(id).ok()).collect(),
                notify: x.string_map("telegram", "notify"),
                confirm: Duration::from_secs(x.positive("telegram", "confirm_secs", 60)),
                poll: Duration::from_secs(x.positive("telegram", "poll_secs", 25)),
                daily_summary: {
                    let text = x.string("telegram", "daily_summary", "21:00");
                    let parsed = text.split_once(':').and_then(|(h, m)| Some((h.parse::<u8>().ok().filter(|h| *h < 24)?, m.parse::<u8>().ok().filter(|m| *m < 60)?)));
                    if parsed.is_none() && !text.is_empty() {
                        x.problem(format!("telegram.daily_summary: {text:?} is not a UTC time like \"21:00\" (or \"\" for none)"));
                    }
                    parsed
                },
            },
            auth: AuthSettings {
                read: x.token_specs("auth", "read"),
                trade: x.token_specs("auth", "trade"),
                admin: x.token_specs("auth", "admin"),
                expires: x.string_map("auth", "expires"),
                revoked: x.strings("auth", "revoked", &[]),
            },
            client: crate::client::ClientSettings {
                token: x.string("client", "token", ""),
                ca: x.path("client", "ca"),
                cert: x.path("client", "cert"),
                key: x.path("client", "key"),
            },
            tls: crate::tls::TlsSettings { cert: x.path("tls", "cert"), key: x.path("tls", "key"), client_ca: x.path("tls", "client_ca") },
            given,
        };
        x.unknown_keys();
        let mut problems = x.problems;
        config.validate(&mut problems);
        if problems.is_empty() { Ok(config) } else { Err(ConfigError { problems }) }
    }

    /// The tokens every call to this instance's gRPC API and HTTP endpoints is checked against.
    /// Without tokens a listener beyond loopback is refused: anyone who could reach it could
    /// trade, halt and replace models.
    pub fn tokens_for(&self, listening: &[(&str, Option<SocketAddr>)]) -> anyhow::Result<mtml_auth::Tokens> {
        let tokens = self.auth.tokens().map_err(anyhow::Error::msg)?;
        let exposed = listening.iter().find_map(|(what, addr)| Some((what, (*addr)?)).filter(|(_, a)| !a.ip().is_loopback()));
        if let (true, Some((what, addr))) = (tokens.is_empty(), exposed) {
            anyhow::bail!(
                "{what} {addr} listens beyond loopback and no tokens are configured: anyone who can reach it could trade, halt and replace models; set auth.read, auth.trade and auth.admin (see docs/security.md), or listen on 127.0.0.1"
            );
        }
        Ok(tokens)
    }

    /// Whether terminals may connect to a bridge on `addr` with this configuration: with an empty
    /// `bridge.token` any terminal that can connect is served, so it is refused beyond loopback
    /// and warned about on it.
    pub fn check_bridge_exposure(&self, addr: SocketAddr) -> anyhow::Result<()> {
        if !self.bridge.token.is_empty() {
            return Ok(());
        }
        if !addr.ip().is_loopback() {
            anyhow::bail!(
                "bridge.listen {addr} listens beyond loopback with an empty bridge.token: any terminal that can connect could stream ticks and take orders; set bridge.token (and the EA's Token input) to a long random secret"
            );
        }
        tracing::warn!("bridge.token is empty: any terminal that can connect is served");
        Ok(())
    }

    /// The risk limits in force: `[risk]`, with `pipeline.symbols` as the whitelist and
    /// `model.max_age_days` as the stale-model guard.
    pub fn risk_limits(&self) -> mtml_decision::RiskLimits {
        let days = i64::try_from(self.model.max_age_days).unwrap_or(i64::MAX);
        let max_model_age_ms = if days == 0 { i64::MAX } else { days.saturating_mul(86_400_000) };
        mtml_decision::RiskLimits { symbols: self.symbols().collect(), max_model_age_ms, ..self.risk.limits.clone() }
    }

    /// The symbols traded (`pipeline.symbols`).
    pub fn symbols(&self) -> impl Iterator<Item = mtml_core::Symbol> + '_ {
        self.pipeline.symbols.iter().map(|s| mtml_core::Symbol::new(s))
    }

    /// Widths of the configured bar timeframes beyond M1, ms (validated at load).
    pub fn wider_bar_widths_ms(&self) -> Vec<i64> {
        self.features.timeframes.iter().filter_map(|t| mtml_feature_store::history::timeframe_width_ms(t)).collect()
    }

    fn validate(&self, problems: &mut Vec<String>) {
        if let Err(problem) = self.auth.tokens() {
            problems.push(problem);
        }
        let d = &self.decision;
        for (key, p) in [("buy_above", d.buy_above), ("sell_below", d.sell_below)] {
            if !(0.0..=1.0).contains(&p) {
                problems.push(format!("decision.{key}: {p} is not a probability between 0 and 1"));
            }
        }
        if d.sell_below >= d.buy_above {
            problems.push(format!(
                "decision.sell_below ({}) must be below decision.buy_above ({})",
                d.sell_below, d.buy_above
            ));
        }
        if d.lots.is_nan() || d.lots <= 0.0 {
            problems.push(format!("decision.lots: {} must be positive", d.lots));
        }
        let r = &self.risk.limits;
        for (key, value) in [
            ("max_order_lots", r.max_order_lots),
            ("max_position_lots", r.max_position_lots),
            ("max_total_lots", r.max_total_lots),
            ("max_total_notional", r.max_total_notional),
            ("price_band_bps", r.price_band_bps),
            ("daily_loss_limit", r.daily_loss_limit),
            ("max_drawdown", r.max_drawdown),
        ] {
            if value.is_nan() || value <= 0.0 {
                problems.push(format!("risk.{key}: {value} must be positive"));
            }
        }
        for (key, url) in [("journal.url", &self.journal.url), ("registry.url", &self.registry.url)] {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
                problems.push(format!("{key}: {url:?} is neither postgres://... nor sqlite:..."));
            }
        }
        let f = &self.features;
        if !(f.online == "memory" || f.online.starts_with("redis://") || f.online.starts_with("rediss://")) {
            problems.push(format!("features.online: {:?} is neither \"memory\" nor redis://host:port/db", f.online));
        }
        if !(f.history == "none" || f.history.starts_with("sqlite:") || f.history.starts_with("http://") || f.history.starts_with("https://")) {
            problems.push(format!(
                "features.history: {:?} is not \"none\", sqlite:... or an InfluxDB v1 URL http://host:8086/DATABASE",
                f.history
            ));
        }
        for timeframe in &f.timeframes {
            match mtml_feature_store::history::timeframe_width_ms(timeframe) {
                Some(width) if width > mtml_core::MINUTE_MS && width % mtml_core::MINUTE_MS == 0 => {}
                _ => problems.push(format!(
                    "features.timeframes: {timeframe:?} is not a timeframe wider than M1 in whole minutes (M5, M15, H1, H4, D1...)"
                )),
            }
        }
        if self.pipeline.symbols.is_empty() {
            problems.push("pipeline.symbols: at least one symbol is required".into());
        }
        if self.bridge.pipe_name.is_some() && !cfg!(windows) {
            problems.push(
                "bridge.pipe_name: named pipes exist only on Windows; terminals elsewhere (Wine included) use TCP".into(),
            );
        }
        if self.bridge.silence_timeout <= self.bridge.heartbeat {
            problems.push("bridge.silence_timeout_secs must be longer than bridge.heartbeat_secs".into());
        }
    }
}

struct Extract<'a> {
    table: &'a toml::Table,
    problems: Vec<String>,
    used: HashSet<(String, String)>,
}

impl Extract<'_> {
    fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    fn value(&mut self, section: &str, key: &str) -> Option<&toml::Value> {
        self.used.insert((section.to_owned(), key.to_owned()));
        self.table.get(section)?.as_table()?.get(key)
    }

    fn typed<T>(
        &mut self,
        section: &str,
        key: &str,
        default: T,
        expected: &str,
        convert: impl FnOnce(&toml::Value) -> Option<T>,
    ) -> T {
        let Some(value) = self.value(section, key).cloned() else { return default };
        match convert(&value) {
            Some(v) => v,
            None => {
                self.problem(format!("{section}.{key}: expected {expected}, found {value}"));
                default
            }
        }
    }

    fn string(&mut self, section: &str, key: &str, default: &str) -> String {
        self.typed(section, key, default.to_owned(), "a string", |v| v.as_str().map(str::to_owned))
    }

    fn boolean(&mut self, section: &str, key: &str, default: bool) -> bool {
        self.typed(section, key, default, "true or false", toml::Value::as_bool)
    }

    fn float(&mut self, section: &str, key: &str, default: f64) -> f64 {
        self.typed(section, key, default, "a number", |v| {
            v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
        })
    }

    fn positive_fraction(&mut self, section: &str, key: &str, default: f64) -> f64 {
        self.typed(section, key, default, "a number above 0 (0.1 is 10%)", |v| {
            v.as_float().or_else(|| v.as_integer().map(|i| i as f64)).filter(|f| f.is_finite() && *f > 0.0)
        })
    }

    fn fraction(&mut self, section: &str, key: &str, default: f64) -> f64 {
        self.typed(section, key, default, "a number from 0 to 1 (0.01 is 1%)", |v| {
            v.as_float().or_else(|| v.as_integer().map(|i| i as f64)).filter(|f| (0.0..=1.0).contains(f))
        })
    }

    fn positive(&mut self, section: &str, key: &str, default: u64) -> u64 {
        self.typed(section, key, default, "a positive integer", |v| {
            v.as_integer().and_then(|i| u64::try_from(i).ok()).filter(|&i| i > 0)
        })
    }

    fn non_negative(&mut self, section: &str, key: &str, default: u64) -> u64 {
        self.typed(section, key, default, "an integer, 0 or more", |v| v.as_integer().and_then(|i| u64::try_from(i).ok()))
    }

    /// Another process's gRPC API (`http://host:port`); `None` when not given or empty.
    fn server(&mut self, section: &str, key: &str) -> Option<crate::client::ServerUrl> {
        let given = self.string(section, key, "");
        if given.is_empty() {
            return None;
        }
        crate::client::ServerUrl::parse(&given)
            .map_err(|_| self.problem(format!("{section}.{key}: {given:?} is not a URL like http://127.0.0.1:50051")))
            .ok()
    }

    fn strings(&mut self, section: &str, key: &str, default: &[&str]) -> Vec<String> {
        let default = default.iter().map(|s| (*s).to_owned()).collect();
        self.typed(section, key, default, "an array of strings", |v| {
            v.as_array()?.iter().map(|s| s.as_str().map(str::to_owned)).collect()
        })
    }

    /// Token entries: an array of strings, or one string (as an environment variable gives it).
    /// The problem never shows the value.
    fn token_specs(&mut self, section: &str, key: &str) -> Vec<String> {
        let Some(value) = self.value(section, key).cloned() else { return Vec::new() };
        let specs = match &value {
            toml::Value::String(one) => Some(vec![one.clone()]),
            toml::Value::Array(many) => many.iter().map(|s| s.as_str().map(str::to_owned)).collect(),
            _ => None,
        };
        specs.unwrap_or_else(|| {
            self.problem(format!("{section}.{key}: expected an array of \"name:token\" strings"));
            Vec::new()
        })
    }

    fn integers(&mut self, section: &str, key: &str) -> Vec<i64> {
        self.typed(section, key, Vec::new(), "an array of integers (Telegram ids)", |v| v.as_array()?.iter().map(toml::Value::as_integer).collect())
    }

    fn string_map(&mut self, section: &str, key: &str) -> BTreeMap<String, String> {
        self.typed(section, key, BTreeMap::new(), "a table of strings", |v| {
            v.as_table()?.iter().map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect()
        })
    }

    fn path(&mut self, section: &str, key: &str) -> Option<PathBuf> {
        let text = self.string(section, key, "");
        (!text.is_empty()).then(|| PathBuf::from(text))
    }

    fn addr(&mut self, section: &str, key: &str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default.parse().unwrap_or_else(|_| unreachable!("valid default"));
        let text = self.string(section, key, default);
        text.parse().unwrap_or_else(|_| {
            self.problem(format!("{section}.{key}: {text:?} is not an address like 127.0.0.1:5555"));
            fallback
        })
    }

    /// An address, or `None` for an empty string (the default).
    fn optional_addr(&mut self, section: &str, key: &str) -> Option<SocketAddr> {
        let text = self.string(section, key, "");
        if text.is_empty() {
            return None;
        }
        text.parse().map(Some).unwrap_or_else(|_| {
            self.problem(format!("{section}.{key}: {text:?} is not an address like 127.0.0.1:9464 (or \"\" for none)"));
            None
        })
    }

    fn unknown_keys(&mut self) {
        for (section, value) in self.table {
            if !SECTIONS.contains(&section.as_str()) {
                self.problems.push(format!("unknown section [{section}]"));
                continue;
            }
            let Some(keys) = value.as_table() else {
                self.problems.push(format!("{section} must be a section, found {value}"));
                continue;
            };
            for key in keys.keys() {
                if !self.used.contains(&(section.clone(), key.clone())) {
                    self.problems.push(format!("unknown key {section}.{key}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_configuration_in_the_readme_is_valid_and_gives_the_defaults() {
        let readme = include_str!("../../README.md");
        let block = readme.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a toml block");
        let documented = Config::from_sources(Some(block), env(&[])).unwrap_or_else(|e| panic!("README's configuration: {e}"));
        let defaults = Config::defaults();
        assert_eq!(documented.model, defaults.model, "README's [model] shows the defaults");
        assert_eq!(documented.features, defaults.features);
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::defaults();
        assert_eq!(config.pipeline.symbols, ["EURUSD"]);
        assert_eq!(config.pipeline.transport, Transport::InProcess);
    }

    #[test]
    fn file_then_environment_override_defaults() {
        let text = "[decision]\nbuy_above = 0.6\nlots = 0.2\n[bridge]\nsymbol_map = { GER40 = \"DE40\" }\n";
        let config = Config::from_sources(
            Some(text),
            env(&[("MTML_DECISION_LOTS", "0.3"), ("MTML_PIPELINE_TRANSPORT", "grpc"), ("PATH", "/bin"), ("MTML_LOG", "debug"), ("MTML_TEST_POSTGRES_URL", "postgres://x")]),
        )
        .unwrap();
        assert_eq!(config.decision.buy_above, 0.6);
        assert_eq!(config.decision.lots, 0.3);
        assert_eq!(config.pipeline.transport, Transport::Grpc);
        assert_eq!(config.bridge.symbol_map["GER40"], "DE40");
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let text = "[decision]\nbuy_above = 1.5\nlots = \"many\"\ncolour = 1\n[risk]\nmax_order_lots = -1\n[nonsense]\n";
        let error = Config::from_sources(Some(text), env(&[("MTML_BRIDGE_LISTEN", "nowhere")]))
            .unwrap_err();
        let all = error.to_string();
        for expected in [
            "decision.lots: expected a number, found \"many\"",
            "unknown key decision.colour",
            "unknown section [nonsense]",
            "bridge.listen: \"nowhere\" is not an address",
            "decision.buy_above: 1.5 is not a probability",
            "risk.max_order_lots: -1 must be positive",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert_eq!(error.problems.len(), 6, "{all}");
    }

    #[cfg(not(windows))]
    #[test]
    fn named_pipes_are_refused_where_they_do_not_exist() {
        let error = Config::from_sources(Some("[bridge]\npipe_name = \"mtml\"\n"), env(&[])).unwrap_err();
        assert!(error.to_string().contains("named pipes exist only on Windows"), "{error}");
    }

    #[test]
    fn broken_toml_is_reported() {
        let error = Config::from_sources(Some("[decision\n"), env(&[])).unwrap_err();
        assert!(error.to_string().contains("not valid TOML"), "{error}");
    }
}
