//! Orders and what terminals report about them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{ChainId, Symbol};

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buy at the ask.
    Buy,
    /// Sell at the bid.
    Sell,
}

impl Side {
    /// `buy` or `sell`, as the journal writes it.
    pub fn name(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// The side [`Side::name`] wrote, if `name` is one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "buy" => Some(Side::Buy),
            "sell" => Some(Side::Sell),
            _ => None,
        }
    }

    /// +1 for a buy, -1 for a sell: signed volume is `volume * sign`.
    pub fn sign(self) -> f64 {
        match self {
            Side::Buy => 1.0,
            Side::Sell => -1.0,
        }
    }
}

/// How the order is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    /// At the market.
    Market,
    /// At the given price or better.
    Limit,
    /// Becomes a market order when the price is touched.
    Stop,
}

/// An order as execution hands it to the bridge.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    /// Chain of the tick that caused the order.
    pub chain_id: ChainId,
    /// Idempotency key: the terminal never executes the same id twice.
    pub client_order_id: String,
    /// The account (`login@server`) that must execute it; `None` for the terminal that streams
    /// the symbol.
    pub account: Option<Arc<str>>,
    /// Canonical symbol.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// Pricing.
    pub order_type: OrderType,
    /// Lots.
    pub volume: f64,
    /// Limit or stop price; 0 for market orders.
    pub price: f64,
    /// Price the decision was made at, to measure slippage against the fill.
    pub decision_price: f64,
    /// Bridge-local monotonic time the causing tick was read, for tick-to-order latency.
    pub origin_received_ns: u64,
    /// Market time of the tick the order was decided on, UTC epoch ms (0 when none, as for an
    /// operator's order). A replay's simulated broker fills in market time from it.
    pub market_time_msc: i64,
}

/// A (partial) fill reported by a terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    /// Chain of the tick that caused the order.
    pub chain_id: ChainId,
    /// The order's idempotency key.
    pub client_order_id: String,
    /// The terminal's ticket.
    pub ticket: u64,
    /// Canonical symbol.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// Lots filled by this fill.
    pub volume: f64,
    /// Fill price.
    pub price: f64,
    /// Terminal time of the fill, UTC epoch ms.
    pub time_msc: i64,
}

/// An order as a terminal's deal history has it: the evidence a restart uses for an order its
/// journal did not record before a crash.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutedOrder {
    /// The order's idempotency key, from the deals' comment.
    pub client_order_id: String,
    /// Canonical symbol.
    pub symbol: Symbol,
    /// Signed lots dealt: positive bought.
    pub lots: f64,
    /// Volume-weighted deal price.
    pub average_price: f64,
    /// Time of the last deal, UTC epoch ms.
    pub time_msc: i64,
}

/// What the bridge reports back to execution about an order.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionEvent {
    /// The terminal accepted the order.
    Acked {
        /// Chain of the order.
        chain_id: ChainId,
        /// The order's idempotency key.
        client_order_id: String,
        /// The terminal's ticket.
        ticket: u64,
        /// Volume the order was sent with after normalisation to the symbol's volume step.
        volume: f64,
    },
    /// The terminal or the bridge refused the order.
    Rejected {
        /// Chain of the order.
        chain_id: ChainId,
        /// The order's idempotency key.
        client_order_id: String,
        /// MetaTrader retcode, or 0 when the bridge refused it itself.
        retcode: u32,
        /// Human-readable reason.
        reason: String,
    },
    /// The order was (partly) filled.
    Filled(Fill),
    /// A terminal's books, as its snapshot (on connecting) or its answer to a SYNC gave them:
    /// execution first settles its orders whose outcome is unknown from `evidence`, then
    /// reconciles its positions against `positions`.
    TerminalPositions {
        /// The account (`login@server`).
        account: Arc<str>,
        /// (symbol, signed lots, average price).
        positions: Vec<(Symbol, f64, f64)>,
        /// Orders in the terminal's recent deal history, net per client order id (with a
        /// connection's snapshot; empty for the periodic books of a SYNC).
        executed: Vec<ExecutedOrder>,
        /// The lines of the books that carry a client order id (positions, pending orders,
        /// deals): the evidence an unknown order is settled from.
        evidence: crate::reconcile::TerminalBooks,
        /// The canonical symbols the account trades (an unknown order of no known account is
        /// settled by the first account trading its symbol).
        symbols: Vec<Symbol>,
    },
    /// A terminal's account money (with every snapshot and heartbeat), for the margin check.
    Account {
        /// The account (`login@server`).
        account: Arc<str>,
        /// The account's leverage from its hello (100 for 1:100).
        leverage: u32,
        /// Balance, account currency.
        balance: f64,
        /// Equity, account currency.
        equity: f64,
        /// Margin in use.
        margin: f64,
        /// Free margin.
        free_margin: f64,
    },
    /// The connection the order was sent on was lost before it was settled. It is not resent;
    /// the terminal's next snapshot settles it (as a fill, an ack or a rejection).
    OutcomeUnknown {
        /// Chain of the order.
        chain_id: ChainId,
        /// The order's idempotency key.
        client_order_id: String,
        /// The account it was sent to (`login@server`): only that account's books settle it.
        account: Arc<str>,
    },
}

