//! The trading desk: decision, risk and execution of one instance, and the rules that join them.
//!
//! A prediction becomes an order in three steps, each its own stage of a tick's chain:
//! [`Desk::decide`] (a target position from the probability), [`Desk::check`] (act once per
//! target, round the lots, check risk against the facts of the moment), and [`Desk::execute`]
//! (a client order id, in flight). Between ticks the desk marks equity to the last mids
//! ([`Desk::on_quote`]) for the daily loss and drawdown limits, and applies what the bridge
//! reports ([`Desk::on_event`]). Like the rest of this crate it does no I/O; market time comes
//! in with each call, and the only wall clock is the risk engine's injected one.

use std::collections::HashMap;
use std::sync::Arc;

use mtml_core::{ChainId, ExecutionEvent, OrderRequest, Symbol};

use crate::decision::{DecisionEngine, SizingInputs};
use crate::execution::{Applied, Execution, Position};
use crate::risk::{
    AccountSnapshot, Facts, ModelInUse, OrderCheck, RiskEngine, RiskRejection, StateChange, StateCommandRefused,
    TradingState,
};

/// The desk's target for a symbol after a prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetDecided {
    /// Lots wanted, signed.
    pub target: f64,
    /// True when the prediction moved the target.
    pub changed: bool,
}

/// What a tick's decision asks for, to be checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal<'a> {
    /// Symbol.
    pub symbol: &'a Symbol,
    /// The target decided.
    pub target: f64,
    /// The tick's bid (a sell's expected price).
    pub bid: f64,
    /// The tick's ask (a buy's expected price).
    pub ask: f64,
    /// The tick's market time, UTC epoch ms.
    pub now_ms: i64,
    /// Market time of the features the prediction used.
    pub features_ms: i64,
    /// The model the prediction came from, `name:version`.
    pub model_label: &'a str,
    /// When that version was registered, UTC epoch ms, if known (the stale-model guard).
    pub model_registered_ms: Option<i64>,
}

/// An order risk let through, ready for [`Desk::execute`].
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    /// Symbol.
    pub symbol: Symbol,
    /// Lots, positive to buy, rounded to 0.01.
    pub signed_lots: f64,
    /// The price the decision was made at (the ask to buy, the bid to sell).
    pub decision_price: f64,
    /// Market time, UTC epoch ms.
    pub now_ms: i64,
}

/// The verdict on a proposal.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// Nothing to do: this target was already acted on, an order on the symbol is in flight,
    /// or the position already is the target. Risk was not asked.
    Hold,
    /// Risk refused the order.
    Refused(RiskRejection),
    /// Risk let the order through.
    Approved(Approved),
}

/// Why a position was not closed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CloseRefused {
    /// There is nothing to close.
    #[error("no open position")]
    NoPosition,
    /// An order on the symbol awaits its outcome; closing now could double it.
    #[error("an order on the symbol is in flight; try again when it is settled")]
    OrderInFlight,
    /// No quote has been seen to price the order.
    #[error("no quote yet")]
    NoQuote,
    /// Risk refused the order.
    #[error("refused by risk: {0}")]
    Risk(RiskRejection),
}

/// Decision, risk and execution, owned by the pipeline thread.
#[derive(Debug)]
pub struct Desk {
    decision: DecisionEngine,
    risk: RiskEngine,
    execution: Execution,
    /// Per symbol, the last target an order was attempted for.
    acted_target: HashMap<Symbol, f64>,
    starting_equity: f64,
    equity: f64,
    last_mid: HashMap<Symbol, f64>,
    /// The money of each terminal account, as last reported, for the margin check.
    accounts: HashMap<Arc<str>, AccountSnapshot>,
}

impl Desk {
    /// A desk starting with `starting_equity` (quote currency) before any trade.
    pub fn new(decision: DecisionEngine, risk: RiskEngine, execution: Execution, starting_equity: f64) -> Self {
        Self {
            decision,
            risk,
            execution,
            acted_target: HashMap::new(),
            starting_equity,
            equity: starting_equity,
            last_mid: HashMap::new(),
            accounts: HashMap::new(),
        }
    }

