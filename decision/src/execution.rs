//! Orders out, fills in, positions and PnL.
//!
//! Execution gives every order an idempotent client order id, keeps it in flight until the
//! terminal settles it, and applies fills to positions. A symbol with an order in flight gets no
//! new order: nothing is ever sent twice because an answer is slow.

use std::collections::HashMap;
use std::sync::Arc;

use mtml_core::{ChainId, ExecutionEvent, Fill, OrderRequest, OrderType, RecoveredOrder, Side, Symbol};

pub use mtml_core::reconcile::Difference;
use mtml_core::reconcile::{TerminalBooks, UnsettledOrder};

use crate::order_state::{OrderEvent, OrderState, transition};

/// Contract size of one lot (FX majors).
pub const LOT_SIZE: f64 = 100_000.0;

/// Net position of one symbol.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Position {
    /// Signed lots.
    pub lots: f64,
    /// Average entry price of the open lots.
    pub average_price: f64,
    /// Realised PnL in the quote currency.
    pub realized_pnl: f64,
}

impl Position {
    /// Applies a fill of `signed_lots` at `price`.
    pub fn apply(&mut self, signed_lots: f64, price: f64) {
        let same_direction = self.lots == 0.0 || self.lots.signum() == signed_lots.signum();
        if same_direction {
            let total = self.lots + signed_lots;
            self.average_price =
                (self.average_price * self.lots.abs() + price * signed_lots.abs()) / total.abs();
            self.lots = total;
            return;
        }
        let closing = signed_lots.abs().min(self.lots.abs());
        self.realized_pnl += closing * LOT_SIZE * (price - self.average_price) * self.lots.signum();
        let remaining = self.lots + signed_lots;
        if remaining.abs() < 1e-9 {
            self.lots = 0.0;
            self.average_price = 0.0;
        } else if remaining.signum() == self.lots.signum() {
            self.lots = remaining;
        } else {
            // Flipped: the rest opens a new position at the fill price.
            self.lots = remaining;
            self.average_price = price;
        }
    }

    /// PnL of the open lots marked at `price`.
    pub fn unrealized_pnl(&self, price: f64) -> f64 {
        self.lots * LOT_SIZE * (price - self.average_price)
    }
}

#[derive(Debug, Clone)]
struct InFlight {
    chain_id: ChainId,
    symbol: Symbol,
    side: Side,
    volume: f64,
    filled: f64,
    decision_price: f64,
    state: OrderState,
    /// The account whose books settle it once its outcome is unknown; `None` for an order a
    /// previous run left open (the first account trading its symbol settles it).
    account: Option<Arc<str>>,
}

/// Counters of execution.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExecutionStats {
    /// Orders handed to the bridge.
    pub orders_sent: u64,
    /// Orders acknowledged by a terminal.
    pub acks: u64,
    /// Fills (partial fills count one each).
    pub fills: u64,
    /// Orders rejected by a terminal or the bridge.
    pub rejects: u64,
    /// Sum over fills of (fill price - decision price) in the order's disfavour, in price units
    /// times lots: positive means worse than decided.
    pub slippage_price_lots: f64,
    /// Lots filled.
    pub filled_lots: f64,
    /// Per symbol: slippage in price units times lots, and lots filled (points differ per symbol:
    /// 0.00001 for EURUSD, 0.001 for USDJPY).
    pub slippage_by_symbol: std::collections::BTreeMap<Symbol, (f64, f64)>,
    /// Orders whose answer was lost with a connection (settled later from a snapshot).
    pub outcome_unknown: u64,
    /// Events that did not fit the order's state (logged, otherwise ignored).
    pub invalid_transitions: u64,
    /// Positions found different from the terminal's, and corrected.
    pub reconciliation_differences: u64,
    /// Orders whose unknown outcome (a lost connection, or a previous run's crash) the
    /// terminal's evidence settled.
    pub unknown_settled: u64,
}

