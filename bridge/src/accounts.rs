//! What the bridge remembers about an account across connections: where its tick stream
//! stopped, and the orders it sent whose outcome is not settled yet.
//!
//! A connection can die between the bridge writing an order and the terminal's answer. Such an
//! order is not resent: it stays in flight with its outcome unknown until the terminal's next
//! snapshot (positions, pending orders, recent deals, each carrying the client order id from the
//! order comment) settles it one way or the other.

use std::collections::HashMap;
use std::sync::Arc;

use mtml_core::{ChainId, ExecutionEvent, Fill, Side, Symbol};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::wire::{AccountInfo, Deal, PendingOrder, Position, WireSide};

/// The last tick of a symbol the bridge received: its time and which tick of that millisecond it
/// was (several ticks can share a millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResumePoint {
    /// `time_msc` of the tick.
    pub time_msc: i64,
    /// 1 for the first tick of that millisecond, 2 for the second...
    pub count: u32,
}

impl ResumePoint {
    /// The point after a tick at `time_msc` following this one.
    pub fn advance(self, time_msc: i64) -> Self {
        if time_msc == self.time_msc {
            Self { time_msc, count: self.count + 1 }
        } else {
            Self { time_msc, count: 1 }
        }
    }
}

/// An order the bridge wrote to a terminal and has not seen settled.
#[derive(Debug, Clone, PartialEq)]
pub struct SentOrder {
    /// Chain of the order.
    pub chain_id: ChainId,
    /// Canonical symbol.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// Volume sent (after normalisation).
    pub volume: f64,
    /// Volume reported filled so far.
    pub filled: f64,
    /// When the bridge wrote it (bridge monotonic clock).
    pub sent_ns: u64,
    /// False once the connection it was sent on died before the order was settled.
    pub outcome_known: bool,
    /// True once the terminal acknowledged it (a pending order can then wait any time).
    pub acked: bool,
    /// The connection that sent it.
    pub session: String,
}

impl SentOrder {
    fn remaining(&self) -> f64 {
        self.volume - self.filled
    }
}

/// One account's memory.
#[derive(Debug, Default)]
pub struct AccountState {
    /// Resume point per broker symbol, shared with the connection streaming them so that a new
    /// connection always sees where the old one stopped.
    pub resume: Arc<Mutex<HashMap<String, ResumePoint>>>,
    /// Orders in flight by client order id.
    pub in_flight: HashMap<String, SentOrder>,
    /// The connection currently serving the account, to close it when the EA reconnects (an EA
    /// reload can leave the old socket half-open).
    pub session: Option<(String, CancellationToken)>,
}

/// Every account's memory, shared by the connection tasks.
#[derive(Debug, Default, Clone)]
pub struct AccountBook {
    accounts: Arc<Mutex<HashMap<Arc<str>, AccountState>>>,
}

impl AccountBook {
    /// Runs `f` on the account's state, creating it if new.
    pub fn with<R>(&self, account: &Arc<str>, f: impl FnOnce(&mut AccountState) -> R) -> R {
        let mut accounts = self.accounts.lock();
        f(accounts.entry(Arc::clone(account)).or_default())
    }
}

/// What a terminal's snapshot says about its orders.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Open positions.
    pub positions: Vec<Position>,
    /// Pending orders.
    pub pending: Vec<PendingOrder>,
    /// Recent deals.
    pub deals: Vec<Deal>,
    /// The account's money, if the terminal sent it.
    pub account: Option<AccountInfo>,
}

const EPSILON: f64 = 1e-9;

