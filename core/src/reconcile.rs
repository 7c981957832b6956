//! Reconciliation: what a terminal's books say about mtml's orders and positions.
//!
//! Every rule that compares mtml's view with a terminal's lives here, as pure functions over
//! canonical types (the bridge translates the EA's snapshot into [`TerminalBooks`]; execution
//! owns the positions it corrects):
//! - [`settle`]: an order whose outcome was lost (a dead connection, a crashed run) settled from
//!   the terminal's deals, pending orders and positions. It is never resent.
//! - [`net_positions`]: the terminal's positions, net per symbol.
//! - [`executed_orders`]: the deal history, net per client order id (what a crashed run may not
//!   have journaled).
//! - [`differences`]: where mtml's positions and the terminal's disagree.

use std::collections::{BTreeMap, HashMap};

use crate::{ChainId, ExecutedOrder, ExecutionEvent, Fill, Side, Symbol};

/// Volumes closer than this are equal.
const EPSILON: f64 = 1e-9;

/// One line of a terminal's books (a position, a pending order or a deal), its symbol canonical.
#[derive(Debug, Clone, PartialEq)]
pub struct BookEntry {
    /// The client order id from the order's comment; empty for trades mtml did not place.
    pub client_order_id: String,
    /// The terminal's ticket (of the position, pending order, or the deal's order).
    pub ticket: u64,
    /// Canonical symbol.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// Lots.
    pub volume: f64,
    /// Open, limit or deal price.
    pub price: f64,
    /// Deal time, UTC epoch ms (0 where the terminal gives none).
    pub time_msc: i64,
}

/// A terminal's books as one snapshot (a connect's, or the answer to a SYNC) gives them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TerminalBooks {
    /// Open positions.
    pub positions: Vec<BookEntry>,
    /// Pending orders.
    pub pending: Vec<BookEntry>,
    /// Recent deals.
    pub deals: Vec<BookEntry>,
}

impl TerminalBooks {
    /// Only the lines that carry a client order id: mtml's orders.
    pub fn mtml_only(&self) -> TerminalBooks {
        let mine = |lines: &[BookEntry]| lines.iter().filter(|l| !l.client_order_id.is_empty()).cloned().collect();
        TerminalBooks { positions: mine(&self.positions), pending: mine(&self.pending), deals: mine(&self.deals) }
    }
}

/// An order whose outcome is unknown, as the one settling it knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsettledOrder {
    /// Chain of the order.
    pub chain_id: ChainId,
    /// The order's idempotency key.
    pub client_order_id: String,
    /// Canonical symbol.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// Lots ordered.
    pub volume: f64,
    /// Lots already reported filled.
    pub filled: f64,
}

/// What the books made of an unknown order.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// What to tell execution, in order.
    pub events: Vec<ExecutionEvent>,
    /// Lots filled now, those reported before included.
    pub filled: f64,
    /// The order waits at the terminal as a pending order (acknowledged, still in flight);
    /// otherwise it has left: filled, or the rest rejected.
    pub pending: bool,
}

/// Settles an unknown order from the terminal's books:
/// - deals carrying its id: executed; the volume not yet reported is reported as one fill at
///   the deals' average price;
/// - a pending order carrying its id: accepted and waiting, acknowledged, still in flight;
/// - a position carrying its id but no deal (the history window missed it): filled at the
///   position's price;
/// - none of these: it never reached the trade server.
///
/// Whatever is still missing then is rejected, so that a new decision can be made.
pub fn settle(order: &UnsettledOrder, books: &TerminalBooks) -> Settlement {
    let id = order.client_order_id.as_str();
    let mut settlement = Settlement { events: Vec::new(), filled: order.filled, pending: false };
    let deals: Vec<&BookEntry> = books.deals.iter().filter(|d| d.client_order_id == id).collect();
    let dealt: f64 = deals.iter().map(|d| d.volume).sum();
    let fill = |ticket, side, volume, price, time_msc| {
        ExecutionEvent::Filled(Fill {
            chain_id: order.chain_id,
            client_order_id: id.to_owned(),
            ticket,
            symbol: order.symbol.clone(),
            side,
            volume,
            price,
            time_msc,
        })
    };
    if dealt > order.filled + EPSILON {
        let notional: f64 = deals.iter().map(|d| d.volume * d.price).sum();
        let time_msc = deals.iter().map(|d| d.time_msc).max().unwrap_or(0);
        settlement.events.push(fill(deals[0].ticket, order.side, dealt - order.filled, notional / dealt, time_msc));
        settlement.filled = dealt;
    } else if let Some(pending) = books.pending.iter().find(|p| p.client_order_id == id) {
        settlement.events.push(ExecutionEvent::Acked {
            chain_id: order.chain_id,
            client_order_id: id.to_owned(),
            ticket: pending.ticket,
            volume: order.volume,
        });
        settlement.pending = true;
        return settlement;
    } else if let Some(position) = books.positions.iter().find(|p| p.client_order_id == id)
        && order.filled < EPSILON
    {
        let volume = position.volume.min(order.volume);
        settlement.events.push(fill(position.ticket, position.side, volume, position.price, 0));
        settlement.filled = volume;
    }
    if order.volume - settlement.filled > EPSILON {
        let reason = if settlement.filled > EPSILON {
            format!(
                "partly executed ({} of {} lots) before the connection was lost; the rest is not at the terminal",
                settlement.filled, order.volume
            )
        } else {
            "not executed: the connection was lost before the terminal answered, and the order is in none of its positions, pending orders or recent deals".to_owned()
        };
        settlement.events.push(ExecutionEvent::Rejected {
            chain_id: order.chain_id,
            client_order_id: id.to_owned(),
            retcode: 0,
            reason,
        });
    }
    settlement
}