    /// Takes a new mid of `symbol` and marks equity (starting equity plus realised and
    /// unrealised PnL at the last mids) for the daily loss and drawdown limits. Returns the
    /// trading state changes that caused, to announce.
    pub fn on_quote(&mut self, symbol: &Symbol, mid: f64, now_ms: i64) -> Vec<StateChange> {
        self.last_mid.insert(symbol.clone(), mid);
        let pnl: f64 = self
            .execution
            .positions()
            .iter()
            .map(|(symbol, p)| p.realized_pnl + self.last_mid.get(symbol).map_or(0.0, |mid| p.unrealized_pnl(*mid)))
            .sum();
        self.equity = self.starting_equity + pnl;
        self.risk.on_equity(self.equity, now_ms);
        self.risk.take_changes()
    }

    /// The target position after a prediction (`probability_up`), sized on the current equity.
    pub fn decide(&mut self, symbol: &Symbol, probability_up: f32, mid: f64, atr_bps: f64, now_ms: i64) -> TargetDecided {
        let inputs = SizingInputs { equity: self.equity, price: mid, atr_bps };
        let changed = self.decision.decide(symbol, &[probability_up], inputs, now_ms).is_some();
        TargetDecided { target: self.decision.target(symbol), changed }
    }

    /// Acts on a target once: when it differs from the last target acted on and no order on the
    /// symbol is in flight. An order whose outcome is pending is never doubled, and a refused
    /// order is not retried on every tick. The order that reaches the target is checked by risk
    /// against the positions, mids, orders in flight, feature age, model and margin of the
    /// moment.
    pub fn check(&mut self, proposal: Proposal<'_>) -> Checked {
        let symbol = proposal.symbol;
        if self.acted_target.get(symbol) == Some(&proposal.target) || self.execution.has_in_flight(symbol) {
            return Checked::Hold;
        }
        self.acted_target.insert(symbol.clone(), proposal.target);
        let position = self.execution.position(symbol).lots;
        let delta = ((proposal.target - position) * 100.0).round() / 100.0;
        if delta == 0.0 {
            return Checked::Hold;
        }
        let decision_price = if delta > 0.0 { proposal.ask } else { proposal.bid };
        let facts = Facts {
            positions: self.execution.positions().iter().map(|(s, p)| (s.clone(), p.lots)).collect(),
            mids: self.last_mid.clone(),
            open_orders: self.execution.in_flight_count(),
            feature_age_ms: proposal.now_ms - proposal.features_ms,
            model: Some(ModelInUse { label: proposal.model_label.to_owned(), registered_ms: proposal.model_registered_ms }),
            account: self.margin_account(),
        };
        let check = OrderCheck { symbol, signed_lots: delta, price: decision_price, now_ms: proposal.now_ms };
        match self.risk.check(check, &facts) {
            Ok(()) => Checked::Approved(Approved {
                symbol: symbol.clone(),
                signed_lots: delta,
                decision_price,
                now_ms: proposal.now_ms,
            }),
            Err(rejection) => Checked::Refused(rejection),
        }
    }

    /// Turns an approved order into a market order with its client order id, in flight.
    pub fn execute(&mut self, approved: &Approved, chain_id: ChainId, origin_received_ns: u64) -> OrderRequest {
        self.risk.on_order_sent(approved.now_ms);
        self.execution.market_order(
            chain_id,
            &approved.symbol,
            approved.signed_lots,
            approved.decision_price,
            origin_received_ns,
            approved.now_ms,
        )
    }

    /// Applies what the bridge reported: account money to the margin check, everything else
    /// to the order book.
    pub fn on_event(&mut self, event: &ExecutionEvent) -> Applied {
        if let ExecutionEvent::Account { account, leverage, free_margin, .. } = event {
            let snapshot = AccountSnapshot { free_margin: *free_margin, leverage: f64::from(*leverage) };
            self.accounts.insert(Arc::clone(account), snapshot);
            return Applied::Nothing;
        }
        self.execution.on_event(event)
    }

    /// An operator's trading state command; returns the state in force afterwards and the
    /// changes to announce.
    pub fn set_state(
        &mut self,
        state: TradingState,
        reason: &str,
        now_ms: i64,
    ) -> (Result<TradingState, StateCommandRefused>, Vec<StateChange>) {
        let result = self.risk.set_state(state, reason, now_ms).map(|()| self.risk.state());
        (result, self.risk.take_changes())
    }

    /// The trading state.
    pub fn trading_state(&self) -> TradingState {
        self.risk.state()
    }