/// What an execution event changed in the book: what the journal records and the caller
/// reports, returned by [`Execution::on_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Nothing in the book changed (an account's money report).
    Nothing,
    /// An order was acknowledged, rejected or lost its answer.
    OrderState {
        /// The order.
        client_order_id: String,
        /// `acknowledged`, `rejected` or `unknown`.
        state: &'static str,
        /// Lots filled so far (0 once the order has left the book).
        filled: f64,
    },
    /// A fill was applied to its position.
    Fill(FillApplied),
    /// Positions were compared with a terminal's; these differed and were corrected.
    Reconciled(Vec<Difference>),
}

/// A fill as the book applied it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillApplied {
    /// Fill price minus decision price, against the order (positive: worse than decided); 0 for
    /// a fill of an order not in flight.
    pub slippage: f64,
    /// Realised PnL this fill made, quote currency.
    pub realized_pnl: f64,
    /// The symbol's position afterwards.
    pub position: Position,
    /// Lots of the order filled so far, this fill included.
    pub filled: f64,
    /// The order's state afterwards (`partially_filled`, or `filled` once it left the book).
    pub state: &'static str,
}

/// Order and position book of one mtml instance.
#[derive(Debug)]
pub struct Execution {
    session: String,
    next_order: u64,
    in_flight: HashMap<String, InFlight>,
    positions: HashMap<Symbol, Position>,
    stats: ExecutionStats,
}

impl ExecutionStats {
    /// Average slippage of fills against their decision price, in points (positive: worse than
    /// decided), each symbol's in its own point size (`digits` of its prices: 5 for EURUSD, 3
    /// for USDJPY; 5 where unknown). `None` before the first fill.
    pub fn average_slippage_points(&self, digits: impl Fn(&Symbol) -> Option<u8>) -> Option<f64> {
        let lots: f64 = self.slippage_by_symbol.values().map(|(_, lots)| lots).sum();
        let points: f64 = (self.slippage_by_symbol.iter())
            .map(|(symbol, (price_lots, _))| price_lots * 10f64.powi(i32::from(digits(symbol).unwrap_or(5))))
            .sum();
        (lots > 0.0).then(|| points / lots)
    }
}

impl Execution {
    /// A book whose client order ids start with `session` (kept short: MetaTrader order comments
    /// hold 31 characters).
    pub fn new(session: &str) -> Self {
        Self {
            session: session.chars().take(12).collect(),
            next_order: 1,
            in_flight: HashMap::new(),
            positions: HashMap::new(),
            stats: ExecutionStats::default(),
        }
    }

    /// The symbol's position.
    pub fn position(&self, symbol: &Symbol) -> Position {
        self.positions.get(symbol).copied().unwrap_or_default()
    }

    /// Every position.
    pub fn positions(&self) -> &HashMap<Symbol, Position> {
        &self.positions
    }

    /// True while an order on `symbol` awaits its outcome.
    pub fn has_in_flight(&self, symbol: &Symbol) -> bool {
        self.in_flight.values().any(|order| &order.symbol == symbol)
    }

    /// Orders awaiting their outcome.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Counters.
    pub fn stats(&self) -> &ExecutionStats {
        &self.stats
    }

    /// Creates a market order for `signed_lots` and records it in flight.
    pub fn market_order(
        &mut self,
        chain_id: ChainId,
        symbol: &Symbol,
        signed_lots: f64,
        decision_price: f64,
        origin_received_ns: u64,
        market_time_msc: i64,
    ) -> OrderRequest {
        let client_order_id = format!("{}-{}", self.session, self.next_order);
        self.next_order += 1;
        let volume = (signed_lots.abs() * 100.0).round() / 100.0;
        self.in_flight.insert(
            client_order_id.clone(),
            InFlight {
                chain_id,
                symbol: symbol.clone(),
                side: if signed_lots > 0.0 { Side::Buy } else { Side::Sell },
                volume,
                filled: 0.0,
                decision_price,
                state: OrderState::Sent,
                account: None,
            },
        );
        self.stats.orders_sent += 1;
        OrderRequest {
            chain_id,
            client_order_id,
            account: None,
            symbol: symbol.clone(),
            side: if signed_lots > 0.0 { Side::Buy } else { Side::Sell },
            order_type: OrderType::Market,
            volume,
            price: 0.0,
            decision_price,
            origin_received_ns,
            market_time_msc,
        }
    }

