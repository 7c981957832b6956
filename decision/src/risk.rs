//! Pre-trade risk checks and the trading state. No I/O: limits, state and the facts of the moment
//! in, a verdict out; time is market time passed in by the caller.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use mtml_core::Symbol;
use mtml_core::clock::{Clock, SystemClock};

use crate::execution::LOT_SIZE;

/// Limits the risk engine enforces. A limit of `f64::INFINITY` (or `usize::MAX`, `u32::MAX`, `i64::MAX`) is off.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskLimits {
    /// Symbols that may be traded; empty means none.
    pub symbols: HashSet<Symbol>,
    /// Largest single order, lots.
    pub max_order_lots: f64,
    /// Largest absolute position per symbol, lots.
    pub max_position_lots: f64,
    /// Largest sum of absolute positions over all symbols, lots.
    pub max_total_lots: f64,
    /// Largest sum of absolute position notionals (lots x contract size x price), quote currency.
    pub max_total_notional: f64,
    /// Most orders in flight at once.
    pub max_open_orders: usize,
    /// Most orders per rolling minute of market time.
    pub max_orders_per_minute: u32,
    /// Fat-finger band: an order price further than this from the last mid is refused, in basis
    /// points of the mid.
    pub price_band_bps: f64,
    /// Loss from the day's starting equity (UTC day) at which trading halts, quote currency.
    pub daily_loss_limit: f64,
    /// Fall from the equity high at which trading is reduced to closing, quote currency.
    pub max_drawdown: f64,
    /// Features older than this are not traded on, milliseconds.
    pub max_feature_age_ms: i64,
    /// Free margin must cover the order's margin times this factor (1.0 = exactly).
    pub margin_safety: f64,
    /// The stale-model guard: a model registered longer ago than this (wall clock) is not
    /// traded on, milliseconds.
    pub max_model_age_ms: i64,
}

impl RiskLimits {
    /// Limits allowing `symbols` with the sizes given and every other limit off.
    pub fn sizes_only(symbols: HashSet<Symbol>, max_order_lots: f64, max_position_lots: f64) -> Self {
        Self {
            symbols,
            max_order_lots,
            max_position_lots,
            max_total_lots: f64::INFINITY,
            max_total_notional: f64::INFINITY,
            max_open_orders: usize::MAX,
            max_orders_per_minute: u32::MAX,
            price_band_bps: f64::INFINITY,
            daily_loss_limit: f64::INFINITY,
            max_drawdown: f64::INFINITY,
            max_feature_age_ms: i64::MAX,
            margin_safety: 1.0,
            max_model_age_ms: i64::MAX,
        }
    }
}

/// Whether orders may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TradingState {
    /// Any order within limits.
    Active,
    /// Only orders that reduce exposure.
    Reducing,
    /// No new orders (cancels only).
    Halted,
}

impl TradingState {
    /// `ACTIVE`, `REDUCING` or `HALTED`, as journals, reports and logs write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Reducing => "REDUCING",
            Self::Halted => "HALTED",
        }
    }
}

/// A change of the trading state, with why; the caller announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// Before.
    pub from: TradingState,
    /// After.
    pub to: TradingState,
    /// Why: a limit, an operator command, the kill switch.
    pub reason: String,
    /// Market time of the change.
    pub at_ms: i64,
}

/// The model a decision came from, for the stale-model guard.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInUse {
    /// `name:version`.
    pub label: String,
    /// When the version was registered, UTC epoch ms; `None` when unknown (a file or the
    /// embedded model), which the guard lets through.
    pub registered_ms: Option<i64>,
}

/// Why an operator's trading state command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateCommandRefused {
    /// The kill switch holds the state at HALTED.
    #[error("the kill switch is engaged; restart with it released to trade again")]
    KillSwitch,
}

/// The account as the terminal reports it, for the margin check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccountSnapshot {
    /// Free margin, account currency.
    pub free_margin: f64,
    /// Leverage (100 for 1:100).
    pub leverage: f64,
}

