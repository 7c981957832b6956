//! Notices: what a person watching mtml should hear about (a fill, a refusal, a terminal lost, a
//! store down, a model promoted), emitted where it happens and delivered elsewhere (Telegram).
//!
//! Emitting never waits: a [`Notices`] handle hands the notice to a [`NoticeSink`] whose
//! contract is to take it in microseconds (fold it into a bounded outbox) and do any sending on
//! its own task. With no sink the notice is not even built.

use std::sync::Arc;

use serde::Serialize;

use crate::{ChainId, Side, Symbol};

/// The kinds of notice, each with its own setting per chat (on, silent, off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A trade executed.
    Fill,
    /// A signal acted on: an order sent.
    Signal,
    /// An order refused, by risk or by the broker.
    Rejected,
    /// The trading state changed (a limit hit, an operator's command).
    Risk,
    /// A terminal connected or was lost.
    Terminal,
    /// A store went down or came back.
    Store,
    /// A model rollout, promotion or rollback.
    Model,
    /// Feature drift or a stale model.
    Drift,
    /// Tick-to-order latency above its threshold.
    Latency,
    /// A service started or is stopping.
    Service,
    /// The daily (or replay's) summary with its equity curve.
    Summary,
}

impl NoticeKind {
    /// Every kind, in the order settings are shown.
    pub const ALL: [Self; 11] = [
        Self::Fill,
        Self::Signal,
        Self::Rejected,
        Self::Risk,
        Self::Terminal,
        Self::Store,
        Self::Model,
        Self::Drift,
        Self::Latency,
        Self::Service,
        Self::Summary,
    ];

    /// The stable name (settings, metrics labels, commands).
    pub fn name(self) -> &'static str {
        match self {
            Self::Fill => "fill",
            Self::Signal => "signal",
            Self::Rejected => "rejected",
            Self::Risk => "risk",
            Self::Terminal => "terminal",
            Self::Store => "store",
            Self::Model => "model",
            Self::Drift => "drift",
            Self::Latency => "latency",
            Self::Service => "service",
            Self::Summary => "summary",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The plural noun a burst of this kind is counted in ("12 fills in 3 s").
    pub fn plural(self) -> &'static str {
        match self {
            Self::Fill => "fills",
            Self::Signal => "signals",
            Self::Rejected => "rejections",
            Self::Risk => "risk changes",
            Self::Terminal => "terminal events",
            Self::Store => "store events",
            Self::Model => "model events",
            Self::Drift => "drift alerts",
            Self::Latency => "slow orders",
            Self::Service => "service events",
            Self::Summary => "summaries",
        }
    }
}

/// The daily (or a replay's) trading summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// What it covers ("2026-12-04", "replay of EURUSD.csv").
    pub title: String,
    /// Realised PnL, quote currency.
    pub pnl: f64,
    /// Fills.
    pub trades: u64,
    /// Share of position-reducing fills that made money, if any reduced.
    pub hit_rate: Option<f64>,
    /// Largest fall of the equity curve from a high, quote currency.
    pub max_drawdown: f64,
    /// Sharpe ratio of hourly PnL, annualised, when there are enough hours.
    pub sharpe: Option<f64>,
    /// The equity curve: market time (UTC epoch ms) and realised PnL so far.
    pub equity: Vec<(i64, f64)>,
}

