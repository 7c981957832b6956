//! Champion against challenger on the same traffic. [`Comparison`] keeps, in O(1) per tick,
//! what the report shows: agreement, the two probability distributions and their shift,
//! latency, and each model's hit rate and signal PnL once the horizon has passed.

use std::collections::{HashMap, VecDeque};

use hdrhistogram::Histogram;
use mtml_core::Symbol;
use mtml_core::stats::psi;
use serde::Serialize;

use crate::models::{Models, Role};

/// Long, flat or short, as the decision thresholds read a probability.
fn signal(p: f32, buy_above: f32, sell_below: f32) -> i8 {
    if p >= buy_above {
        1
    } else if p <= sell_below {
        -1
    } else {
        0
    }
}

const BINS: usize = 20;

#[derive(Debug)]
struct Side {
    bins: [u64; BINS],
    sum: f64,
    latency_ns: Histogram<u64>,
    signals: u64,
    resolved: u64,
    hits: u64,
    pnl_bps: f64,
    acted: u64,
    orders: u64,
    fills: u64,
    resolved_fills: u64,
    fill_pnl: f64,
}

impl Side {
    fn new() -> Self {
        Self {
            bins: [0; BINS],
            sum: 0.0,
            latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
            signals: 0,
            resolved: 0,
            hits: 0,
            pnl_bps: 0.0,
            acted: 0,
            orders: 0,
            fills: 0,
            resolved_fills: 0,
            fill_pnl: 0.0,
        }
    }

    fn record(&mut self, p: f32, ns: u64, s: i8, acted: bool) {
        let bin = ((p.clamp(0.0, 1.0) * BINS as f32) as usize).min(BINS - 1);
        self.bins[bin] += 1;
        self.sum += f64::from(p);
        let _ = self.latency_ns.record(ns.max(1));
        self.signals += u64::from(s != 0);
        self.acted += u64::from(acted);
    }

    fn resolve(&mut self, s: i8, return_bps: f64) {
        if s == 0 || return_bps == 0.0 {
            return;
        }
        self.resolved += 1;
        self.hits += u64::from((return_bps > 0.0) == (s > 0));
        self.pnl_bps += f64::from(s) * return_bps;
    }