/// An order to check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderCheck<'a> {
    /// Symbol.
    pub symbol: &'a Symbol,
    /// Lots, positive to buy.
    pub signed_lots: f64,
    /// Expected execution price (the ask to buy, the bid to sell, or the limit price).
    pub price: f64,
    /// Market time now.
    pub now_ms: i64,
}

/// What is true at the moment of the check, beyond the engine's own state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Facts {
    /// Positions by symbol, lots.
    pub positions: HashMap<Symbol, f64>,
    /// Last mid price by symbol.
    pub mids: HashMap<Symbol, f64>,
    /// Orders in flight.
    pub open_orders: usize,
    /// Age of the features the decision used, milliseconds.
    pub feature_age_ms: i64,
    /// The model the decision came from.
    pub model: Option<ModelInUse>,
    /// The account, if the terminal reported it.
    pub account: Option<AccountSnapshot>,
}

/// Why risk refused an order. Names are stable: reports count rejections by them.
#[derive(Debug, Clone, PartialEq)]
pub enum RiskRejection {
    /// Trading is halted.
    Halted,
    /// Trading is reducing-only and the order would add exposure.
    ReducingOnly,
    /// Symbol not on the whitelist.
    SymbolNotAllowed,
    /// Order larger than the maximum order size.
    MaxOrderSize {
        /// Lots asked.
        lots: f64,
        /// The limit.
        limit: f64,
    },
    /// Position after the order would exceed the per-symbol maximum.
    MaxPosition {
        /// Absolute position the order would lead to.
        resulting: f64,
        /// The limit.
        limit: f64,
    },
    /// Total absolute position after the order would exceed the maximum.
    MaxTotalPosition {
        /// Total lots the order would lead to.
        resulting: f64,
        /// The limit.
        limit: f64,
    },
    /// Total notional after the order would exceed the maximum.
    MaxTotalNotional {
        /// Total notional the order would lead to.
        resulting: f64,
        /// The limit.
        limit: f64,
    },
    /// Too many orders in flight.
    MaxOpenOrders {
        /// The limit.
        limit: usize,
    },
    /// Too many orders in the last minute.
    OrderRate {
        /// The limit per minute.
        limit: u32,
    },
    /// Price too far from the last mid (fat finger), or no mid to compare with.
    PriceBand {
        /// Distance from the mid, basis points (infinite when there is no mid).
        distance_bps: f64,
        /// The band.
        limit_bps: f64,
    },
    /// Not enough free margin.
    Margin {
        /// Margin the order needs.
        required: f64,
        /// Free margin.
        free: f64,
    },
    /// Features too old.
    StaleFeatures {
        /// Their age, milliseconds.
        age_ms: i64,
        /// The limit.
        limit_ms: i64,
    },
    /// The model must not be traded on.
    StaleModel {
        /// Why.
        reason: String,
    },
}

impl RiskRejection {
    /// Stable snake_case name.
    pub fn name(&self) -> &'static str {
        match self {
            RiskRejection::Halted => "halted",
            RiskRejection::ReducingOnly => "reducing_only",
            RiskRejection::SymbolNotAllowed => "symbol_not_allowed",
            RiskRejection::MaxOrderSize { .. } => "max_order_size",
            RiskRejection::MaxPosition { .. } => "max_position",
            RiskRejection::MaxTotalPosition { .. } => "max_total_position",
            RiskRejection::MaxTotalNotional { .. } => "max_total_notional",
            RiskRejection::MaxOpenOrders { .. } => "max_open_orders",
            RiskRejection::OrderRate { .. } => "order_rate",
            RiskRejection::PriceBand { .. } => "price_band",
            RiskRejection::Margin { .. } => "margin",
            RiskRejection::StaleFeatures { .. } => "stale_features",
            RiskRejection::StaleModel { .. } => "stale_model",
        }
    }
}

