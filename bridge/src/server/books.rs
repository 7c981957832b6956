//! A terminal's books (a connect's snapshot, or the answer to a SYNC) applied: unknown orders
//! settled, money and positions handed to execution, executed orders found in the deal history.

use mtml_core::reconcile;

use super::*;

impl Bridge {

    /// Applies a terminal's books (from the snapshot of a connect, or the answer to a SYNC): ends
    /// the conversations a lost connection left with an unknown outcome, then hands execution the
    /// books (the evidence that settles those orders, the account's net positions, and on a
    /// connect its executed orders) and the account's money. Returns the account's resume points.
    pub(super) async fn apply_books(
        &self,
        state: &Session,
        snapshot: &Snapshot,
        kind: Books,
    ) -> Result<Arc<parking_lot::Mutex<HashMap<String, ResumePoint>>>, SessionError> {
        let books = snapshot.books(|broker| state.canonical(broker, &self.config.symbols));
        let (closed, resume) = self.accounts.with(&state.account, |account| {
            (close_unknown(&mut account.in_flight, &books), Arc::clone(&account.resume))
        });
        if closed > 0 {
            info!(orders = closed, "orders with unknown outcome handed to execution with the terminal's books");
            self.stats.orders_settled_from_snapshot.fetch_add(closed as u64, Ordering::Relaxed);
        }
        // Orders a crashed run never journaled can only surface after a (re)connect: a SYNC's
        // deals add nothing for the journal to learn, so they are not sent again every period.
        let positions = reconcile::net_positions(&books);
        let executed = match kind {
            Books::Connect => reconcile::executed_orders(&books.deals),
            Books::Sync => Vec::new(),
        };
        let mut symbols: Vec<Symbol> = state.specs.keys().cloned().collect();
        symbols.sort();
        let account = Arc::clone(&state.account);
        let evidence = books.mtml_only();
        self.emit(ExecutionEvent::TerminalPositions { account, positions, executed, evidence, symbols }).await?;
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