    fn report(&self, label: &str, n: u64) -> SideReport {
        let quantile = |q: f64| self.latency_ns.value_at_quantile(q) as f64 / 1000.0;
        SideReport {
            model: label.to_owned(),
            mean_probability: if n == 0 { 0.0 } else { self.sum / n as f64 },
            signals: self.signals,
            acted_on: self.acted,
            resolved_signals: self.resolved,
            hit_rate: if self.resolved == 0 { None } else { Some(self.hits as f64 / self.resolved as f64) },
            signal_pnl_bps: self.pnl_bps,
            orders: self.orders,
            fills: self.fills,
            resolved_fills: self.resolved_fills,
            fill_pnl: self.fill_pnl,
            latency_p50_us: quantile(0.5),
            latency_p99_us: quantile(0.99),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingFill {
    due_ms: i64,
    price: f64,
    signed_lots: f64,
    by_challenger: bool,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    due_ms: i64,
    mid: f64,
    champion: i8,
    challenger: i8,
}

/// How the champion/challenger comparison reads and scores signals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareSettings {
    /// Horizon of hits and signal PnL, ms.
    pub horizon_ms: i64,
    /// The decision's long threshold.
    pub buy_above: f32,
    /// The decision's short threshold.
    pub sell_below: f32,
}

/// Champion against challenger on the same traffic, updated per prediction.
#[derive(Debug)]
pub struct Comparison {
    champion_label: String,
    challenger_label: String,
    role: String,
    horizon_ms: i64,
    buy_above: f32,
    sell_below: f32,
    predictions: u64,
    same_class: u64,
    same_signal: u64,
    champion: Side,
    challenger: Side,
    pending: HashMap<Symbol, VecDeque<Pending>>,
    /// Which model decided each order since the comparison began.
    deciders: HashMap<String, bool>,
    pending_fills: HashMap<Symbol, VecDeque<PendingFill>>,
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideReport {
    /// `name:version`.
    pub model: String,
    /// Mean probability of "up".
    pub mean_probability: f64,
    /// Predictions past a decision threshold (long or short).
    pub signals: u64,
    /// Predictions acted on (the champion's outside a canary's share, the canary's inside it).
    pub acted_on: u64,
    /// Signals whose horizon has passed with the mid moved.
    pub resolved_signals: u64,
    /// Share of resolved signals whose direction the mid followed.
    pub hit_rate: Option<f64>,
    /// Sum over resolved signals of direction times the mid's return over the horizon, bps.
    pub signal_pnl_bps: f64,
    /// Orders this model decided (fed from execution).
    pub orders: u64,
    /// Fills of those orders.
    pub fills: u64,
    /// Fills whose horizon has passed.
    pub resolved_fills: u64,
    /// Those fills marked at the mid one horizon after the fill, against the fill price, in the
    /// quote currency (slippage and spread included): what the model's trades made.
    pub fill_pnl: f64,
    /// Prediction latency, µs.
    pub latency_p50_us: f64,
    /// Prediction latency, µs.
    pub latency_p99_us: f64,
}

/// The comparison report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonReport {
    /// `shadow` or `canary P%`.
    pub role: String,
    /// Vectors both models predicted on.
    pub predictions: u64,
    /// Share of predictions on the same side of 0.5.
    pub class_agreement: f64,
    /// Share of predictions giving the same long, flat or short signal.
    pub signal_agreement: f64,
    /// Population stability index of the challenger's probabilities against the champion's, 20
    /// bins: under 0.1 is little shift, over 0.25 a large one.
    pub probability_psi: f64,
    /// Horizon over which hits and signal PnL are measured, ms.
    pub horizon_ms: i64,
    /// The champion.
    pub champion: SideReport,
    /// The challenger.
    pub challenger: SideReport,
}

impl Comparison {
    /// A comparison of `champion` and `challenger`, reading signals with the decision thresholds
    /// and scoring them `horizon_ms` later.
    pub fn new(champion: &str, challenger: &str, role: &Role, horizon_ms: i64, buy_above: f32, sell_below: f32) -> Self {
        Self {
            champion_label: champion.to_owned(),
            challenger_label: challenger.to_owned(),
            role: role.describe(),
            horizon_ms,
            buy_above,
            sell_below,
            predictions: 0,
            same_class: 0,
            same_signal: 0,
            champion: Side::new(),
            challenger: Side::new(),
            pending: HashMap::new(),
            deciders: HashMap::new(),
            pending_fills: HashMap::new(),
        }
    }

    /// Notes which model decided an order (the challenger when `by_challenger`).
    pub fn on_order(&mut self, client_order_id: &str, by_challenger: bool) {
        self.deciders.insert(client_order_id.to_owned(), by_challenger);
        if by_challenger { &mut self.challenger } else { &mut self.champion }.orders += 1;
    }

    /// Takes a fill from execution: it is marked one horizon later, for the model that decided
    /// its order. Fills of orders from before the comparison began are not counted.
    pub fn on_fill(&mut self, fill: &mtml_core::Fill) {
        let Some(&by_challenger) = self.deciders.get(&fill.client_order_id) else { return };
        if by_challenger { &mut self.challenger } else { &mut self.champion }.fills += 1;
        let sign = if fill.side == mtml_core::Side::Buy { 1.0 } else { -1.0 };
        self.pending_fills.entry(fill.symbol.clone()).or_default().push_back(PendingFill {
            due_ms: fill.time_msc + self.horizon_ms,
            price: fill.price,
            signed_lots: sign * fill.volume,
            by_challenger,
        });
    }

    /// A fresh comparison for a model set with a challenger; `None` without one.
    pub fn for_models(models: &Models, s: CompareSettings) -> Option<Self> {
        let c = models.challenger.as_ref()?;
        Some(Self::new(&models.champion.label, &c.slot.label, &c.role, s.horizon_ms, s.buy_above, s.sell_below))
    }

    /// Takes a new mid of `symbol`: signals whose horizon has passed are scored against it.
    pub fn on_mid(&mut self, symbol: &Symbol, time_ms: i64, mid: f64) {
        if let Some(fills) = self.pending_fills.get_mut(symbol) {
            while fills.front().is_some_and(|f| f.due_ms <= time_ms) {
                let Some(f) = fills.pop_front() else { break };
                let side = if f.by_challenger { &mut self.challenger } else { &mut self.champion };
                side.resolved_fills += 1;
                side.fill_pnl += f.signed_lots * mtml_decision::LOT_SIZE * (mid - f.price);
            }
        }
        let Some(queue) = self.pending.get_mut(symbol) else { return };
        while let Some(p) = queue.front().copied() {
            if p.due_ms > time_ms {
                break;
            }
            queue.pop_front();
            let return_bps = (mid / p.mid).ln() * 10_000.0;
            self.champion.resolve(p.champion, return_bps);
            self.challenger.resolve(p.challenger, return_bps);
        }
    }

    /// Records both predictions on one vector.
    pub fn record(
        &mut self,
        symbol: &Symbol,
        time_ms: i64,
        mid: f64,
        champion: (f32, u64),
        challenger: (f32, u64),
        by_challenger: bool,
    ) {
        self.predictions += 1;
        let (a, b) = (signal(champion.0, self.buy_above, self.sell_below), signal(challenger.0, self.buy_above, self.sell_below));
        self.same_class += u64::from((champion.0 >= 0.5) == (challenger.0 >= 0.5));
        self.same_signal += u64::from(a == b);
        self.champion.record(champion.0, champion.1, a, !by_challenger);
        self.challenger.record(challenger.0, challenger.1, b, by_challenger);
        if a != 0 || b != 0 {
            self.pending.entry(symbol.clone()).or_default().push_back(Pending {
                due_ms: time_ms + self.horizon_ms,
                mid,
                champion: a,
                challenger: b,
            });
        }
    }

    /// The report so far.
    pub fn report(&self) -> ComparisonReport {
        let n = self.predictions;
        let share = |k: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
        ComparisonReport {
            role: self.role.clone(),
            predictions: n,
            class_agreement: share(self.same_class),
            signal_agreement: share(self.same_signal),
            probability_psi: psi(&self.champion.bins, &self.challenger.bins),
            horizon_ms: self.horizon_ms,
            champion: self.champion.report(&self.champion_label, n),
            challenger: self.challenger.report(&self.challenger_label, n),
        }
    }
}

impl ComparisonReport {
    /// The report in words, as `mtml models compare` prints it.
    pub fn text(&self) -> String {
        let side = |s: &SideReport| {
            format!(
                "  {:<22} mean p {:.4}  signals {:>6}  acted {:>6}  hit rate {}  ({} resolved)  signal PnL {:+.1} bps  orders {} fills {} fill PnL {:+.2}  latency p50 {:.1} µs p99 {:.1} µs\n",
                s.model,
                s.mean_probability,
                s.signals,
                s.acted_on,
                s.hit_rate.map_or_else(|| "  n/a".to_owned(), |h| format!("{h:.4}")),
                s.resolved_signals,
                s.signal_pnl_bps,
                s.orders,
                s.fills,
                s.fill_pnl,
                s.latency_p50_us,
                s.latency_p99_us
            )
        };
        if self.predictions == 0 {
            return format!(
                "challenger on {}: no predictions yet (nothing to compare until ticks of its symbols arrive)\n",
                self.role
            );
        }
        format!(
            "challenger on {}: {} predictions on the same vectors\n  agreement: class {:.4}, signal {:.4}; probability shift PSI {:.4}; horizon {} s\n{}{}",
            self.role,
            self.predictions,
            self.class_agreement,
            self.signal_agreement,
            self.probability_psi,
            self.horizon_ms / 1000,
            side(&self.champion),
            side(&self.challenger)
        )
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::tests::chain;

    #[test]
    fn a_comparison_without_traffic_says_so_instead_of_zeros() {
        let report = Comparison::new("fx:1", "fx:2", &Role::Shadow, 60_000, 0.53, 0.47).report();
        let text = report.text();
        assert!(text.ends_with(": no predictions yet (nothing to compare until ticks of its symbols arrive)\n"), "{text}");
        assert!(!text.contains("0.0000"));
    }

    #[test]
    fn agreement_hits_and_signal_pnl_are_scored_after_the_horizon() {
        let s = Symbol::new("EURUSD");
        let mut c = Comparison::new("fx:1", "fx:2", &Role::Shadow, 60_000, 0.55, 0.45);
        // Champion long, challenger short; the mid then rises 10 bps.
        c.record(&s, 0, 1.0, (0.60, 1_000), (0.40, 2_000), false);
        // Both flat: agree on the signal, not scored.
        c.record(&s, 1_000, 1.0, (0.50, 1_000), (0.52, 2_000), false);
        c.on_mid(&s, 59_999, 1.5);
        assert_eq!(c.report().champion.resolved_signals, 0, "not before the horizon");
        c.on_mid(&s, 60_000, 1.0 * (0.001f64).exp());
        let r = c.report();
        assert_eq!(r.predictions, 2);
        assert!((r.class_agreement - 0.5).abs() < 1e-12);
        assert!((r.signal_agreement - 0.5).abs() < 1e-12);
        assert_eq!((r.champion.resolved_signals, r.champion.hit_rate), (1, Some(1.0)));
        assert_eq!((r.challenger.resolved_signals, r.challenger.hit_rate), (1, Some(0.0)));
        assert!((r.champion.signal_pnl_bps - 10.0).abs() < 1e-9, "{}", r.champion.signal_pnl_bps);
        assert!((r.challenger.signal_pnl_bps + 10.0).abs() < 1e-9);
        assert_eq!((r.champion.acted_on, r.challenger.acted_on), (2, 0));
        assert!(r.challenger.latency_p50_us > r.champion.latency_p50_us);
        assert!(r.text().contains("fx:2"));
    }

    #[test]
    fn fills_are_marked_after_the_horizon_for_the_model_that_decided() {
        let s = Symbol::new("EURUSD");
        let mut c = Comparison::new("fx:1", "fx:2", &Role::Canary { percent: 50, symbols: vec![] }, 60_000, 0.55, 0.45);
        c.on_order("a", false);
        c.on_order("b", true);
        let fill = |id: &str, side, price| mtml_core::Fill {
            chain_id: chain(1),
            client_order_id: id.into(),
            ticket: 1,
            symbol: s.clone(),
            side,
            volume: 0.1,
            price,
            time_msc: 1_000,
        };
        c.on_fill(&fill("a", mtml_core::Side::Buy, 1.1000));
        c.on_fill(&fill("b", mtml_core::Side::Sell, 1.1000));
        c.on_fill(&fill("before the comparison", mtml_core::Side::Buy, 1.0));
        c.on_mid(&s, 60_999, 2.0);
        assert_eq!(c.report().champion.resolved_fills, 0, "not before the horizon");
        c.on_mid(&s, 61_000, 1.1010);
        let r = c.report();
        assert_eq!((r.champion.orders, r.champion.fills, r.champion.resolved_fills), (1, 1, 1));
        assert_eq!((r.challenger.orders, r.challenger.fills), (1, 1));
        // 0.1 lots of 100 000 over 10 points: +10 for the buy, -10 for the sell.
        assert!((r.champion.fill_pnl - 10.0).abs() < 1e-6, "{}", r.champion.fill_pnl);
        assert!((r.challenger.fill_pnl + 10.0).abs() < 1e-6, "{}", r.challenger.fill_pnl);
    }
}