    /// The state of an order in flight; `None` once it has left (filled, rejected...).
    pub fn state_of(&self, client_order_id: &str) -> Option<OrderState> {
        self.in_flight.get(client_order_id).map(|order| order.state)
    }

    /// Lots filled so far of an order in flight (0 once it has left).
    pub fn filled_of(&self, client_order_id: &str) -> f64 {
        self.in_flight.get(client_order_id).map_or(0.0, |order| order.filled)
    }

    /// Positions recovered from the journal at start.
    pub fn restore_positions(&mut self, positions: impl IntoIterator<Item = (Symbol, Position)>) {
        self.positions.extend(positions);
    }

    /// Orders a previous run left open (from the journal), back in flight with their outcome
    /// unknown: they are never resent, their symbols get no new order, and the first books of an
    /// account trading their symbol settle them ([`Execution::settlement`]).
    pub fn restore_orders<'a>(&mut self, orders: impl IntoIterator<Item = &'a RecoveredOrder>) {
        for order in orders {
            self.in_flight.insert(
                order.client_order_id.clone(),
                InFlight {
                    chain_id: order.chain_id,
                    symbol: order.symbol.clone(),
                    side: order.side,
                    volume: order.volume,
                    filled: order.filled,
                    decision_price: order.decision_price,
                    state: OrderState::Unknown,
                    account: None,
                },
            );
        }
    }

    /// The state of each order in flight, by client order id.
    pub fn order_states(&self) -> Vec<(String, OrderState)> {
        let mut states: Vec<_> =
            self.in_flight.iter().map(|(id, order)| (id.clone(), order.state)).collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    }

    /// Moves an order through the state machine; an event that does not fit is counted and
    /// logged, never applied half-way.
    fn advance(&mut self, client_order_id: &str, event: OrderEvent) -> Option<OrderState> {
        let order = self.in_flight.get_mut(client_order_id)?;
        match transition(order.state, event) {
            Ok(next) => {
                if order.state == OrderState::Unknown && next != OrderState::Unknown {
                    self.stats.unknown_settled += 1;
                }
                order.state = next;
                Some(next)
            }
            Err(error) => {
                self.stats.invalid_transitions += 1;
                tracing::warn!(chain_id = %order.chain_id, %client_order_id, %error, "execution event ignored");
                None
            }
        }
    }

    /// Applies what the bridge reported, and says what it changed.
    pub fn on_event(&mut self, event: &ExecutionEvent) -> Applied {
        let settled = |book: &Self, id: &str, state| Applied::OrderState {
            client_order_id: id.to_owned(),
            state,
            filled: book.filled_of(id),
        };
        match event {
            ExecutionEvent::Acked { client_order_id, volume, .. } => {
                self.stats.acks += 1;
                if self.advance(client_order_id, OrderEvent::Ack).is_some()
                    && let Some(order) = self.in_flight.get_mut(client_order_id)
                    && *volume > 0.0
                {
                    // The bridge may have rounded the volume down to the symbol's step.
                    order.volume = *volume;
                }
                settled(self, client_order_id, "acknowledged")
            }
            ExecutionEvent::Rejected { client_order_id, reason, retcode, chain_id } => {
                self.stats.rejects += 1;
                tracing::warn!(%chain_id, %client_order_id, retcode, %reason, "order rejected");
                if self.advance(client_order_id, OrderEvent::Reject).is_some() {
                    self.in_flight.remove(client_order_id);
                }
                settled(self, client_order_id, "rejected")
            }
            ExecutionEvent::OutcomeUnknown { client_order_id, chain_id, account } => {
                self.stats.outcome_unknown += 1;
                tracing::warn!(%chain_id, %client_order_id, %account, "order outcome unknown until the terminal's next snapshot");
                self.advance(client_order_id, OrderEvent::Lose);
                if let Some(order) = self.in_flight.get_mut(client_order_id) {
                    order.account = Some(Arc::clone(account));
                }
                settled(self, client_order_id, "unknown")
            }
            ExecutionEvent::Filled(fill) => Applied::Fill(self.on_fill(fill)),
            ExecutionEvent::TerminalPositions { account, positions, .. } => {
                Applied::Reconciled(self.reconcile(account, positions))
            }
            // Money is risk's business (the margin check), not the order book's.
            ExecutionEvent::Account { .. } => Applied::Nothing,
        }
    }

    /// What a terminal's books say about the orders whose outcome is unknown (lost with a
    /// connection, or left open by a previous run): the events that settle them, in client order
    /// id order, from [`mtml_core::reconcile::settle`]. An order is settled by the books of the
    /// account it was sent to, or, when that is not known (a previous run's), by those of the
    /// first account trading its symbol. Nothing changes until the events are applied with
    /// [`Execution::on_event`], like any other.
    pub fn settlement(&self, account: &str, evidence: &TerminalBooks, symbols: &[Symbol]) -> Vec<ExecutionEvent> {
        let mut unknown: Vec<(&String, &InFlight)> = (self.in_flight.iter())
            .filter(|(_, order)| order.state == OrderState::Unknown)
            .filter(|(_, order)| match &order.account {
                Some(sent_to) => &**sent_to == account,
                None => symbols.contains(&order.symbol),
            })
            .collect();
        unknown.sort_by(|a, b| a.0.cmp(b.0));
        let settlements: Vec<_> = unknown
            .into_iter()
            .map(|(id, order)| {
                let order = UnsettledOrder {
                    chain_id: order.chain_id,
                    client_order_id: id.clone(),
                    symbol: order.symbol.clone(),
                    side: order.side,
                    volume: order.volume,
                    filled: order.filled,
                };
                mtml_core::reconcile::settle(&order, evidence)
            })
            .collect();
        if !settlements.is_empty() {
            tracing::info!(%account, orders = settlements.len(), "orders with unknown outcome settled from the terminal's books");
        }
        settlements.into_iter().flat_map(|s| s.events).collect()
    }

    /// Compares positions with a terminal's and adopts the terminal's where they differ (the
    /// terminal's books are the truth), except for symbols with an order in flight, whose fills
    /// may not have been reported yet. Returns the differences found.
    pub fn reconcile(&mut self, account: &str, terminal: &[(Symbol, f64, f64)]) -> Vec<Difference> {
        let ours = self.positions.iter().map(|(symbol, position)| (symbol, position.lots));
        let differences = mtml_core::reconcile::differences(ours, terminal, |symbol| self.has_in_flight(symbol));
        for difference in &differences {
            let Difference { symbol, mtml_lots, terminal_lots } = difference;
            tracing::warn!(%account, %symbol, mtml = mtml_lots, terminal = terminal_lots, "position differs from the terminal's; adopting the terminal's");
            let price = terminal.iter().find(|(s, _, _)| s == symbol).map_or(0.0, |(_, _, price)| *price);
            let position = self.positions.entry(symbol.clone()).or_default();
            position.lots = *terminal_lots;
            position.average_price = if *terminal_lots == 0.0 { 0.0 } else { price };
        }
        self.stats.reconciliation_differences += differences.len() as u64;
        differences
    }

    fn on_fill(&mut self, fill: &Fill) -> FillApplied {
        self.stats.fills += 1;
        self.stats.filled_lots += fill.volume;
        let signed = fill.volume * fill.side.sign();
        let filled = self.filled_of(&fill.client_order_id) + fill.volume;
        // The position follows the terminal's deals whatever execution thought of the order.
        let position = self.positions.entry(fill.symbol.clone()).or_default();
        let realized_before = position.realized_pnl;
        position.apply(signed, fill.price);
        let position = *position;
        let mut applied = FillApplied {
            slippage: 0.0,
            realized_pnl: position.realized_pnl - realized_before,
            position,
            filled,
            state: "filled",
        };
        let Some(order) = self.in_flight.get_mut(&fill.client_order_id) else {
            tracing::warn!(chain_id = %fill.chain_id, client_order_id = %fill.client_order_id, "fill for an order not in flight");
            return applied;
        };
        applied.slippage = (fill.price - order.decision_price) * fill.side.sign();
        self.stats.slippage_price_lots += applied.slippage * fill.volume;
        let (price_lots, lots) = self.stats.slippage_by_symbol.entry(fill.symbol.clone()).or_default();
        *price_lots += applied.slippage * fill.volume;
        *lots += fill.volume;
        order.filled += fill.volume;
        let complete = order.filled >= order.volume - 1e-9;
        if self.advance(&fill.client_order_id, OrderEvent::Fill { complete }) == Some(OrderState::Filled) {
            self.in_flight.remove(&fill.client_order_id);
        }
        applied.state = self.state_of(&fill.client_order_id).map_or("filled", |s| s.name());
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtml_core::ChainIdGenerator;
    use proptest::prelude::*;

    #[test]
    fn position_arithmetic_open_add_reduce_flip() {
        let mut p = Position::default();
        p.apply(1.0, 1.1000);
        p.apply(1.0, 1.1002);
        assert!((p.average_price - 1.1001).abs() < 1e-12);
        p.apply(-0.5, 1.1011);
        assert!((p.realized_pnl - 0.5 * LOT_SIZE * 0.0010).abs() < 1e-6);
        p.apply(-2.5, 1.1001);
        assert!((p.lots - -1.0).abs() < 1e-12);
        assert_eq!(p.average_price, 1.1001);
    }

    #[test]
    fn partial_fills_keep_the_order_in_flight_until_complete() {
        let mut execution = Execution::new("t");
        let symbol = Symbol::new("EURUSD");
        let chain_id = ChainIdGenerator::with_prefix(1).next_id();
        let order = execution.market_order(chain_id, &symbol, 0.3, 1.1, 0, 0);
        assert_eq!(order.client_order_id, "t-1");
        assert!(execution.has_in_flight(&symbol));
        let fill = |volume| {
            ExecutionEvent::Filled(Fill {
                chain_id,
                client_order_id: "t-1".into(),
                ticket: 1,
                symbol: symbol.clone(),
                side: Side::Buy,
                volume,
                price: 1.1001,
                time_msc: 0,
            })
        };
        execution.on_event(&fill(0.1));
        assert!(execution.has_in_flight(&symbol));
        execution.on_event(&fill(0.2));
        assert!(!execution.has_in_flight(&symbol));
        assert!((execution.position(&symbol).lots - 0.3).abs() < 1e-12);
        assert!((execution.stats().slippage_price_lots - 0.0001 * 0.3).abs() < 1e-12);
    }

    #[test]
    fn slippage_points_follow_each_symbols_digits() {
        let mut execution = Execution::new("t");
        let chain_id = ChainIdGenerator::with_prefix(1).next_id();
        let fill = |id: &str, symbol: &str, price| {
            ExecutionEvent::Filled(Fill {
                chain_id,
                client_order_id: id.into(),
                ticket: 1,
                symbol: Symbol::new(symbol),
                side: Side::Buy,
                volume: 0.1,
                price,
                time_msc: 0,
            })
        };
        execution.market_order(chain_id, &Symbol::new("USDJPY"), 0.1, 86.789, 0, 0);
        execution.on_event(&fill("t-1", "USDJPY", 86.796));
        let digits = |symbol: &Symbol| Some(if symbol.as_str() == "USDJPY" { 3 } else { 5 });
        let points = execution.stats().average_slippage_points(digits).unwrap();
        assert!((points - 7.0).abs() < 1e-6, "86.789 to 86.796 is 7 points, not 700: {points}");
        execution.market_order(chain_id, &Symbol::new("EURUSD"), 0.1, 1.10000, 0, 0);
        execution.on_event(&fill("t-2", "EURUSD", 1.10003));
        let points = execution.stats().average_slippage_points(digits).unwrap();
        assert!((points - 5.0).abs() < 1e-6, "(7 + 3) / 2: {points}");
        assert_eq!(Execution::new("x").stats().average_slippage_points(digits), None);
    }

    #[test]
    fn orders_move_through_the_state_machine_and_invalid_events_are_counted() {
        let mut execution = Execution::new("t");
        let symbol = Symbol::new("EURUSD");
        let chain_id = ChainIdGenerator::with_prefix(1).next_id();
        execution.market_order(chain_id, &symbol, 0.1, 1.1, 0, 0);
        assert_eq!(execution.order_states(), [("t-1".to_owned(), OrderState::Sent)]);
        let id = "t-1".to_owned();
        execution.on_event(&ExecutionEvent::OutcomeUnknown { chain_id, client_order_id: id.clone(), account: Arc::from("1@x") });
        assert_eq!(execution.order_states(), [(id.clone(), OrderState::Unknown)]);
        assert!(execution.has_in_flight(&symbol), "an unknown outcome keeps the symbol busy: no second order");
        execution.on_event(&ExecutionEvent::Acked { chain_id, client_order_id: id.clone(), ticket: 5, volume: 0.1 });
        assert_eq!(execution.order_states(), [(id.clone(), OrderState::Acknowledged)]);
        let fill = Fill {
            chain_id,
            client_order_id: id.clone(),
            ticket: 5,
            symbol: symbol.clone(),
            side: Side::Buy,
            volume: 0.1,
            price: 1.1,
            time_msc: 0,
        };
        execution.on_event(&ExecutionEvent::Filled(fill));
        assert!(execution.order_states().is_empty(), "filled orders leave");
        assert_eq!(execution.stats().invalid_transitions, 0);
        // A late rejection of a filled order does not fit: counted, ignored.
        execution.market_order(chain_id, &symbol, 0.1, 1.1, 0, 0);
        execution.on_event(&ExecutionEvent::Rejected { chain_id, client_order_id: "t-2".into(), retcode: 1, reason: "x".into() });
        execution.on_event(&ExecutionEvent::Acked { chain_id, client_order_id: "t-2".into(), ticket: 6, volume: 0.1 });
        assert_eq!(execution.stats().rejects, 1);
        assert!(execution.order_states().is_empty());
        assert!((execution.position(&symbol).lots - 0.1).abs() < 1e-12);
    }

    #[test]
    fn orders_recovered_from_the_journal_block_their_symbol_until_the_terminal_settles_them() {
        let mut execution = Execution::new("new");
        let symbol = Symbol::new("EURUSD");
        execution.restore_positions([(symbol.clone(), Position { lots: 0.1, average_price: 1.1, realized_pnl: 0.0 })]);
        execution.restore_orders(&[RecoveredOrder {
            client_order_id: "old-7".into(),
            chain_id: ChainIdGenerator::with_prefix(1).next_id(),
            symbol: symbol.clone(),
            side: Side::Buy,
            volume: 0.3,
            filled: 0.1,
            decision_price: 1.2,
        }]);
        assert_eq!(execution.order_states(), [("old-7".to_owned(), OrderState::Unknown)]);
        assert!(execution.has_in_flight(&symbol), "no new order on the symbol meanwhile");
        assert!(execution.reconcile("1@x", &[]).is_empty(), "a symbol with an unsettled order is not reconciled");
        let chain_id = ChainIdGenerator::with_prefix(1).next_id();
        execution.on_event(&ExecutionEvent::Filled(Fill {
            chain_id,
            client_order_id: "old-7".into(),
            ticket: 1,
            symbol: symbol.clone(),
            side: Side::Buy,
            volume: 0.2,
            price: 1.2001,
            time_msc: 0,
        }));
        assert!(execution.order_states().is_empty(), "the journaled 0.1 plus the settled 0.2 complete it");
        assert_eq!(execution.stats().unknown_settled, 1);
        assert!((execution.position(&symbol).lots - 0.3).abs() < 1e-12);
        assert!((execution.stats().slippage_price_lots - 0.0001 * 0.2).abs() < 1e-12, "against the journaled decision price");
    }

    #[test]
    fn an_unknown_order_is_settled_by_the_books_of_its_account_only() {
        use mtml_core::reconcile::BookEntry;
        let mut execution = Execution::new("t");
        let eurusd = Symbol::new("EURUSD");
        let chain_id = ChainIdGenerator::with_prefix(1).next_id();
        execution.market_order(chain_id, &eurusd, 0.1, 1.1, 0, 0);
        execution.on_event(&ExecutionEvent::OutcomeUnknown { chain_id, client_order_id: "t-1".into(), account: Arc::from("1@a") });
        execution.restore_orders(&[RecoveredOrder {
            client_order_id: "old-1".into(),
            chain_id,
            symbol: Symbol::new("GBPUSD"),
            side: Side::Sell,
            volume: 0.2,
            filled: 0.0,
            decision_price: 1.6,
        }]);
        let deal = |id: &str, symbol: &str, side| BookEntry {
            client_order_id: id.into(),
            ticket: 7,
            symbol: Symbol::new(symbol),
            side,
            volume: 0.1,
            price: 1.2,
            time_msc: 5,
        };
        let books = TerminalBooks { deals: vec![deal("t-1", "EURUSD", Side::Buy)], ..TerminalBooks::default() };
        assert!(execution.settlement("2@b", &books, &[Symbol::new("USDJPY")]).is_empty(), "another account's books settle neither");
        let settled = execution.settlement("1@a", &books, std::slice::from_ref(&eurusd));
        assert!(matches!(settled.as_slice(), [ExecutionEvent::Filled(f)] if f.client_order_id == "t-1"), "{settled:?}");
        // The previous run's order: settled by the first account trading GBPUSD, here as never executed.
        let settled = execution.settlement("2@b", &TerminalBooks::default(), &[Symbol::new("GBPUSD")]);
        assert!(matches!(settled.as_slice(), [ExecutionEvent::Rejected { client_order_id, .. }] if client_order_id == "old-1"), "{settled:?}");
        for event in execution.settlement("1@a", &books, std::slice::from_ref(&eurusd)).iter().chain(&settled) {
            execution.on_event(event);
        }
        assert!(execution.order_states().is_empty(), "both settled");
        assert!((execution.position(&eurusd).lots - 0.1).abs() < 1e-12);
        assert_eq!(execution.stats().unknown_settled, 2);
    }

    #[test]
    fn reconciliation_adopts_the_terminals_positions_except_with_orders_in_flight() {
        let mut execution = Execution::new("t");
        let eurusd = Symbol::new("EURUSD");
        let gbpusd = Symbol::new("GBPUSD");
        let usdjpy = Symbol::new("USDJPY");
        execution.restore_positions([
            (eurusd.clone(), Position { lots: 0.1, average_price: 1.1, realized_pnl: 5.0 }),
            (gbpusd.clone(), Position { lots: 0.3, average_price: 1.6, realized_pnl: 0.0 }),
        ]);
        execution.market_order(ChainIdGenerator::with_prefix(1).next_id(), &usdjpy, 0.1, 150.0, 0, 0);
        let terminal = [(eurusd.clone(), 0.2, 1.12), (usdjpy.clone(), 0.1, 150.0)];
        let differences = execution.reconcile("1@x", &terminal);
        assert_eq!(
            differences,
            [
                Difference { symbol: eurusd.clone(), mtml_lots: 0.1, terminal_lots: 0.2 },
                Difference { symbol: gbpusd.clone(), mtml_lots: 0.3, terminal_lots: 0.0 },
            ],
            "USDJPY has an order in flight and is left alone"
        );
        assert_eq!(execution.position(&eurusd), Position { lots: 0.2, average_price: 1.12, realized_pnl: 5.0 });
        assert_eq!(execution.position(&gbpusd).lots, 0.0);
        assert_eq!(execution.stats().reconciliation_differences, 2);
        assert!(execution.reconcile("1@x", &terminal).is_empty(), "agreeing now");
    }

    proptest! {
        /// Realised plus unrealised PnL equals the cash flow of the fills marked to market,
        /// whatever the sequence of fills.
        #[test]
        fn pnl_matches_cash_accounting(
            fills in proptest::collection::vec((-3i32..=3, 10_000u32..12_000), 1..60),
            mark in 10_000u32..12_000,
        ) {
            let mut position = Position::default();
            let mut cash = 0.0;
            let mut lots = 0.0;
            for (size, price) in &fills {
                if *size == 0 { continue; }
                let signed = f64::from(*size) / 10.0;
                let price = f64::from(*price) / 10_000.0;
                position.apply(signed, price);
                cash -= signed * LOT_SIZE * price;
                lots += signed;
            }
            let mark = f64::from(mark) / 10_000.0;
            let expected = cash + lots * LOT_SIZE * mark;
            let total = position.realized_pnl + position.unrealized_pnl(mark);
            prop_assert!((position.lots - lots).abs() < 1e-9);
            prop_assert!((total - expected).abs() < 1e-4, "{} vs {}", total, expected);
        }
    }
}
