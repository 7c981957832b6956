//! A terminal's books (a connect's snapshot, or the answer to a SYNC) applied: unknown orders
//! settled, money and positions handed to execution, executed orders found in the deal history.

use super::*;

impl Bridge {

    /// Applies a terminal's books (from the snapshot of a connect, or the answer to a SYNC):
    /// settles the orders whose outcome is unknown (this account's, and those a previous run
    /// left for an account trading their symbol), then hands execution the account's money and
    /// its net positions and executed orders to reconcile against. Returns the account's resume
    /// points.
    pub(super) async fn apply_books(
        &self,
        state: &Session,
        snapshot: &Snapshot,
        books: Books,
    ) -> Result<Arc<parking_lot::Mutex<HashMap<String, ResumePoint>>>, SessionError> {
        let claimed: Vec<(String, SentOrder)> = {
            let mut recovered = self.recovered.lock();
            let ids: Vec<String> = recovered
                .iter()
                .filter(|(_, order)| state.specs.contains_key(&order.symbol))
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter().filter_map(|id| recovered.remove_entry(&id)).collect()
        };
        if !claimed.is_empty() {
            info!(orders = claimed.len(), "orders left in flight by the previous run are settled from this snapshot");
        }
        let (events, resume) = self.accounts.with(&state.account, |account| {
            account.in_flight.extend(claimed);
            (settle_unknown(&mut account.in_flight, snapshot), Arc::clone(&account.resume))
        });
        if !events.is_empty() {
            info!(orders = events.len(), "orders with unknown outcome settled from the snapshot");
            self.stats.orders_settled_from_snapshot.fetch_add(events.len() as u64, Ordering::Relaxed);
        }
        for event in events {
            self.emit(event).await?;
        }
        // Then the terminal's net positions, for execution to reconcile against.
        // Net lots, total volume and volume-weighted price sum per canonical symbol.
        let mut net: std::collections::BTreeMap<Symbol, (f64, f64, f64)> = Default::default();
        for position in &snapshot.positions {
            let symbol = state.canonical(&position.symbol, &self.config.symbols);
            let sign = match position.side {
                WireSide::Buy => 1.0,
                WireSide::Sell => -1.0,
            };
            let (lots, volume, notional) = net.entry(symbol).or_default();
            *lots += sign * position.volume.value;
            *volume += position.volume.value;
            *notional += position.volume.value * position.price.value;
        }
        let positions = net
            .into_iter()
            .map(|(symbol, (lots, volume, notional))| {
                let average = if volume > 0.0 { notional / volume } else { 0.0 };
                (symbol, lots, average)
            })
            .collect();
        // Orders a crashed run never journaled can only surface after a (re)connect: a SYNC's
        // deals add nothing for the journal to learn, so they are not sent again every period.
        let executed = match books {
            Books::Connect => executed_orders(&snapshot.deals, |broker| state.canonical(broker, &self.config.symbols)),
            Books::Sync => Vec::new(),
        };
        let account = Arc::clone(&state.account);
        self.emit(ExecutionEvent::TerminalPositions { account, positions, executed }).await?;
        if let Some(money) = snapshot.account {
            self.emit(state.account_event(money)).await?;
        }
        Ok(resume)
    }
}


/// Which books [`Bridge::apply_books`] is applying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Books {
    /// The snapshot of a new connection.
    Connect,
    /// The answer to a SYNC on a streaming connection.
    Sync,
}

/// The orders in a snapshot's deal history, net per client order id, in order of their first
/// deal. Deals without a client order id (trades by hand, other experts) are not mtml's.
pub(super) fn executed_orders(deals: &[wire::Deal], canonical: impl Fn(&str) -> Symbol) -> Vec<ExecutedOrder> {
    // Per order: the order so far, its volume dealt and its notional.
    let mut orders: Vec<(ExecutedOrder, f64, f64)> = Vec::new();
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for deal in deals.iter().filter(|d| !d.client_order_id.is_empty()) {
        let index = match index_of.get(deal.client_order_id.as_str()) {
            Some(&index) => index,
            None => {
                index_of.insert(&deal.client_order_id, orders.len());
                let order = ExecutedOrder {
                    client_order_id: deal.client_order_id.clone(),
                    symbol: canonical(&deal.symbol),
                    lots: 0.0,
                    average_price: 0.0,
                    time_msc: deal.time_msc,
                };
                orders.push((order, 0.0, 0.0));
                orders.len() - 1
            }
        };
        let (order, volume, notional) = &mut orders[index];
        order.lots += match deal.side {
            WireSide::Buy => deal.volume.value,
            WireSide::Sell => -deal.volume.value,
        };
        *volume += deal.volume.value;
        *notional += deal.volume.value * deal.price.value;
        order.average_price = *notional / *volume;
        order.time_msc = order.time_msc.max(deal.time_msc);
    }
    orders.into_iter().map(|(order, _, _)| order).collect()
}
