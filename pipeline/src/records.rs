//! What the pipeline journals: each event's records as one group, which the journal commits
//! together or not at all (a fill is never there without its position and its order's state).

use mtml_core::{ExecutionEvent, OrderRequest, Tick};
use mtml_decision::{Applied, Execution, StateChange};
use mtml_journal::Record;

/// A trading state change.
pub(crate) fn state_change(change: &StateChange) -> Record {
    Record::StateChange {
        at_ms: change.at_ms,
        from: change.from.name().to_owned(),
        to: change.to.name().to_owned(),
        reason: change.reason.clone(),
    }
}

/// A decision that led to an attempt (`order`, or `risk:<rejection>`).
pub(crate) fn decision(tick: &Tick, probability_up: f32, target_lots: f64, outcome: String) -> Record {
    Record::Decision {
        chain_id: tick.chain_id.to_string(),
        symbol: tick.symbol.to_string(),
        time_ms: tick.time_msc,
        probability: f64::from(probability_up),
        target_lots,
        outcome,
    }
}

/// An order handed to the bridge.
pub(crate) fn order_created(order: &OrderRequest, created_ms: i64) -> Record {
    Record::OrderCreated {
        client_order_id: order.client_order_id.clone(),
        chain_id: order.chain_id.to_string(),
        symbol: order.symbol.to_string(),
        side: order.side.name().into(),
        volume: order.volume,
        decision_price: order.decision_price,
        created_ms,
    }
}

/// The records of an execution event as the book applied it: the order's new state, for a fill
/// the fill and the position it left, for a terminal's snapshot the orders the journal may not
/// have (sent just before a crash, recorded if absent) and every corrected position.
pub(crate) fn execution_event(event: &ExecutionEvent, applied: &Applied, book: &Execution, now_ms: i64) -> Vec<Record> {
    let mut group = Vec::new();
    match (event, applied) {
        (ExecutionEvent::TerminalPositions { executed, .. }, Applied::Reconciled(differences)) => {
            for order in executed {
                group.push(Record::ExecutedOrder {
                    client_order_id: order.client_order_id.clone(),
                    symbol: order.symbol.to_string(),
                    lots: order.lots,
                    average_price: order.average_price,
                    time_ms: order.time_msc,
                });
            }
            for difference in differences {
                let position = book.position(&difference.symbol);
                group.push(Record::Position {
                    symbol: difference.symbol.to_string(),
                    lots: position.lots,
                    average_price: position.average_price,
                    realized_pnl: position.realized_pnl,
                    at_ms: now_ms,
                });
            }
        }
        (ExecutionEvent::Filled(fill), Applied::Fill(applied)) => {
            group.push(Record::Fill {
                client_order_id: fill.client_order_id.clone(),
                chain_id: fill.chain_id.to_string(),
                ticket: i64::try_from(fill.ticket).unwrap_or(i64::MAX),
                symbol: fill.symbol.to_string(),
                side: fill.side.name().into(),
                volume: fill.volume,
                price: fill.price,
                time_ms: fill.time_msc,
                slippage: applied.slippage,
                realized_pnl: applied.realized_pnl,
            });
            group.push(Record::Position {
                symbol: fill.symbol.to_string(),
                lots: applied.position.lots,
                average_price: applied.position.average_price,
                realized_pnl: applied.position.realized_pnl,
                at_ms: fill.time_msc,
            });
            group.push(Record::OrderState {
                client_order_id: fill.client_order_id.clone(),
                state: applied.state.into(),
                filled: applied.filled,
                at_ms: now_ms,
            });
        }
        (_, Applied::OrderState { client_order_id, state, filled }) => {
            group.push(Record::OrderState {
                client_order_id: client_order_id.clone(),
                state: (*state).into(),
                filled: *filled,
                at_ms: now_ms,
            });
        }
        _ => {}
    }
    group
}