    /// The order and position book.
    pub fn execution(&self) -> &Execution {
        &self.execution
    }

    /// Every position.
    pub fn positions(&self) -> &HashMap<Symbol, Position> {
        self.execution.positions()
    }

    /// The last mid of each symbol.
    pub fn last_mids(&self) -> &HashMap<Symbol, f64> {
        &self.last_mid
    }

    /// Equity marked at the last quote.
    pub fn equity(&self) -> f64 {
        self.equity
    }

    /// How far equity is below its high, quote currency (0 at a new high).
    pub fn drawdown(&self) -> f64 {
        self.risk.equity_high().map_or(0.0, |high| (high - self.equity).max(0.0))
    }

    /// PnL of the open positions marked at the last mids.
    pub fn unrealized_pnl(&self) -> f64 {
        let marked = |(symbol, position): (&Symbol, &Position)| self.last_mid.get(symbol).map_or(0.0, |mid| position.unrealized_pnl(*mid));
        self.positions().iter().map(marked).sum()
    }

    /// An operator's order closing the position in `symbol` at the last mid, checked by risk
    /// like any order (halted refuses it; reducing lets it through). The decision's target
    /// counts as acted on, so the model does not reopen the position until its target changes.
    pub fn close(&mut self, symbol: &Symbol, now_ms: i64) -> Result<Approved, CloseRefused> {
        let lots = self.execution.position(symbol).lots;
        if lots.abs() < 0.005 {
            return Err(CloseRefused::NoPosition);
        }
        if self.execution.has_in_flight(symbol) {
            return Err(CloseRefused::OrderInFlight);
        }
        let mid = self.last_mid.get(symbol).copied().ok_or(CloseRefused::NoQuote)?;
        self.acted_target.insert(symbol.clone(), self.decision.target(symbol));
        let signed_lots = (-lots * 100.0).round() / 100.0;
        let facts = Facts {
            positions: self.execution.positions().iter().map(|(s, p)| (s.clone(), p.lots)).collect(),
            mids: self.last_mid.clone(),
            open_orders: self.execution.in_flight_count(),
            feature_age_ms: 0,
            model: None,
            account: self.margin_account(),
        };
        let check = OrderCheck { symbol, signed_lots, price: mid, now_ms };
        self.risk.check(check, &facts).map_err(CloseRefused::Risk)?;
        Ok(Approved { symbol: symbol.clone(), signed_lots, decision_price: mid, now_ms })
    }

    /// The account the margin check uses: the one reported, or with several the one with the
    /// least free margin (the desk does not know which account an order will route to, so it
    /// checks against the tightest).
    fn margin_account(&self) -> Option<AccountSnapshot> {
        self.accounts.values().copied().min_by(|a, b| a.free_margin.total_cmp(&b.free_margin))
    }
}

#[cfg(test)]
mod tests {
    use mtml_core::{ChainIdGenerator, Fill, Side};

    use super::*;
    use crate::decision::{DecisionConfig, Sizing};
    use crate::risk::RiskLimits;

    fn eurusd() -> Symbol {
        Symbol::new("EURUSD")
    }

    fn desk(limits: RiskLimits) -> Desk {
        let decision = DecisionEngine::new(DecisionConfig {
            buy_above: 0.55,
            sell_below: 0.45,
            min_agreeing: 1,
            sizing: Sizing::FixedLots(0.1),
            max_lots: 1.0,
            cooldown_ms: 0,
        });
        Desk::new(decision, RiskEngine::new(limits), Execution::new("t"), 10_000.0)
    }

