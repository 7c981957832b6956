//! A terminal's books (a connect's snapshot, or the answer to a SYNC) applied: unknown orders
//! settled, money and positions handed to execution, executed orders found in the deal history.

use mtml_core::reconcile;

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
        kind: Books,
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
        let books = snapshot.books(|broker| state.canonical(broker, &self.config.symbols));
        let (events, resume) = self.accounts.with(&state.account, |account| {
            account.in_flight.extend(claimed);
            (settle_unknown(&mut account.in_flight, &books), Arc::clone(&account.resume))
        });
        if !events.is_empty() {
            info!(orders = events.len(), "orders with unknown outcome settled from the snapshot");
            self.stats.orders_settled_from_snapshot.fetch_add(events.len() as u64, Ordering::Relaxed);
        }
        for event in events {
            self.emit(event).await?;
        }
        // Then the terminal's net positions, for execution to reconcile against. Orders a
        // crashed run never journaled can only surface after a (re)connect: a SYNC's deals add
        // nothing for the journal to learn, so they are not sent again every period.
        let positions = reconcile::net_positions(&books);
        let executed = match kind {
            Books::Connect => reconcile::executed_orders(&books.deals),
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