/// Settles the orders whose outcome is unknown against a fresh snapshot, returning the events
/// that tell execution what happened, in a stable order (by client order id).
///
/// - Deals carrying the order's id: the order was executed; the volume not yet reported is
///   reported as a fill (at the deals' average price).
/// - A pending order carrying the id: accepted and waiting; acknowledged, still in flight.
/// - A position carrying the id but no deal (the history window missed it): filled at the
///   position's price.
/// - None of these: the order never reached the trade server; it is rejected so that a new
///   decision can be made. It is never resent.
pub fn settle_unknown(
    in_flight: &mut HashMap<String, SentOrder>,
    snapshot: &Snapshot,
) -> Vec<ExecutionEvent> {
    let mut unknown: Vec<String> =
        in_flight.iter().filter(|(_, o)| !o.outcome_known).map(|(id, _)| id.clone()).collect();
    unknown.sort();
    let mut events = Vec::new();
    for id in unknown {
        let Some(order) = in_flight.get_mut(&id) else { continue };
        let deals: Vec<&Deal> = snapshot.deals.iter().filter(|d| d.client_order_id == id).collect();
        let dealt: f64 = deals.iter().map(|d| d.volume.value).sum();
        if dealt > order.filled + EPSILON {
            let notional: f64 = deals.iter().map(|d| d.volume.value * d.price.value).sum();
            let new_volume = dealt - order.filled;
            order.filled = dealt;
            events.push(ExecutionEvent::Filled(Fill {
                chain_id: order.chain_id,
                client_order_id: id.clone(),
                ticket: deals[0].ticket,
                symbol: order.symbol.clone(),
                side: order.side,
                volume: new_volume,
                price: notional / dealt,
                time_msc: deals.iter().map(|d| d.time_msc).max().unwrap_or(0),
            }));
        } else if let Some(pending) = snapshot.pending.iter().find(|p| p.client_order_id == id) {
            order.outcome_known = true;
            order.acked = true;
            events.push(ExecutionEvent::Acked {
                chain_id: order.chain_id,
                client_order_id: id.clone(),
                ticket: pending.ticket,
                volume: order.volume,
            });
            continue;
        } else if let Some(position) = snapshot.positions.iter().find(|p| p.client_order_id == id)
            && order.filled < EPSILON
        {
            let volume = position.volume.value.min(order.volume);
            order.filled = volume;
            events.push(ExecutionEvent::Filled(Fill {
                chain_id: order.chain_id,
                client_order_id: id.clone(),
                ticket: position.ticket,
                symbol: order.symbol.clone(),
                side: match position.side {
                    WireSide::Buy => Side::Buy,
                    WireSide::Sell => Side::Sell,
                },
                volume,
                price: position.price.value,
                time_msc: 0,
            }));
        }
        let order = &in_flight[&id];
        if order.remaining() > EPSILON {
            let reason = if order.filled > EPSILON {
                format!(
                    "partly executed ({} of {} lots) before the connection was lost; the rest is not at the terminal",
                    order.filled, order.volume
                )
            } else {
                "not executed: the connection was lost before the terminal answered, and the order is in none of its positions, pending orders or recent deals".to_owned()
            };
            events.push(ExecutionEvent::Rejected {
                chain_id: order.chain_id,
                client_order_id: id.clone(),
                retcode: 0,
                reason,
            });
        }
        in_flight.remove(&id);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Px;
    use mtml_core::ChainIdGenerator;

    fn sent(volume: f64, known: bool) -> SentOrder {
        SentOrder {
            chain_id: ChainIdGenerator::with_prefix(3).next_id(),
            symbol: Symbol::new("EURUSD"),
            side: Side::Buy,
            volume,
            filled: 0.0,
            sent_ns: 1,
            outcome_known: known,
            acked: false,
            session: "s1".into(),
        }
    }

    fn deal(id: &str, volume: f64, price: f64) -> Deal {
        Deal {
            deal: 77,
            ticket: 70,
            symbol: "EURUSDm".into(),
            side: WireSide::Buy,
            volume: Px::new(volume, 2),
            price: Px::new(price, 5),
            time_msc: 5,
            client_order_id: id.into(),
        }
    }

    #[test]
    fn each_kind_of_evidence_settles_an_unknown_order() {
        let mut in_flight = HashMap::from([
            ("a".to_owned(), sent(0.2, false)),
            ("b".to_owned(), sent(0.1, false)),
            ("c".to_owned(), sent(0.1, false)),
            ("d".to_owned(), sent(0.1, false)),
            ("e".to_owned(), sent(0.3, false)),
            ("live".to_owned(), sent(0.1, true)),
        ]);
        let snapshot = Snapshot {
            deals: vec![deal("a", 0.1, 1.1), deal("a", 0.1, 1.3), deal("e", 0.1, 1.2)],
            pending: vec![PendingOrder {
                ticket: 9,
                symbol: "EURUSDm".into(),
                side: WireSide::Buy,
                order_type: "LIMIT".into(),
                volume: Px::new(0.1, 2),
                price: Px::new(1.0, 5),
                client_order_id: "b".into(),
            }],
            positions: vec![Position {
                ticket: 8,
                symbol: "EURUSDm".into(),
                side: WireSide::Buy,
                volume: Px::new(0.1, 2),
                price: Px::new(1.25, 5),
                client_order_id: "c".into(),
            }],
            account: None,
        };
        let events = settle_unknown(&mut in_flight, &snapshot);
        let summary: Vec<String> = events
            .iter()
            .map(|e| match e {
                ExecutionEvent::Filled(f) => format!("{} filled {:.1} at {:.2}", f.client_order_id, f.volume, f.price),
                ExecutionEvent::Acked { client_order_id, ticket, .. } => format!("{client_order_id} acked {ticket}"),
                ExecutionEvent::Rejected { client_order_id, .. } => format!("{client_order_id} rejected"),
                ExecutionEvent::OutcomeUnknown { client_order_id, .. } => format!("{client_order_id} unknown"),
                ExecutionEvent::TerminalPositions { .. } | ExecutionEvent::Account { .. } => "account".into(),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "a filled 0.2 at 1.20",
                "b acked 9",
                "c filled 0.1 at 1.25",
                "d rejected",
                "e filled 0.1 at 1.20",
                "e rejected",
            ]
        );
        let mut left: Vec<_> = in_flight.keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["b", "live"], "settled orders leave; the pending one waits for its fill");
        assert!(in_flight["b"].outcome_known);
    }

    #[test]
    fn a_fill_already_reported_is_not_reported_again() {
        let mut order = sent(0.2, false);
        order.filled = 0.1;
        let mut in_flight = HashMap::from([("a".to_owned(), order)]);
        let snapshot = Snapshot { deals: vec![deal("a", 0.1, 1.1), deal("a", 0.1, 1.3)], ..Snapshot::default() };
        let events = settle_unknown(&mut in_flight, &snapshot);
        let [ExecutionEvent::Filled(fill)] = events.as_slice() else { panic!("{events:?}") };
        assert!((fill.volume - 0.1).abs() < 1e-12);
    }

    #[test]
    fn resume_points_count_ticks_within_a_millisecond() {
        let p = ResumePoint::default().advance(10).advance(10).advance(10);
        assert_eq!(p, ResumePoint { time_msc: 10, count: 3 });
        assert_eq!(p.advance(11), ResumePoint { time_msc: 11, count: 1 });
    }
}