/// The terminal's positions net per symbol, in symbol order: (symbol, signed lots, volume-weighted
/// open price of all its positions).
pub fn net_positions(books: &TerminalBooks) -> Vec<(Symbol, f64, f64)> {
    // Net lots, total volume and notional per symbol.
    let mut net: BTreeMap<&Symbol, (f64, f64, f64)> = BTreeMap::new();
    for position in &books.positions {
        let (lots, volume, notional) = net.entry(&position.symbol).or_default();
        *lots += position.side.sign() * position.volume;
        *volume += position.volume;
        *notional += position.volume * position.price;
    }
    net.into_iter()
        .map(|(symbol, (lots, volume, notional))| {
            let average = if volume > 0.0 { notional / volume } else { 0.0 };
            (symbol.clone(), lots, average)
        })
        .collect()
}

/// The orders in a deal history, net per client order id, in order of their first deal. Deals
/// without a client order id (trades by hand, other experts) are not mtml's.
pub fn executed_orders(deals: &[BookEntry]) -> Vec<ExecutedOrder> {
    // Per order: the order so far, its volume dealt and its notional.
    let mut orders: Vec<(ExecutedOrder, f64, f64)> = Vec::new();
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for deal in deals.iter().filter(|d| !d.client_order_id.is_empty()) {
        let index = *index_of.entry(&deal.client_order_id).or_insert_with(|| {
            let order = ExecutedOrder {
                client_order_id: deal.client_order_id.clone(),
                symbol: deal.symbol.clone(),
                lots: 0.0,
                average_price: 0.0,
                time_msc: deal.time_msc,
            };
            orders.push((order, 0.0, 0.0));
            orders.len() - 1
        });
        let (order, volume, notional) = &mut orders[index];
        order.lots += deal.side.sign() * deal.volume;
        *volume += deal.volume;
        *notional += deal.volume * deal.price;
        order.average_price = *notional / *volume;
        order.time_msc = order.time_msc.max(deal.time_msc);
    }
    orders.into_iter().map(|(order, _, _)| order).collect()
}

/// A position mtml and a terminal disagreed on.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Symbol.
    pub symbol: Symbol,
    /// mtml's lots.
    pub mtml_lots: f64,
    /// The terminal's lots.
    pub terminal_lots: f64,
}