impl fmt::Display for RiskRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            RiskRejection::MaxOrderSize { lots, limit } => write!(f, "{name}: {lots} lots exceeds {limit}"),
            RiskRejection::MaxPosition { resulting, limit }
            | RiskRejection::MaxTotalPosition { resulting, limit } => {
                write!(f, "{name}: position would be {resulting} lots, limit {limit}")
            }
            RiskRejection::MaxTotalNotional { resulting, limit } => {
                write!(f, "{name}: notional would be {resulting:.0}, limit {limit:.0}")
            }
            RiskRejection::MaxOpenOrders { limit } => write!(f, "{name}: {limit} orders already in flight"),
            RiskRejection::OrderRate { limit } => write!(f, "{name}: {limit} orders in the last minute"),
            RiskRejection::PriceBand { distance_bps, limit_bps } => {
                write!(f, "{name}: price {distance_bps:.1} bps from the last mid, band {limit_bps} bps")
            }
            RiskRejection::Margin { required, free } => {
                write!(f, "{name}: order needs {required:.2} margin, {free:.2} free")
            }
            RiskRejection::StaleFeatures { age_ms, limit_ms } => {
                write!(f, "{name}: features {age_ms} ms old, limit {limit_ms} ms")
            }
            RiskRejection::StaleModel { reason } => write!(f, "{name}: {reason}"),
            _ => f.write_str(name),
        }
    }
}

/// Rounding slack when comparing lot sizes computed in floating point.
const LOTS_EPSILON: f64 = 1e-9;
const DAY_MS: i64 = 86_400_000;

/// Checks proposed orders against [`RiskLimits`], keeps the trading state, and trips it when the
/// account's equity breaks the daily loss or drawdown limits.
pub struct RiskEngine {
    limits: RiskLimits,
    /// Wall clock, read only by the stale-model guard when an order is checked.
    clock: Arc<dyn Clock>,
    state: TradingState,
    killed: bool,
    /// Market times of recent orders, for the rate limit.
    recent_orders: VecDeque<i64>,
    day: Option<i64>,
    day_start_equity: f64,
    equity_high: f64,
    changes: Vec<StateChange>,
}

impl fmt::Debug for RiskEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RiskEngine").field("limits", &self.limits).field("state", &self.state).finish_non_exhaustive()
    }
}

impl RiskEngine {
    /// An active engine with `limits`, on the system clock.
    pub fn new(limits: RiskLimits) -> Self {
        Self {
            limits,
            clock: Arc::new(SystemClock),
            state: TradingState::Active,
            killed: false,
            recent_orders: VecDeque::new(),
            day: None,
            day_start_equity: 0.0,
            equity_high: f64::NEG_INFINITY,
            changes: Vec::new(),
        }
    }

    /// The same engine reading `clock` (the stale-model guard's wall clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Current trading state.
    pub fn state(&self) -> TradingState {
        self.state
    }

    /// The highest equity seen (the drawdown limit's reference); none before the first quote.
    pub fn equity_high(&self) -> Option<f64> {
        self.equity_high.is_finite().then_some(self.equity_high)
    }

