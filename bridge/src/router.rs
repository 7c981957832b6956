//! Routes orders from execution to the terminal connection that trades the symbol.

use std::collections::HashMap;
use std::sync::Arc;

use mtml_core::{ExecutionEvent, OrderRequest, Symbol};
use parking_lot::RwLock;
use tokio::sync::mpsc;

/// A terminal connection's inbox for orders, with what the bridge needs to write them.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) session: String,
    pub(crate) orders: mpsc::UnboundedSender<OrderRequest>,
}

/// Orders go to the connection that registered the symbol; with none, the order is rejected at
/// once with a reason rather than queued for a terminal that may never come.
#[derive(Debug, Clone)]
pub struct OrderRouter {
    routes: Arc<RwLock<HashMap<Symbol, Route>>>,
    events: mpsc::Sender<ExecutionEvent>,
}

impl OrderRouter {
    /// A router that reports refusals on `events`.
    pub fn new(events: mpsc::Sender<ExecutionEvent>) -> Self {
        Self { routes: Arc::default(), events }
    }

    /// Hands an order to its terminal. Never blocks: safe from the pipeline thread and async code.
    pub fn submit(&self, order: OrderRequest) {
        let route = self.routes.read().get(&order.symbol).cloned();
        let refusal = match route {
            Some(route) => match route.orders.send(order) {
                Ok(()) => return,
                Err(mpsc::error::SendError(order)) => {
                    (order, format!("terminal session {} has closed", route.session))
                }
            },
            None => {
                let reason = format!("no terminal connected for symbol {}", order.symbol);
                (order, reason)
            }
        };
        let (order, reason) = refusal;
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

    pub(crate) fn register(&self, symbol: Symbol, route: Route) {
        self.routes.write().insert(symbol, route);
    }

    /// Removes the session's routes, unless another session has taken the symbol over since.
    pub(crate) fn unregister(&self, session: &str) {
        self.routes.write().retain(|_, route| route.session != session);
    }

    /// Symbols that currently have a terminal.
    pub fn routed_symbols(&self) -> Vec<Symbol> {
        let mut symbols: Vec<_> = self.routes.read().keys().cloned().collect();
        symbols.sort();
        symbols
    }
}