/// Where mtml's positions (`ours`: symbol and signed lots) and the terminal's net positions
/// differ, in symbol order. A symbol that is `busy` (an order in flight, whose fills may not be
/// reported yet) is left out.
pub fn differences<'a>(
    ours: impl IntoIterator<Item = (&'a Symbol, f64)>,
    terminal: &[(Symbol, f64, f64)],
    busy: impl Fn(&Symbol) -> bool,
) -> Vec<Difference> {
    let mut lots: BTreeMap<&Symbol, (f64, f64)> = BTreeMap::new();
    for (symbol, ours) in ours {
        lots.entry(symbol).or_default().0 = ours;
    }
    for (symbol, theirs, _) in terminal {
        lots.entry(symbol).or_default().1 = *theirs;
    }
    lots.into_iter()
        .filter(|(symbol, (ours, theirs))| (ours - theirs).abs() > EPSILON && !busy(symbol))
        .map(|(symbol, (mtml_lots, terminal_lots))| Difference { symbol: symbol.clone(), mtml_lots, terminal_lots })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChainIdGenerator;
    use proptest::prelude::*;

    fn unknown(id: &str, volume: f64, filled: f64) -> UnsettledOrder {
        UnsettledOrder {
            chain_id: ChainIdGenerator::with_prefix(3).next_id(),
            client_order_id: id.into(),
            symbol: Symbol::new("EURUSD"),
            side: Side::Buy,
            volume,
            filled,
        }
    }

    fn entry(id: &str, ticket: u64, volume: f64, price: f64) -> BookEntry {
        BookEntry {
            client_order_id: id.into(),
            ticket,
            symbol: Symbol::new("EURUSD"),
            side: Side::Buy,
            volume,
            price,
            time_msc: 5,
        }
    }

    fn summary(events: &[ExecutionEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                ExecutionEvent::Filled(f) => format!("{} filled {:.1} at {:.2}", f.client_order_id, f.volume, f.price),
                ExecutionEvent::Acked { client_order_id, ticket, .. } => format!("{client_order_id} acked {ticket}"),
                ExecutionEvent::Rejected { client_order_id, .. } => format!("{client_order_id} rejected"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn each_kind_of_evidence_settles_an_unknown_order() {
        let books = TerminalBooks {
            deals: vec![entry("a", 70, 0.1, 1.1), entry("a", 70, 0.1, 1.3), entry("e", 71, 0.1, 1.2)],
            pending: vec![entry("b", 9, 0.1, 1.0)],
            positions: vec![entry("c", 8, 0.1, 1.25)],
        };
        let orders = [unknown("a", 0.2, 0.0), unknown("b", 0.1, 0.0), unknown("c", 0.1, 0.0), unknown("d", 0.1, 0.0), unknown("e", 0.3, 0.0)];
        let settled: Vec<Settlement> = orders.iter().map(|o| settle(o, &books)).collect();
        let events: Vec<ExecutionEvent> = settled.iter().flat_map(|s| s.events.clone()).collect();
        assert_eq!(
            summary(&events),
            [
                "a filled 0.2 at 1.20",
                "b acked 9",
                "c filled 0.1 at 1.25",
                "d rejected",
                "e filled 0.1 at 1.20",
                "e rejected",
            ]
        );
        let pending: Vec<bool> = settled.iter().map(|s| s.pending).collect();
        assert_eq!(pending, [false, true, false, false, false], "only the pending order waits for its fill");
    }

    #[test]
    fn a_fill_already_reported_is_not_reported_again() {
        let books = TerminalBooks { deals: vec![entry("a", 70, 0.1, 1.1), entry("a", 70, 0.1, 1.3)], ..TerminalBooks::default() };
        let settlement = settle(&unknown("a", 0.2, 0.1), &books);
        let [ExecutionEvent::Filled(fill)] = settlement.events.as_slice() else { panic!("{settlement:?}") };
        assert!((fill.volume - 0.1).abs() < 1e-12);
        assert!((settlement.filled - 0.2).abs() < 1e-12);
    }

    #[test]
    fn net_positions_and_executed_orders_sum_per_symbol_and_per_order() {
        let mut sell = entry("s", 3, 0.3, 1.3);
        sell.side = Side::Sell;
        let mut by_hand = entry("", 4, 1.0, 1.0);
        by_hand.symbol = Symbol::new("GBPUSD");
        let books = TerminalBooks { positions: vec![entry("a", 1, 0.1, 1.1), sell.clone(), by_hand.clone()], ..TerminalBooks::default() };
        let net = net_positions(&books);
        assert_eq!(net.len(), 2);
        assert_eq!(net[0].0, Symbol::new("EURUSD"));
        assert!((net[0].1 - -0.2).abs() < 1e-12 && (net[0].2 - 1.25).abs() < 1e-12, "{net:?}");
        assert_eq!(net[1], (Symbol::new("GBPUSD"), 1.0, 1.0), "trades by hand count in the books");
        let executed = executed_orders(&[sell.clone(), entry("a", 1, 0.1, 1.1), by_hand, sell]);
        let ids: Vec<(&str, f64)> = executed.iter().map(|o| (o.client_order_id.as_str(), o.lots)).collect();
        assert_eq!(ids, [("s", -0.6), ("a", 0.1)], "first-deal order; deals by hand are not mtml's");
    }

    fn side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell)]
    }

    /// Lots in hundredths, as terminals count them.
    fn lots(max: u32) -> impl Strategy<Value = f64> {
        (1..=max).prop_map(|n| f64::from(n) / 100.0)
    }

    /// A line of the books: client order id "" (by hand), "a", "b" or "c".
    fn line() -> impl Strategy<Value = BookEntry> {
        (0..4usize, side(), lots(50), 10_000u32..12_000).prop_map(|(id, side, volume, price)| BookEntry {
            client_order_id: ["", "a", "b", "c"][id].to_owned(),
            ticket: id as u64,
            symbol: Symbol::new(["EURUSD", "GBPUSD", "USDJPY", "EURUSD"][id]),
            side,
            volume,
            price: f64::from(price) / 10_000.0,
            time_msc: i64::from(price),
        })
    }

    fn books() -> impl Strategy<Value = TerminalBooks> {
        let lines = || proptest::collection::vec(line(), 0..6);
        (lines(), lines(), lines()).prop_map(|(positions, pending, deals)| TerminalBooks { positions, pending, deals })
    }

    proptest! {
        /// An unknown order ends either waiting at the terminal (acknowledged, nothing filled
        /// beyond what was reported) or settled whole: what the events fill plus what was
        /// reported before, plus what is rejected, is the order's volume or the deals' volume.
        #[test]
        fn settling_accounts_for_every_lot_once(
            books in books(),
            volume in lots(60),
            reported_share in 0u32..=100,
            id in 1..4usize,
        ) {
            let id = ["", "a", "b", "c"][id];
            let filled = (volume * f64::from(reported_share)).round() / 100.0;
            let order = unknown(id, volume, filled.min(volume));
            let settlement = settle(&order, &books);
            let fills: f64 = settlement.events.iter().filter_map(|e| match e {
                ExecutionEvent::Filled(fill) => Some(fill.volume),
                _ => None,
            }).sum();
            let rejected = settlement.events.iter().any(|e| matches!(e, ExecutionEvent::Rejected { .. }));
            prop_assert!((order.filled + fills - settlement.filled).abs() < 1e-9);
            prop_assert!(settlement.events.iter().all(|e| e.chain_id() == Some(order.chain_id)));
            if settlement.pending {
                prop_assert!(fills == 0.0 && !rejected);
                prop_assert!(books.pending.iter().any(|p| p.client_order_id == id));
            } else {
                prop_assert_eq!(rejected, settlement.filled < order.volume - 1e-9, "{:?}", settlement);
            }
            let dealt: f64 = books.deals.iter().filter(|d| d.client_order_id == id).map(|d| d.volume).sum();
            if dealt > order.filled + 1e-9 {
                prop_assert!((settlement.filled - dealt).abs() < 1e-9, "the deals are the truth");
            } else if !settlement.pending {
                prop_assert!(settlement.filled <= order.volume + 1e-9, "a position never fills more than ordered");
            }
        }

        /// Net positions keep every lot of the books, and executed orders every lot of mtml's deals.
        #[test]
        fn netting_keeps_every_lot(books in books()) {
            let signed = |entries: &[BookEntry], mine: bool| -> f64 {
                entries.iter().filter(|e| !mine || !e.client_order_id.is_empty()).map(|e| e.side.sign() * e.volume).sum()
            };
            let net: f64 = net_positions(&books).iter().map(|(_, lots, _)| lots).sum();
            prop_assert!((net - signed(&books.positions, false)).abs() < 1e-9);
            for (_, _, price) in net_positions(&books) {
                prop_assert!((0.0..=1.2).contains(&price));
            }
            let executed: f64 = executed_orders(&books.deals).iter().map(|o| o.lots).sum();
            prop_assert!((executed - signed(&books.deals, true)).abs() < 1e-9);
        }

        /// Adopting the terminal's lots where they differ leaves no difference, and a busy
        /// symbol is never reported.
        #[test]
        fn adopting_the_differences_agrees(books in books(), ours in proptest::collection::vec((0..3usize, -50i32..50), 0..4), busy in 0..4usize) {
            let names = ["EURUSD", "GBPUSD", "USDJPY"];
            let mut mine: BTreeMap<Symbol, f64> = ours.iter().map(|(i, l)| (Symbol::new(names[*i]), f64::from(*l) / 100.0)).collect();
            let terminal = net_positions(&books);
            let is_busy = |s: &Symbol| names.get(busy).is_some_and(|b| s.as_str() == *b);
            let found = differences(mine.iter().map(|(s, l)| (s, *l)), &terminal, is_busy);
            prop_assert!(found.iter().all(|d| !is_busy(&d.symbol)));
            for difference in &found {
                mine.insert(difference.symbol.clone(), difference.terminal_lots);
            }
            prop_assert!(differences(mine.iter().map(|(s, l)| (s, *l)), &terminal, is_busy).is_empty());
        }
    }
}