    /// State changes since the last call, to announce.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        std::mem::take(&mut self.changes)
    }

    fn change(&mut self, to: TradingState, reason: String, at_ms: i64) {
        if to != self.state {
            tracing::warn!(from = ?self.state, to = ?to, %reason, "trading state changed");
            self.changes.push(StateChange { from: self.state, to, reason, at_ms });
            self.state = to;
        }
    }

    /// An operator command. After the kill switch, only HALTED is accepted.
    pub fn set_state(&mut self, state: TradingState, reason: &str, at_ms: i64) -> Result<(), StateCommandRefused> {
        if self.killed && state != TradingState::Halted {
            return Err(StateCommandRefused::KillSwitch);
        }
        self.change(state, format!("operator: {reason}"), at_ms);
        Ok(())
    }

    /// The kill switch: halts, and no command but a restart lifts it.
    pub fn kill(&mut self, reason: &str, at_ms: i64) {
        self.killed = true;
        self.change(TradingState::Halted, format!("kill switch: {reason}"), at_ms);
    }

    /// Takes the account's equity at market time `now_ms`. A loss from the UTC day's first
    /// equity beyond the daily limit halts trading; a fall from the equity high beyond the
    /// drawdown limit reduces it. Neither lifts by itself: an operator resumes.
    pub fn on_equity(&mut self, equity: f64, now_ms: i64) {
        let day = now_ms.div_euclid(DAY_MS);
        if self.day != Some(day) {
            self.day = Some(day);
            self.day_start_equity = equity;
        }
        self.equity_high = self.equity_high.max(equity);
        let day_loss = self.day_start_equity - equity;
        if day_loss > self.limits.daily_loss_limit && self.state != TradingState::Halted {
            let reason = format!(
                "daily_loss: down {day_loss:.2} today, limit {:.2}",
                self.limits.daily_loss_limit
            );
            self.change(TradingState::Halted, reason, now_ms);
            return;
        }
        let drawdown = self.equity_high - equity;
        if drawdown > self.limits.max_drawdown && self.state == TradingState::Active {
            let reason =
                format!("max_drawdown: {drawdown:.2} below the high, limit {:.2}", self.limits.max_drawdown);
            self.change(TradingState::Reducing, reason, now_ms);
        }
    }

    /// Records that an order was sent at `now_ms` (for the rate limit).
    pub fn on_order_sent(&mut self, now_ms: i64) {
        self.recent_orders.push_back(now_ms);
    }

    /// Checks an order; the first failing check names the rejection.
    pub fn check(&mut self, order: OrderCheck<'_>, facts: &Facts) -> Result<(), RiskRejection> {
        let l = &self.limits;
        let position = facts.positions.get(order.symbol).copied().unwrap_or(0.0);
        let resulting = position + order.signed_lots;
        let reduces = resulting.abs() < position.abs() - LOTS_EPSILON
            && resulting.signum() * position.signum() >= 0.0;
        match self.state {
            TradingState::Halted => return Err(RiskRejection::Halted),
            TradingState::Reducing if !reduces => return Err(RiskRejection::ReducingOnly),
            _ => {}
        }
        if !l.symbols.contains(order.symbol) {
            return Err(RiskRejection::SymbolNotAllowed);
        }
        let lots = order.signed_lots.abs();
        if lots > l.max_order_lots + LOTS_EPSILON {
            return Err(RiskRejection::MaxOrderSize { lots, limit: l.max_order_lots });
        }
        if !reduces {
            if resulting.abs() > l.max_position_lots + LOTS_EPSILON {
                return Err(RiskRejection::MaxPosition { resulting: resulting.abs(), limit: l.max_position_lots });
            }
            let total: f64 = facts
                .positions
                .iter()
                .filter(|(s, _)| *s != order.symbol)
                .map(|(_, p)| p.abs())
                .sum::<f64>()
                + resulting.abs();
            if total > l.max_total_lots + LOTS_EPSILON {
                return Err(RiskRejection::MaxTotalPosition { resulting: total, limit: l.max_total_lots });
            }
            let notional: f64 = facts
                .positions
                .iter()
                .filter(|(s, _)| *s != order.symbol)
                .map(|(s, p)| p.abs() * LOT_SIZE * facts.mids.get(s).copied().unwrap_or(0.0))
                .sum::<f64>()
                + resulting.abs() * LOT_SIZE * order.price;
            if notional > l.max_total_notional {
                return Err(RiskRejection::MaxTotalNotional { resulting: notional, limit: l.max_total_notional });
            }
        }
        if facts.open_orders >= l.max_open_orders {
            return Err(RiskRejection::MaxOpenOrders { limit: l.max_open_orders });
        }
        while self.recent_orders.front().is_some_and(|&t| t <= order.now_ms - 60_000) {
            self.recent_orders.pop_front();
        }
        if self.recent_orders.len() >= l.max_orders_per_minute as usize {
            return Err(RiskRejection::OrderRate { limit: l.max_orders_per_minute });
        }
        if l.price_band_bps.is_finite() {
            let distance_bps = match facts.mids.get(order.symbol) {
                Some(mid) if *mid > 0.0 => (order.price - mid).abs() / mid * 10_000.0,
                _ => f64::INFINITY,
            };
            if distance_bps.is_nan() || distance_bps > l.price_band_bps {
                return Err(RiskRejection::PriceBand { distance_bps, limit_bps: l.price_band_bps });
            }
        }
        if let Some(account) = facts.account
            && !reduces
        {
            let required = lots * LOT_SIZE * order.price / account.leverage.max(1.0) * l.margin_safety;
            if required > account.free_margin {
                return Err(RiskRejection::Margin { required, free: account.free_margin });
            }
        }
        if facts.feature_age_ms > l.max_feature_age_ms {
            return Err(RiskRejection::StaleFeatures { age_ms: facts.feature_age_ms, limit_ms: l.max_feature_age_ms });
        }
        if let Some(reason) = self.model_too_old(facts.model.as_ref()) {
            return Err(RiskRejection::StaleModel { reason });
        }
        Ok(())
    }

    /// The stale-model guard: why a model registered longer ago than allowed must not be
    /// traded on. Reads the wall clock only when the guard is on and the model's age is known.
    fn model_too_old(&self, model: Option<&ModelInUse>) -> Option<String> {
        let limit = self.limits.max_model_age_ms;
        if limit == i64::MAX {
            return None;
        }
        let model = model?;
        let age = self.clock.now_ms() - model.registered_ms?;
        (age > limit).then(|| {
            format!(
                "model {} is {:.1} days old, over the {:.1}-day limit",
                model.label,
                age as f64 / DAY_MS as f64,
                limit as f64 / DAY_MS as f64
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn eurusd() -> Symbol {
        Symbol::new("EURUSD")
    }

    fn limits() -> RiskLimits {
        RiskLimits {
            symbols: [eurusd(), Symbol::new("GBPUSD")].into(),
            max_order_lots: 0.5,
            max_position_lots: 1.0,
            max_total_lots: 1.5,
            max_total_notional: 200_000.0,
            max_open_orders: 2,
            max_orders_per_minute: 3,
            price_band_bps: 50.0,
            daily_loss_limit: 100.0,
            max_drawdown: 200.0,
            max_feature_age_ms: 5_000,
            margin_safety: 1.0,
            max_model_age_ms: 7 * DAY_MS,
        }
    }

    fn facts(position: f64) -> Facts {
        Facts {
            positions: [(eurusd(), position)].into(),
            mids: [(eurusd(), 1.0), (Symbol::new("GBPUSD"), 1.0)].into(),
            ..Facts::default()
        }
    }

    fn check(engine: &mut RiskEngine, lots: f64, price: f64, facts: &Facts) -> Option<&'static str> {
        let symbol = eurusd();
        engine
            .check(OrderCheck { symbol: &symbol, signed_lots: lots, price, now_ms: 0 }, facts)
            .err()
            .map(|r| r.name())
    }

    #[rstest]
    #[case(0.5, 0.0, None)]
    #[case(0.51, 0.0, Some("max_order_size"))]
    #[case(-0.5, 0.0, None)]
    #[case(-0.51, 0.0, Some("max_order_size"))]
    #[case(0.5, 0.5, None)]
    #[case(0.3, 0.8, Some("max_position"))]
    #[case(-0.3, -0.8, Some("max_position"))]
    #[case(-0.3, 1.2, None)]
    fn sizes_at_and_across_their_boundaries(#[case] lots: f64, #[case] position: f64, #[case] rejection: Option<&str>) {
        assert_eq!(check(&mut RiskEngine::new(limits()), lots, 1.0, &facts(position)), rejection);
    }

    #[test]
    fn symbol_whitelist() {
        let mut engine = RiskEngine::new(limits());
        let usdjpy = Symbol::new("USDJPY");
        let order = OrderCheck { symbol: &usdjpy, signed_lots: 0.1, price: 150.0, now_ms: 0 };
        assert_eq!(engine.check(order, &Facts::default()), Err(RiskRejection::SymbolNotAllowed));
    }

    #[rstest]
    #[case(0.4, 1.0, None)]
    #[case(0.5, 1.0, Some("max_total_position"))]
    fn total_lots_across_symbols(#[case] lots: f64, #[case] gbp: f64, #[case] rejection: Option<&str>) {
        let mut f = facts(0.1);
        f.positions.insert(Symbol::new("GBPUSD"), gbp);
        assert_eq!(check(&mut RiskEngine::new(limits()), lots, 1.0, &f), rejection);
    }

    #[rstest]
    #[case(1.0, None)]
    #[case(1.0001, Some("max_total_notional"))]
    fn total_notional(#[case] price: f64, #[case] rejection: Option<&str>) {
        // 1.0 lot of GBPUSD at 1.0 (100 000) plus 1.0 lot of EURUSD at `price`.
        let mut l = limits();
        l.max_total_lots = 10.0;
        l.max_order_lots = 1.0;
        let mut f = facts(0.0);
        f.positions.insert(Symbol::new("GBPUSD"), 1.0);
        f.mids.insert(eurusd(), price);
        assert_eq!(check(&mut RiskEngine::new(l), 1.0, price, &f), rejection);
    }

    #[test]
    fn open_orders_and_rate_limit() {
        let mut engine = RiskEngine::new(limits());
        let mut f = facts(0.0);
        f.open_orders = 1;
        assert_eq!(check(&mut engine, 0.1, 1.0, &f), None);
        f.open_orders = 2;
        assert_eq!(check(&mut engine, 0.1, 1.0, &f), Some("max_open_orders"));
        f.open_orders = 0;
        let symbol = eurusd();
        for t in [0, 10_000, 20_000] {
            engine.on_order_sent(t);
        }
        let at = |now_ms| OrderCheck { symbol: &symbol, signed_lots: 0.1, price: 1.0, now_ms };
        assert_eq!(engine.check(at(59_999), &f).err().map(|r| r.name()), Some("order_rate"));
        assert_eq!(engine.check(at(60_000), &f), Ok(()), "the first order left the minute");
    }

    #[rstest]
    #[case(1.0050, None)]
    #[case(1.0051, Some("price_band"))]
    #[case(0.9949, Some("price_band"))]
    fn fat_finger_band(#[case] price: f64, #[case] rejection: Option<&str>) {
        assert_eq!(check(&mut RiskEngine::new(limits()), 0.1, price, &facts(0.0)), rejection);
    }

    #[test]
    fn no_mid_means_no_price_check_can_pass() {
        let mut f = facts(0.0);
        f.mids.clear();
        assert_eq!(check(&mut RiskEngine::new(limits()), 0.1, 1.0, &f), Some("price_band"));
    }

    #[rstest]
    #[case(1_000.0, None)]
    #[case(999.99, Some("margin"))]
    fn margin_from_the_account(#[case] free: f64, #[case] rejection: Option<&str>) {
        // 0.1 lot at 1.0 with 1:10 leverage needs 1 000.
        let mut f = facts(0.0);
        f.account = Some(AccountSnapshot { free_margin: free, leverage: 10.0 });
        assert_eq!(check(&mut RiskEngine::new(limits()), 0.1, 1.0, &f), rejection);
    }

    #[test]
    fn stale_features_and_flagged_models() {
        let mut f = facts(0.0);
        f.feature_age_ms = 5_000;
        assert_eq!(check(&mut RiskEngine::new(limits()), 0.1, 1.0, &f), None);
        f.feature_age_ms = 5_001;
        assert_eq!(check(&mut RiskEngine::new(limits()), 0.1, 1.0, &f), Some("stale_features"));
        f.feature_age_ms = 0;
        // Registered 8 days before the injected clock's now, against a 7-day limit.
        struct Fixed(i64);
        impl Clock for Fixed {
            fn now_ms(&self) -> i64 {
                self.0
            }
        }
        let now = 100 * DAY_MS;
        f.model = Some(ModelInUse { label: "fx:1".into(), registered_ms: Some(now - 8 * DAY_MS) });
        let rejection = RiskEngine::new(limits())
            .with_clock(Arc::new(Fixed(now)))
            .check(OrderCheck { symbol: &eurusd(), signed_lots: 0.1, price: 1.0, now_ms: 0 }, &f)
            .unwrap_err();
        assert_eq!(rejection.to_string(), "stale_model: model fx:1 is 8.0 days old, over the 7.0-day limit");
        // Exactly at the limit, or of unknown age, it is traded on.
        f.model = Some(ModelInUse { label: "fx:1".into(), registered_ms: Some(now - 7 * DAY_MS) });
        assert_eq!(check(&mut RiskEngine::new(limits()).with_clock(Arc::new(Fixed(now))), 0.1, 1.0, &f), None);
        f.model = Some(ModelInUse { label: "fx:file".into(), registered_ms: None });
        assert_eq!(check(&mut RiskEngine::new(limits()).with_clock(Arc::new(Fixed(now))), 0.1, 1.0, &f), None);
    }

    #[test]
    fn daily_loss_halts_and_drawdown_reduces_and_neither_lifts_by_itself() {
        let mut engine = RiskEngine::new(limits());
        let day = 86_400_000;
        engine.on_equity(10_000.0, day);
        engine.on_equity(10_150.0, day + 1);
        engine.on_equity(9_949.0, day + 2); // 201 below the high, 51 below the day's start
        assert_eq!(engine.state(), TradingState::Reducing);
        engine.on_equity(9_900.0, day + 3); // exactly the daily limit: not beyond it
        assert_eq!(engine.state(), TradingState::Reducing);
        engine.on_equity(9_899.0, day + 4);
        assert_eq!(engine.state(), TradingState::Halted);
        engine.on_equity(10_500.0, 2 * day); // a new day, a new high
        assert_eq!(engine.state(), TradingState::Halted, "only an operator resumes");
        let changes: Vec<_> = engine.take_changes().iter().map(|c| (c.to, c.reason.clone())).collect();
        assert_eq!(changes[0].0, TradingState::Reducing);
        assert!(changes[0].1.starts_with("max_drawdown: 201.00 below the high"), "{changes:?}");
        assert_eq!(changes[1].0, TradingState::Halted);
        assert!(changes[1].1.starts_with("daily_loss: down 101.00 today"), "{changes:?}");
        assert_eq!(engine.set_state(TradingState::Active, "checked", 2 * day), Ok(()));
        assert_eq!(engine.state(), TradingState::Active);
    }

    #[test]
    fn reducing_allows_only_smaller_exposure_and_halted_nothing() {
        let mut risk = RiskEngine::new(limits());
        risk.set_state(TradingState::Reducing, "test", 0).unwrap();
        assert_eq!(check(&mut risk, -0.2, 1.0, &facts(0.5)), None);
        assert_eq!(check(&mut risk, 0.2, 1.0, &facts(0.5)), Some("reducing_only"));
        assert_eq!(check(&mut risk, -1.0, 1.0, &facts(0.5)), Some("reducing_only"), "a flip adds");
        risk.set_state(TradingState::Halted, "test", 0).unwrap();
        assert_eq!(check(&mut risk, -0.2, 1.0, &facts(0.5)), Some("halted"));
    }

    #[test]
    fn the_kill_switch_sticks() {
        let mut risk = RiskEngine::new(limits());
        risk.kill("operator pressed it", 5);
        assert_eq!(risk.state(), TradingState::Halted);
        assert!(risk.set_state(TradingState::Active, "try", 6).is_err());
        assert_eq!(risk.state(), TradingState::Halted);
        let changes = risk.take_changes();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].reason, "kill switch: operator pressed it");
    }
}
