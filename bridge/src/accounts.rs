//! What the bridge remembers about an account across connections: where its tick stream
//! stopped, and the orders it sent whose outcome is not settled yet.
//!
//! A connection can die between the bridge writing an order and the terminal's answer. Such an
//! order is not resent: execution is told its outcome is unknown, and the terminal's next
//! snapshot (positions, pending orders, recent deals, each carrying the client order id from the
//! order comment) goes to execution, which settles it (`mtml_core::reconcile::settle`). The
//! bridge keeps only the conversation: which connection an order went out on, when, and whether
//! it is answered and complete.

use std::collections::HashMap;
use std::sync::Arc;

use mtml_core::{ChainId, Symbol};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use mtml_core::reconcile::{BookEntry, TerminalBooks};

use crate::wire::{AccountInfo, Deal, PendingOrder, Position, Px, WireSide};

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

/// An order the bridge wrote to a terminal whose conversation is not over: not answered yet, or
/// answered and not completely filled. Execution holds the order itself.
#[derive(Debug, Clone, PartialEq)]
pub struct SentOrder {
    /// Chain of the order.
    pub chain_id: ChainId,
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

/// One account's memory.
#[derive(Debug, Default)]
pub struct AccountState {
    /// Resume point per broker symbol, shared with the connection streaming them so that a new
    /// connection always sees where the old one stopped.
    pub resume: Arc<Mutex<HashMap<String, ResumePoint>>>,
    /// Conversations in progress by client order id.
    pub in_flight: HashMap<String, SentOrder>,
    /// The connection currently serving the account, to close it when the EA reconnects (an EA
    /// reload can leave the old socket half-open).
    pub session: Option<(String, CancellationToken)>,
    /// When its last connection ended, to tell how long it was gone when it comes back.
    pub lost_at: Option<std::time::Instant>,
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

impl Snapshot {
    /// The snapshot's books with canonical symbols, for reconciliation.
    pub fn books(&self, canonical: impl Fn(&str) -> Symbol) -> TerminalBooks {
        let entry = |id: &str, ticket, symbol: &str, side: WireSide, volume: Px, price: Px, time_msc| BookEntry {
            client_order_id: id.to_owned(),
            ticket,
            symbol: canonical(symbol),
            side: side.into(),
            volume: volume.value,
            price: price.value,
            time_msc,
        };
        TerminalBooks {
            positions: (self.positions.iter())
                .map(|p| entry(&p.client_order_id, p.ticket, &p.symbol, p.side, p.volume, p.price, 0))
                .collect(),
            pending: (self.pending.iter())
                .map(|p| entry(&p.client_order_id, p.ticket, &p.symbol, p.side, p.volume, p.price, 0))
                .collect(),
            deals: (self.deals.iter())
                .map(|d| entry(&d.client_order_id, d.ticket, &d.symbol, d.side, d.volume, d.price, d.time_msc))
                .collect(),
        }
    }
}

/// Ends the conversations a lost connection left with an unknown outcome, now that the
/// terminal's books are in (execution settles the orders themselves from them), except for an
/// order the books hold as pending: it goes on, answered, its fills to come. Returns how many
/// ended.
pub fn close_unknown(in_flight: &mut HashMap<String, SentOrder>, books: &TerminalBooks) -> usize {
    let before = in_flight.len();
    in_flight.retain(|id, order| {
        if order.outcome_known {
            return true;
        }
        if !books.pending.iter().any(|p| p.client_order_id == *id) {
            return false;
        }
        let dealt: f64 = books.deals.iter().filter(|d| d.client_order_id == *id).map(|d| d.volume).sum();
        order.filled = order.filled.max(dealt);
        order.outcome_known = true;
        order.acked = true;
        true
    });
    before - in_flight.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtml_core::{ChainIdGenerator, Side};

    fn sent(volume: f64, known: bool) -> SentOrder {
        SentOrder {
            chain_id: ChainIdGenerator::with_prefix(3).next_id(),
            volume,
            filled: 0.0,
            sent_ns: 1,
            outcome_known: known,
            acked: false,
            session: "s1".into(),
        }
    }

    fn line(id: &str, ticket: u64) -> BookEntry {
        BookEntry {
            client_order_id: id.into(),
            ticket,
            symbol: Symbol::new("EURUSD"),
            side: Side::Buy,
            volume: 0.1,
            price: 1.1,
            time_msc: 5,
        }
    }

    #[test]
    fn lost_conversations_end_with_the_books_except_a_pending_order() {
        let mut in_flight = HashMap::from([
            ("a".to_owned(), sent(0.3, false)),
            ("b".to_owned(), sent(0.3, false)),
            ("d".to_owned(), sent(0.1, false)),
            ("live".to_owned(), sent(0.1, true)),
        ]);
        let books = TerminalBooks { deals: vec![line("a", 70), line("b", 9)], pending: vec![line("b", 9)], ..TerminalBooks::default() };
        assert_eq!(close_unknown(&mut in_flight, &books), 2, "a and d end: execution settles them");
        let mut left: Vec<_> = in_flight.keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["b", "live"], "the pending one waits for its fills; the live one is untouched");
        assert!(in_flight["b"].outcome_known && in_flight["b"].acked);
        assert!((in_flight["b"].filled - 0.1).abs() < 1e-12, "its deals so far count towards completion");
    }

    #[test]
    fn snapshot_books_name_canonical_symbols() {
        let snapshot = Snapshot {
            deals: vec![Deal {
                deal: 77,
                ticket: 70,
                symbol: "EURUSDm".into(),
                side: WireSide::Sell,
                volume: Px::new(0.2, 2),
                price: Px::new(1.1, 5),
                time_msc: 5,
                client_order_id: "a".into(),
            }],
            ..Snapshot::default()
        };
        let books = snapshot.books(|broker| Symbol::new(broker.trim_end_matches('m')));
        assert_eq!(books.deals, [BookEntry { side: Side::Sell, volume: 0.2, ..line("a", 70) }]);
    }

    #[test]
    fn resume_points_count_ticks_within_a_millisecond() {
        let p = ResumePoint::default().advance(10).advance(10).advance(10);
        assert_eq!(p, ResumePoint { time_msc: 10, count: 3 });
        assert_eq!(p.advance(11), ResumePoint { time_msc: 11, count: 1 });
    }
}
