//! Conversions between protobuf messages and `mtml-core` domain types, at the service edges.

use std::sync::Arc;

use mtml_core::reconcile::{BookEntry, TerminalBooks};
use mtml_core::{ChainId, ExecutedOrder, ExecutionEvent, Fill, OrderRequest, OrderType, Side, Symbol, Tick};

use crate::v1;

/// Why a protobuf message cannot become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A chain id that is not 16 non-zero bytes.
    #[error("{0}: chain id must be 16 bytes and not all zero")]
    ChainId(&'static str),
    /// A required field is unset.
    #[error("{0} is required")]
    Missing(&'static str),
}

impl From<ChainId> for v1::ChainId {
    fn from(id: ChainId) -> Self {
        Self { trace_id: id.to_bytes().to_vec() }
    }
}

fn chain_id(id: Option<&v1::ChainId>, what: &'static str) -> Result<ChainId, ConvertError> {
    id.and_then(|id| ChainId::from_slice(&id.trace_id)).ok_or(ConvertError::ChainId(what))
}

fn side_to_proto(side: Side) -> i32 {
    match side {
        Side::Buy => v1::Side::Buy as i32,
        Side::Sell => v1::Side::Sell as i32,
    }
}

fn side_from_proto(side: i32) -> Result<Side, ConvertError> {
    match v1::Side::try_from(side) {
        Ok(v1::Side::Buy) => Ok(Side::Buy),
        Ok(v1::Side::Sell) => Ok(Side::Sell),
        _ => Err(ConvertError::Missing("side")),
    }
}

impl From<&Tick> for v1::Tick {
    fn from(tick: &Tick) -> Self {
        Self {
            chain_id: Some(tick.chain_id.into()),
            symbol: tick.symbol.to_string(),
            time_msc: tick.time_msc,
            bid: tick.bid,
            ask: tick.ask,
            seq: tick.seq,
            terminal: tick.terminal.to_string(),
            bridge_received_ns: tick.received_ns,
        }
    }
}

impl TryFrom<v1::Tick> for Tick {
    type Error = ConvertError;

    fn try_from(tick: v1::Tick) -> Result<Self, Self::Error> {
        Ok(Self {
            chain_id: chain_id(tick.chain_id.as_ref(), "tick")?,
            symbol: Symbol::new(&tick.symbol),
            time_msc: tick.time_msc,
            bid: tick.bid,
            ask: tick.ask,
            seq: tick.seq,
            terminal: Arc::from(tick.terminal),
            received_ns: tick.bridge_received_ns,
        })
    }
}

impl From<&OrderRequest> for v1::OrderCommand {
    fn from(order: &OrderRequest) -> Self {
        Self {
            chain_id: Some(order.chain_id.into()),
            client_order_id: order.client_order_id.clone(),
            symbol: order.symbol.to_string(),
            side: side_to_proto(order.side),
            order_type: match order.order_type {
                OrderType::Market => v1::OrderType::Market,
                OrderType::Limit => v1::OrderType::Limit,
                OrderType::Stop => v1::OrderType::Stop,
            } as i32,
            volume: order.volume,
            price: order.price,
            stop_loss: 0.0,
            take_profit: 0.0,
            origin_received_ns: order.origin_received_ns,
            market_time_msc: order.market_time_msc,
            decision_price: order.decision_price,
            account: order.account.as_deref().unwrap_or_default().to_owned(),
        }
    }
}

impl TryFrom<v1::OrderCommand> for OrderRequest {
    type Error = ConvertError;

    fn try_from(order: v1::OrderCommand) -> Result<Self, Self::Error> {
        Ok(Self {
            chain_id: chain_id(order.chain_id.as_ref(), "order")?,
            client_order_id: order.client_order_id,
            account: (!order.account.is_empty()).then(|| Arc::from(order.account)),
            symbol: Symbol::new(&order.symbol),
            side: side_from_proto(order.side)?,
            order_type: match v1::OrderType::try_from(order.order_type) {
                Ok(v1::OrderType::Market) => OrderType::Market,
                Ok(v1::OrderType::Limit) => OrderType::Limit,
                Ok(v1::OrderType::Stop) => OrderType::Stop,
                _ => return Err(ConvertError::Missing("order_type")),
            },
            volume: order.volume,
            price: order.price,
            decision_price: order.decision_price,
            origin_received_ns: order.origin_received_ns,
            market_time_msc: order.market_time_msc,
        })
    }
}

impl From<&ExecutionEvent> for v1::ExecutionEvent {
    fn from(event: &ExecutionEvent) -> Self {
        use v1::execution_event::Event;
        let (client_order_id, inner) = match event {
            ExecutionEvent::Acked { client_order_id, ticket, volume, .. } => (
                client_order_id.clone(),
                Event::Acked(v1::OrderAcked { ticket: *ticket, volume: *volume }),
            ),
            ExecutionEvent::Rejected { client_order_id, retcode, reason, .. } => (
                client_order_id.clone(),
                Event::Rejected(v1::OrderRejected { retcode: *retcode, reason: reason.clone() }),
            ),
            ExecutionEvent::OutcomeUnknown { client_order_id, account, .. } => {
                (client_order_id.clone(), Event::OutcomeUnknown(v1::OrderOutcomeUnknown { account: account.to_string() }))
            }
            ExecutionEvent::Account { account, leverage, balance, equity, margin, free_margin } => (
                String::new(),
                Event::Account(v1::AccountUpdate {
                    account: account.to_string(),
                    leverage: *leverage,
                    balance: *balance,
                    equity: *equity,
                    margin: *margin,
                    free_margin: *free_margin,
                }),
            ),
            ExecutionEvent::TerminalPositions { account, positions, executed, evidence, symbols } => (
                String::new(),
                Event::TerminalPositions(v1::TerminalPositions {
                    account: account.to_string(),
                    positions: positions
                        .iter()
                        .map(|(symbol, lots, average_price)| v1::NetPosition {
                            symbol: symbol.to_string(),
                            lots: *lots,
                            average_price: *average_price,
                        })
                        .collect(),
                    executed: executed
                        .iter()
                        .map(|order| v1::ExecutedOrder {
                            client_order_id: order.client_order_id.clone(),
                            symbol: order.symbol.to_string(),
                            lots: order.lots,
                            average_price: order.average_price,
                            time_ms: order.time_msc,
                        })
                        .collect(),
                    evidence_positions: evidence.positions.iter().map(book_entry_to_proto).collect(),
                    evidence_pending: evidence.pending.iter().map(book_entry_to_proto).collect(),
                    evidence_deals: evidence.deals.iter().map(book_entry_to_proto).collect(),
                    symbols: symbols.iter().map(ToString::to_string).collect(),
                }),
            ),
            ExecutionEvent::Filled(fill) => (
                fill.client_order_id.clone(),
                Event::Filled(v1::OrderFilled {
                    ticket: fill.ticket,
                    symbol: fill.symbol.to_string(),
                    side: side_to_proto(fill.side),
                    volume: fill.volume,
                    price: fill.price,
                    time_msc: fill.time_msc,
                }),
            ),
        };
        Self { chain_id: event.chain_id().map(Into::into), client_order_id, event: Some(inner) }
    }
}

impl TryFrom<v1::ExecutionEvent> for ExecutionEvent {
    type Error = ConvertError;

    fn try_from(event: v1::ExecutionEvent) -> Result<Self, Self::Error> {
        use v1::execution_event::Event;
        // Every event but the account-wide positions is about one order and carries its chain.
        let v1::ExecutionEvent { chain_id: chain, client_order_id, event } = event;
        let order_chain = || chain_id(chain.as_ref(), "execution event");
        Ok(match event.ok_or(ConvertError::Missing("event"))? {
            Event::Account(update) => ExecutionEvent::Account {
                account: Arc::from(update.account),
                leverage: update.leverage,
                balance: update.balance,
                equity: update.equity,
                margin: update.margin,
                free_margin: update.free_margin,
            },
            Event::TerminalPositions(snapshot) => ExecutionEvent::TerminalPositions {
                account: Arc::from(snapshot.account),
                positions: snapshot
                    .positions
                    .into_iter()
                    .map(|p| (Symbol::new(&p.symbol), p.lots, p.average_price))
                    .collect(),
                executed: snapshot
                    .executed
                    .into_iter()
                    .map(|o| ExecutedOrder {
                        client_order_id: o.client_order_id,
                        symbol: Symbol::new(&o.symbol),
                        lots: o.lots,
                        average_price: o.average_price,
                        time_msc: o.time_ms,
                    })
                    .collect(),
                evidence: TerminalBooks {
                    positions: snapshot.evidence_positions.into_iter().map(book_entry_from_proto).collect::<Result<_, _>>()?,
                    pending: snapshot.evidence_pending.into_iter().map(book_entry_from_proto).collect::<Result<_, _>>()?,
                    deals: snapshot.evidence_deals.into_iter().map(book_entry_from_proto).collect::<Result<_, _>>()?,
                },
                symbols: snapshot.symbols.iter().map(|s| Symbol::new(s)).collect(),
            },
            Event::Acked(ack) => ExecutionEvent::Acked {
                chain_id: order_chain()?,
                client_order_id,
                ticket: ack.ticket,
                volume: ack.volume,
            },
            Event::Rejected(reject) => ExecutionEvent::Rejected {
                chain_id: order_chain()?,
                client_order_id,
                retcode: reject.retcode,
                reason: reject.reason,
            },
            Event::OutcomeUnknown(lost) => {
                ExecutionEvent::OutcomeUnknown { chain_id: order_chain()?, client_order_id, account: Arc::from(lost.account) }
            }
            Event::Filled(fill) => ExecutionEvent::Filled(Fill {
                chain_id: order_chain()?,
                client_order_id,
                ticket: fill.ticket,
                symbol: Symbol::new(&fill.symbol),
                side: side_from_proto(fill.side)?,
                volume: fill.volume,
                price: fill.price,
                time_msc: fill.time_msc,
            }),
        })
    }
}

fn book_entry_to_proto(entry: &BookEntry) -> v1::BookEntry {
    v1::BookEntry {
        client_order_id: entry.client_order_id.clone(),
        ticket: entry.ticket,
        symbol: entry.symbol.to_string(),
        side: side_to_proto(entry.side),
        volume: entry.volume,
        price: entry.price,
        time_msc: entry.time_msc,
    }
}

fn book_entry_from_proto(entry: v1::BookEntry) -> Result<BookEntry, ConvertError> {
    Ok(BookEntry {
        side: side_from_proto(entry.side)?,
        client_order_id: entry.client_order_id,
        ticket: entry.ticket,
        symbol: Symbol::new(&entry.symbol),
        volume: entry.volume,
        price: entry.price,
        time_msc: entry.time_msc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtml_core::ChainIdGenerator;

    #[test]
    fn ticks_round_trip_through_protobuf() {
        let tick = Tick {
            chain_id: ChainIdGenerator::with_prefix(3).next_id(),
            symbol: Symbol::new("EURUSD"),
            time_msc: 1_399_230_051_815,
            bid: 1.387,
            ask: 1.3879,
            seq: 17,
            terminal: Arc::from("5000001@demo"),
            received_ns: 99,
        };
        assert_eq!(Tick::try_from(v1::Tick::from(&tick)).unwrap(), tick);
    }

    #[test]
    fn a_tick_without_chain_id_is_refused_by_name() {
        let error = Tick::try_from(v1::Tick::default()).unwrap_err();
        assert_eq!(error.to_string(), "tick: chain id must be 16 bytes and not all zero");
    }

    #[test]
    fn execution_events_round_trip_through_protobuf() {
        let fill = ExecutionEvent::Filled(Fill {
            chain_id: ChainIdGenerator::with_prefix(4).next_id(),
            client_order_id: "o-1".into(),
            ticket: 7,
            symbol: Symbol::new("EURUSD"),
            side: Side::Sell,
            volume: 0.1,
            price: 1.2,
            time_msc: 5,
        });
        assert_eq!(ExecutionEvent::try_from(v1::ExecutionEvent::from(&fill)).unwrap(), fill);
        let lost = ExecutionEvent::OutcomeUnknown {
            chain_id: ChainIdGenerator::with_prefix(4).next_id(),
            client_order_id: "o-2".into(),
            account: Arc::from("5000001@demo"),
        };
        assert_eq!(ExecutionEvent::try_from(v1::ExecutionEvent::from(&lost)).unwrap(), lost);
        let line = |id: &str, side| BookEntry {
            client_order_id: id.into(),
            ticket: 9,
            symbol: Symbol::new("EURUSD"),
            side,
            volume: 0.3,
            price: 1.1,
            time_msc: 8,
        };
        let books = ExecutionEvent::TerminalPositions {
            account: Arc::from("5000001@demo"),
            positions: vec![(Symbol::new("EURUSD"), -0.3, 1.1)],
            executed: vec![ExecutedOrder { client_order_id: "o-3".into(), symbol: Symbol::new("EURUSD"), lots: -0.3, average_price: 1.1, time_msc: 8 }],
            evidence: TerminalBooks { positions: vec![line("o-3", Side::Sell)], pending: vec![line("o-4", Side::Buy)], deals: vec![line("o-3", Side::Sell)] },
            symbols: vec![Symbol::new("EURUSD"), Symbol::new("GBPUSD")],
        };
        assert_eq!(ExecutionEvent::try_from(v1::ExecutionEvent::from(&books)).unwrap(), books, "the books' evidence and symbols cross the wire whole");
    }
}
