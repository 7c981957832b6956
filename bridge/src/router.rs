//! Routes orders from execution to the terminal connection that owns the account.

use std::collections::HashSet;
use std::sync::Arc;

use mtml_core::{ExecutionEvent, OrderRequest, Symbol};
use parking_lot::RwLock;
use tokio::sync::mpsc;

/// A terminal connection's inbox for orders, and what it trades.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) session: String,
    pub(crate) account: Arc<str>,
    pub(crate) symbols: HashSet<Symbol>,
    pub(crate) orders: mpsc::UnboundedSender<OrderRequest>,
}

/// Orders go to the connection of the order's account (or, when the order names none, the one
/// that streams the symbol); with none connected, the order is refused at once with a reason
/// rather than queued for a terminal that may never come.
#[derive(Debug, Clone)]
pub struct OrderRouter {
    routes: Arc<RwLock<Vec<Route>>>,
    events: mpsc::Sender<ExecutionEvent>,
}

impl mtml_core::OrderSink for OrderRouter {
    fn submit(&mut self, order: OrderRequest) {
        OrderRouter::submit(self, order);
    }
}

impl OrderRouter {
    /// A router that reports refusals on `events`.
    pub fn new(events: mpsc::Sender<ExecutionEvent>) -> Self {
        Self { routes: Arc::default(), events }
    }

    /// Hands an order to its terminal. Never blocks: safe from the pipeline thread and async code.
    pub fn submit(&self, order: OrderRequest) {
        let route = self
            .routes
            .read()
            .iter()
            .rev()
            .find(|route| {
                route.symbols.contains(&order.symbol)
                    && order.account.as_ref().is_none_or(|account| *account == route.account)
            })
            .cloned();
        let reason = match route {
            Some(route) => match route.orders.send(order) {
                Ok(()) => return,
                Err(mpsc::error::SendError(order)) => {
                    self.refuse(order, format!("terminal session {} has closed", route.session));
                    return;
                }
            },
            None => match &order.account {
                Some(account) => {
                    format!("no terminal of account {account} connected for symbol {}", order.symbol)
                }
                None => format!("no terminal connected for symbol {}", order.symbol),
            },
        };
        self.refuse(order, reason);
    }

    /// Refuses an order with a reason, as an execution event.
    pub(crate) fn refuse(&self, order: OrderRequest, reason: String) {
        tracing::warn!(chain_id = %order.chain_id, symbol = %order.symbol, %reason, "order refused by bridge");
        let event = ExecutionEvent::Rejected {
            chain_id: order.chain_id,
            client_order_id: order.client_order_id,
            retcode: 0,
            reason,
        };
        if self.events.try_send(event).is_err() {
            tracing::error!("execution event channel full or closed; refusal not delivered");
        }
    }

    pub(crate) fn register(&self, route: Route) {
        self.routes.write().push(route);
    }

    pub(crate) fn unregister(&self, session: &str) {
        self.routes.write().retain(|route| route.session != session);
    }

    /// Symbols that currently have a terminal.
    pub fn routed_symbols(&self) -> Vec<Symbol> {
        let mut symbols: Vec<_> =
            self.routes.read().iter().flat_map(|r| r.symbols.iter().cloned()).collect();
        symbols.sort();
        symbols.dedup();
        symbols
    }
}