impl ExecutionEvent {
    /// The chain the event belongs to; `None` for events about an account rather than an order.
    pub fn chain_id(&self) -> Option<ChainId> {
        match self {
            ExecutionEvent::Acked { chain_id, .. }
            | ExecutionEvent::Rejected { chain_id, .. }
            | ExecutionEvent::OutcomeUnknown { chain_id, .. } => Some(*chain_id),
            ExecutionEvent::Filled(fill) => Some(fill.chain_id),
            ExecutionEvent::TerminalPositions { .. } | ExecutionEvent::Account { .. } => None,
        }
    }
}

/// An order a previous run left open, as its journal has it: in flight again with its outcome
/// unknown, in execution (its symbol gets no new order) and in the bridge (the terminal's next
/// snapshot settles it). It is never resent.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredOrder {
    /// Idempotency key.
    pub client_order_id: String,
    /// Chain of the tick that caused it.
    pub chain_id: ChainId,
    /// Canonical symbol.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// Lots ordered.
    pub volume: f64,
    /// Lots the journal has as filled.
    pub filled: f64,
    /// Price the decision was made at.
    pub decision_price: f64,
}

/// How a simulated broker (a replay's terminal simulator, a backtest's broker) fills market
/// orders in market time, so that its fills do not depend on how fast anything ran: at the first
/// fillable quote of the order's symbol at or after [`MarketTimeFills::due_ms`] (never the quote
/// decided on), moved against the order by `slippage_points`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarketTimeFills {
    /// Market time between the decision and the fill, ms.
    pub latency_ms: i64,
    /// Points (the symbol's smallest price step) added to a buy's ask, taken off a sell's bid.
    pub slippage_points: f64,
}

impl MarketTimeFills {
    /// The market time from which a quote may fill an order decided at `decided_ms`: the
    /// latency later, and at least 1 ms.
    pub fn due_ms(&self, decided_ms: i64) -> i64 {
        decided_ms + self.latency_ms.max(1)
    }

    /// Whether a quote can fill an order at all.
    pub fn fillable(bid: f64, ask: f64) -> bool {
        bid > 0.0 && ask > 0.0 && bid.is_finite() && ask.is_finite()
    }

    /// The price a buy (or a sell) fills at against `bid` and `ask`, for a symbol of `digits`,
    /// rounded to them as a terminal writes it.
    pub fn price(&self, buy: bool, bid: f64, ask: f64, digits: u8) -> f64 {
        let scale = 10f64.powi(i32::from(digits));
        let price = if buy { ask + self.slippage_points / scale } else { bid - self.slippage_points / scale };
        (price * scale).round() / scale
    }
}

/// Where execution hands its orders: the bridge's router in this process, a channel to a bridge
/// in another, or a test's collector. `submit` never blocks: it is called on the tick path.
pub trait OrderSink: Send {
    /// Hands an order on.
    fn submit(&mut self, order: OrderRequest);
}

impl<F: FnMut(OrderRequest) + Send> OrderSink for F {
    fn submit(&mut self, order: OrderRequest) {
        self(order);
    }
}