/// Something worth telling a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Notice {
    /// A trade executed.
    Fill {
        /// Symbol.
        symbol: Symbol,
        /// Side.
        side: Side,
        /// Lots.
        volume: f64,
        /// Fill price.
        price: f64,
        /// Against the decision price, in the trader's disfavour when positive.
        slippage: f64,
        /// The chain.
        chain_id: ChainId,
    },
    /// A signal acted on: an order sent.
    Signal {
        /// Symbol.
        symbol: Symbol,
        /// Side.
        side: Side,
        /// Lots.
        volume: f64,
        /// The model's probability of a rise.
        probability_up: f32,
        /// The model that acted, `name:version`.
        model: String,
        /// The chain.
        chain_id: ChainId,
    },
    /// Risk refused an order.
    RiskRejected {
        /// Symbol.
        symbol: Symbol,
        /// The rejection's stable name.
        reason: String,
        /// Its explanation.
        detail: String,
        /// The chain.
        chain_id: ChainId,
    },
    /// The broker refused an order.
    BrokerRejected {
        /// Client order id.
        client_order_id: String,
        /// MetaTrader's retcode.
        retcode: u32,
        /// The terminal's text for it.
        text: String,
        /// The chain.
        chain_id: ChainId,
    },
    /// The trading state changed.
    TradingState {
        /// Before.
        from: String,
        /// After.
        to: String,
        /// Why (a limit hit names itself).
        reason: String,
    },
    /// A terminal connected.
    TerminalConnected {
        /// Its account.
        account: String,
        /// How long it was gone, ms, when it had been connected before.
        gone_ms: Option<u64>,
        /// Ticks it resumed with (its sequence gap), across its streams.
        resumed: u64,
    },
    /// A terminal's connection was lost.
    TerminalLost {
        /// Its account.
        account: String,
        /// Why.
        reason: String,
    },
    /// A store went down: its writes are held in the write-ahead backlog.
    StoreDown {
        /// Which (`history`, `online`).
        store: String,
        /// What failed.
        error: String,
    },
    /// A store came back.
    StoreRecovered {
        /// Which.
        store: String,
        /// How long it was down, ms.
        down_ms: u64,
        /// Points held back while it was down, now being drained.
        backlog: u64,
    },
    /// A model rollout, promotion or rollback.
    Model {
        /// `rollout`, `promote`, `rollback`.
        action: String,
        /// What it did (`fx-direction:3 at 10%`).
        detail: String,
        /// Who: `operator`, `telegram:<user id>`, `gate`.
        by: String,
    },
    /// A feature moved away from its training distribution.
    Drift {
        /// The feature.
        feature: String,
        /// Its population stability index.
        psi: f64,
        /// The alert threshold.
        threshold: f64,
    },
    /// The model in force is older than risk allows: orders are refused until a newer one.
    StaleModel {
        /// `name:version`.
        model: String,
        /// Risk's explanation.
        detail: String,
    },
    /// An order left long after its tick arrived.
    SlowOrder {
        /// Symbol.
        symbol: Symbol,
        /// Tick arrival to order sent, µs.
        tick_to_order_us: u64,
        /// The threshold, µs.
        threshold_us: u64,
        /// The chain.
        chain_id: ChainId,
    },
    /// A service started or is stopping.
    Service {
        /// Which (`mtml run`, `mtml pipeline`, `mtml replay`).
        service: String,
        /// `started` or `stopping`.
        state: String,
        /// What it is (`bridge 127.0.0.1:5555, gRPC 127.0.0.1:50051`), or why it stops.
        detail: String,
    },
    /// The daily (or a replay's) summary.
    Summary(Summary),
}

impl Notice {
    /// Its kind.
    pub fn kind(&self) -> NoticeKind {
        match self {
            Self::Fill { .. } => NoticeKind::Fill,
            Self::Signal { .. } => NoticeKind::Signal,
            Self::RiskRejected { .. } | Self::BrokerRejected { .. } => NoticeKind::Rejected,
            Self::TradingState { .. } => NoticeKind::Risk,
            Self::TerminalConnected { .. } | Self::TerminalLost { .. } => NoticeKind::Terminal,
            Self::StoreDown { .. } | Self::StoreRecovered { .. } => NoticeKind::Store,
            Self::Model { .. } => NoticeKind::Model,
            Self::Drift { .. } | Self::StaleModel { .. } => NoticeKind::Drift,
            Self::SlowOrder { .. } => NoticeKind::Latency,
            Self::Service { .. } => NoticeKind::Service,
            Self::Summary(_) => NoticeKind::Summary,
        }
    }

    /// The chain it belongs to, if one.
    pub fn chain_id(&self) -> Option<ChainId> {
        match self {
            Self::Fill { chain_id, .. }
            | Self::Signal { chain_id, .. }
            | Self::RiskRejected { chain_id, .. }
            | Self::BrokerRejected { chain_id, .. }
            | Self::SlowOrder { chain_id, .. } => Some(*chain_id),
            _ => None,
        }
    }
}

/// Takes notices without waiting (see the module's contract).
pub trait NoticeSink: Send + Sync {
    /// Takes one notice.
    fn notice(&self, notice: Notice);
}

/// Where the parts of mtml emit notices. Cheap to clone; the default goes nowhere.
#[derive(Clone, Default)]
pub struct Notices(Option<Arc<dyn NoticeSink>>);

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Notices(on)" } else { "Notices(off)" })
    }
}

impl Notices {
    /// Notices delivered to `sink`.
    pub fn to(sink: Arc<dyn NoticeSink>) -> Self {
        Self(Some(sink))
    }

    /// True when notices go somewhere.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Emits the notice `build` makes; without a sink it is not built.
    pub fn emit(&self, build: impl FnOnce() -> Notice) {
        if let Some(sink) = &self.0 {
            sink.notice(build());
        }
    }
}