    fn proposal(symbol: &Symbol, target: f64, now_ms: i64) -> Proposal<'_> {
        Proposal { symbol, target, bid: 1.0999, ask: 1.1001, now_ms, features_ms: now_ms, model_label: "fx:1", model_registered_ms: None }
    }

    #[test]
    fn a_target_is_acted_on_once_and_never_doubled_while_in_flight() {
        let symbol = eurusd();
        let mut desk = desk(RiskLimits::sizes_only([symbol.clone()].into(), 1.0, 1.0));
        desk.on_quote(&symbol, 1.1, 0);
        let decided = desk.decide(&symbol, 0.9, 1.1, 5.0, 0);
        assert_eq!(decided, TargetDecided { target: 0.1, changed: true });
        let Checked::Approved(approved) = desk.check(proposal(&symbol, decided.target, 0)) else { panic!("approved") };
        assert_eq!((approved.signed_lots, approved.decision_price), (0.1, 1.1001), "a buy at the ask");
        let chain = ChainIdGenerator::with_prefix(1).next_id();
        let order = desk.execute(&approved, chain, 7);
        assert_eq!(desk.check(proposal(&symbol, 0.1, 1)), Checked::Hold, "the same target again");
        assert_eq!(desk.check(proposal(&symbol, -0.1, 2)), Checked::Hold, "an order is in flight");
        let fill = Fill {
            chain_id: chain,
            client_order_id: order.client_order_id.clone(),
            ticket: 1,
            symbol: symbol.clone(),
            side: Side::Buy,
            volume: 0.1,
            price: 1.1003,
            time_msc: 3,
        };
        let Applied::Fill(applied) = desk.on_event(&ExecutionEvent::Filled(fill)) else { panic!("a fill") };
        assert!((applied.slippage - 0.0002).abs() < 1e-12, "{}", applied.slippage);
        assert_eq!((applied.position.lots, applied.filled, applied.state), (0.1, 0.1, "filled"));
        // Flat wanted now: the sell that reaches it goes at the bid.
        let Checked::Approved(flat) = desk.check(proposal(&symbol, 0.0, 4)) else { panic!("approved") };
        assert_eq!((flat.signed_lots, flat.decision_price), (-0.1, 1.0999));
    }

    #[test]
    fn a_refused_target_is_not_retried_on_every_tick() {
        let symbol = eurusd();
        let mut desk = desk(RiskLimits::sizes_only([symbol.clone()].into(), 0.05, 1.0));
        desk.on_quote(&symbol, 1.1, 0);
        let refused = desk.check(proposal(&symbol, 0.1, 0));
        assert!(matches!(&refused, Checked::Refused(r) if r.name() == "max_order_size"), "{refused:?}");
        assert_eq!(desk.check(proposal(&symbol, 0.1, 1)), Checked::Hold);
    }

    #[test]
    fn equity_is_marked_to_the_last_mids_and_drawdown_trips_reducing() {
        let symbol = eurusd();
        let mut limits = RiskLimits::sizes_only([symbol.clone()].into(), 1.0, 1.0);
        limits.max_drawdown = 50.0;
        let mut desk = desk(limits);
        desk.on_quote(&symbol, 1.1000, 0);
        let Checked::Approved(approved) = desk.check(proposal(&symbol, 0.1, 0)) else { panic!("approved") };
        let order = desk.execute(&approved, ChainIdGenerator::with_prefix(1).next_id(), 0);
        let fill = Fill {
            chain_id: order.chain_id,
            client_order_id: order.client_order_id,
            ticket: 1,
            symbol: symbol.clone(),
            side: Side::Buy,
            volume: 0.1,
            price: 1.1000,
            time_msc: 1,
        };
        desk.on_event(&ExecutionEvent::Filled(fill));
        assert!(desk.on_quote(&symbol, 1.1040, 2).is_empty(), "up 40: a new high");
        assert!((desk.equity() - 10_040.0).abs() < 1e-6, "{}", desk.equity());
        let changes = desk.on_quote(&symbol, 1.0980, 3);
        assert_eq!(changes.len(), 1, "60 below the high, limit 50");
        assert_eq!(changes[0].to, TradingState::Reducing);
        assert_eq!(desk.trading_state(), TradingState::Reducing);
    }

    #[test]
    fn the_margin_check_uses_the_tightest_account() {
        let symbol = eurusd();
        let mut desk = desk(RiskLimits::sizes_only([symbol.clone()].into(), 1.0, 1.0));
        desk.on_quote(&symbol, 1.1, 0);
        for (account, free_margin) in [("rich", 1_000_000.0), ("poor", 100.0)] {
            desk.on_event(&ExecutionEvent::Account {
                account: Arc::from(account),
                balance: free_margin,
                equity: free_margin,
                margin: 0.0,
                free_margin,
                leverage: 100,
            });
        }
        // 0.1 lot at 1.1001 with 1:100 needs 110 of margin: more than the poorer account has.
        let refused = desk.check(proposal(&symbol, 0.1, 0));
        assert!(matches!(&refused, Checked::Refused(r) if r.name() == "margin"), "{refused:?}");
    }
}
