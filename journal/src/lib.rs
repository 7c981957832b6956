//! The journal of decisions, orders, fills, positions and trading state changes.
//!
//! PostgreSQL in production, SQLite as the embedded default, through one sqlx `Any` pool and
//! one portable migration (`migrations/`). The pipeline never waits for it: records go through a
//! channel to [`spawn_writer`], which writes them in order, whole events per transaction. What the
//! journal misses in a crash (the last records before it) the terminal's snapshot restores on
//! reconnect: positions and deals carry the client order ids.
//!
//! - [`Journal`]: open (migrating), write records, read positions, orders and PnL.
//! - [`Record`]: what gets written; [`AuditRow`]: the audit log of operator commands.
//! - [`performance`]: PnL, hit rate, drawdown, Sharpe and the equity curve of the fills.
//! - [`conformance`]: the suite every backend passes, one check per behaviour, stamped out per
//!   backend by [`journal_conformance!`] (behind the `conformance` feature).


pub mod chain_report;
pub mod performance;

use sqlx::{AnyPool, Row};
use tokio::sync::mpsc;

/// Why the journal failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The database refused or is unreachable.
    #[error("journal database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database could not be reached, its schema brought up to date, or (for a reader)
    /// there is none.
    #[error("{0}")]
    Open(mtml_database::OpenError),
}

/// One thing to remember.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A decision that changed a target, and what came of it (`order`, or a risk rejection).
    Decision {
        /// Chain of the tick.
        chain_id: String,
        /// Symbol.
        symbol: String,
        /// Market time.
        time_ms: i64,
        /// Model probability of "up".
        probability: f64,
        /// Target position, lots.
        target_lots: f64,
        /// `order`, or `risk:<reason>`.
        outcome: String,
    },
    /// An order created by execution.
    OrderCreated {
        /// Idempotency key.
        client_order_id: String,
        /// Chain of the tick.
        chain_id: String,
        /// Symbol.
        symbol: String,
        /// `buy` or `sell`.
        side: String,
        /// Lots.
        volume: f64,
        /// Price the decision was made at.
        decision_price: f64,
        /// Market time.
        created_ms: i64,
    },
    /// An order's new state.
    OrderState {
        /// Idempotency key.
        client_order_id: String,
        /// State name (`acknowledged`, `filled`, `unknown`...).
        state: String,
        /// Lots filled so far.
        filled: f64,
        /// Market time.
        at_ms: i64,
    },
    /// A fill.
    Fill {
        /// Idempotency key of the order.
        client_order_id: String,
        /// Chain of the order.
        chain_id: String,
        /// Terminal ticket.
        ticket: i64,
        /// Symbol.
        symbol: String,
        /// `buy` or `sell`.
        side: String,
        /// Lots.
        volume: f64,
        /// Price.
        price: f64,
        /// Terminal time.
        time_ms: i64,
        /// Fill price minus decision price, against the order (positive is worse).
        slippage: f64,
        /// PnL this fill realised.
        realized_pnl: f64,
    },
    /// A symbol's position after a fill.
    Position {
        /// Symbol.
        symbol: String,
        /// Lots, signed.
        lots: f64,
        /// Average entry price.
        average_price: f64,
        /// Realised PnL so far.
        realized_pnl: f64,
        /// Market time.
        at_ms: i64,
    },
    /// An order a terminal's deal history shows executed. Recorded (as filled, with one fill at
    /// the deals' average price) only if the journal does not know it: an order sent just
    /// before a crash, whose creation never reached the journal.
    ExecutedOrder {
        /// Idempotency key.
        client_order_id: String,
        /// Symbol.
        symbol: String,
        /// Signed lots dealt.
        lots: f64,
        /// Average deal price.
        average_price: f64,
        /// Time of the last deal.
        time_ms: i64,
    },
    /// A trading state change.
    StateChange {
        /// Market time.
        at_ms: i64,
        /// Before.
        from: String,
        /// After.
        to: String,
        /// Why.
        reason: String,
    },
    /// A chain that led to an order, a rejection or an error, whole: its spans in the order they
    /// started. Written again when the chain grows (a later partial fill), replacing the
    /// earlier copy.
    Chain {
        /// The chain id, hex.
        chain_id: String,
        /// The process that recorded these spans; its earlier record of the chain is replaced.
        service: String,
        /// The spans.
        spans: Vec<SpanRow>,
        /// When it was written, UTC epoch ms.
        recorded_ms: i64,
    },
}

/// A position as the journal has it.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionRow {
    /// Symbol.
    pub symbol: String,
    /// Lots, signed.
    pub lots: f64,
    /// Average entry price.
    pub average_price: f64,
    /// Realised PnL.
    pub realized_pnl: f64,
}

/// An order as the journal has it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    /// Idempotency key.
    pub client_order_id: String,
    /// Chain id.
    pub chain_id: String,
    /// Symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Lots.
    pub volume: f64,
    /// Lots filled.
    pub filled: f64,
    /// State name.
    pub state: String,
    /// Market time created.
    pub created_ms: i64,
    /// Price the decision was made at (slippage of a fill recovered after a restart is measured
    /// against it).
    pub decision_price: f64,
}

/// States an order never leaves; others are open.
pub const FINAL_STATES: [&str; 4] = ["filled", "rejected", "cancelled", "expired"];


/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// When, UTC epoch ms.
    pub at_ms: i64,
    /// Who (`telegram:<user id>`).
    pub actor: String,
    /// What (`/close EURUSD`).
    pub action: String,
    /// How it ended.
    pub outcome: String,
    /// The chain it belongs to (hex trace id), or empty.
    pub chain_id: String,
}

/// A journal database.
#[derive(Debug, Clone)]
pub struct Journal {
    pool: AnyPool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl From<mtml_database::OpenError> for JournalError {
    fn from(error: mtml_database::OpenError) -> Self {
        match error {
            mtml_database::OpenError::Database(e) => Self::Database(e),
            other => Self::Open(other),
        }
    }
}

impl Journal {
    /// Connects to `url` (`postgres://...` or `sqlite://path?mode=rwc`, `sqlite::memory:`) and
    /// brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self, JournalError> {
        Ok(Self { pool: mtml_database::open(url, "journal", &MIGRATOR).await? })
    }

    /// Opens an existing journal for reading: where there is none, a [`JournalError::Open`] error
    /// saying so ([`mtml_database::OpenError::Missing`]), and nothing is created.
    pub async fn open_existing(url: &str) -> Result<Self, JournalError> {
        Ok(Self { pool: mtml_database::open_existing(url, "journal", &MIGRATOR).await? })
    }

    /// Writes records in one transaction.
    pub async fn write(&self, records: &[Record]) -> Result<(), JournalError> {
        let mut tx = self.pool.begin().await?;
        for record in records {
            match record {
                Record::Decision { chain_id, symbol, time_ms, probability, target_lots, outcome } => {
                    sqlx::query("INSERT INTO decisions (chain_id, symbol, time_ms, probability, target_lots, outcome) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(chain_id).bind(symbol).bind(time_ms).bind(probability).bind(target_lots).bind(outcome)
                        .execute(&mut *tx).await?;
                }
                Record::OrderCreated { client_order_id, chain_id, symbol, side, volume, decision_price, created_ms } => {
                    sqlx::query("INSERT INTO orders (client_order_id, chain_id, symbol, side, volume, decision_price, state, filled, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, 'sent', 0, $7, $7) ON CONFLICT (client_order_id) DO NOTHING")
                        .bind(client_order_id).bind(chain_id).bind(symbol).bind(side).bind(volume).bind(decision_price).bind(created_ms)
                        .execute(&mut *tx).await?;
                }
                Record::OrderState { client_order_id, state, filled, at_ms } => {
                    sqlx::query("UPDATE orders SET state = $1, filled = $2, updated_ms = $3 WHERE client_order_id = $4")
                        .bind(state).bind(filled).bind(at_ms).bind(client_order_id)
                        .execute(&mut *tx).await?;
                }
                Record::Fill { client_order_id, chain_id, ticket, symbol, side, volume, price, time_ms, slippage, realized_pnl } => {
                    sqlx::query("INSERT INTO fills (client_order_id, chain_id, ticket, symbol, side, volume, price, time_ms, slippage, realized_pnl) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                        .bind(client_order_id).bind(chain_id).bind(ticket).bind(symbol).bind(side).bind(volume).bind(price).bind(time_ms).bind(slippage).bind(realized_pnl)
                        .execute(&mut *tx).await?;
                }
                Record::Position { symbol, lots, average_price, realized_pnl, at_ms } => {
                    sqlx::query("INSERT INTO positions (symbol, lots, average_price, realized_pnl, updated_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (symbol) DO UPDATE SET lots = excluded.lots, average_price = excluded.average_price, realized_pnl = excluded.realized_pnl, updated_ms = excluded.updated_ms")
                        .bind(symbol).bind(lots).bind(average_price).bind(realized_pnl).bind(at_ms)
                        .execute(&mut *tx).await?;
                }
                Record::ExecutedOrder { client_order_id, symbol, lots, average_price, time_ms } => {
                    let side = if *lots > 0.0 { "buy" } else { "sell" };
                    let inserted = sqlx::query("INSERT INTO orders (client_order_id, chain_id, symbol, side, volume, decision_price, state, filled, created_ms, updated_ms) VALUES ($1, '', $2, $3, $4, $5, 'filled', $4, $6, $6) ON CONFLICT (client_order_id) DO NOTHING")
                        .bind(client_order_id).bind(symbol).bind(side).bind(lots.abs()).bind(average_price).bind(time_ms)
                        .execute(&mut *tx).await?
                        .rows_affected();
                    if inserted == 1 {
                        tracing::warn!(%client_order_id, %symbol, lots, "order missing from the journal recovered from the terminal's deal history");
                        sqlx::query("INSERT INTO fills (client_order_id, chain_id, ticket, symbol, side, volume, price, time_ms, slippage, realized_pnl) VALUES ($1, '', 0, $2, $3, $4, $5, $6, 0, 0)")
                            .bind(client_order_id).bind(symbol).bind(side).bind(lots.abs()).bind(average_price).bind(time_ms)
                            .execute(&mut *tx).await?;
                    }
                }
                Record::Chain { chain_id, service, spans, recorded_ms } => {
                    // A process writes its part of a chain whole each time it grows; other
                    // processes' parts stay.
                    sqlx::query("DELETE FROM chain_spans WHERE chain_id = $1 AND service = $2").bind(chain_id).bind(service).execute(&mut *tx).await?;
                    for (seq, span) in spans.iter().enumerate() {
                        sqlx::query("INSERT INTO chain_spans (chain_id, service, seq, stage, start_unix_ns, duration_ns, outcome, recorded_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                            .bind(chain_id).bind(service).bind(seq as i64).bind(&span.stage).bind(span.start_unix_ns).bind(span.duration_ns).bind(&span.outcome).bind(recorded_ms)
                            .execute(&mut *tx).await?;
                    }
                }
                Record::StateChange { at_ms, from, to, reason } => {
                    sqlx::query("INSERT INTO state_changes (at_ms, from_state, to_state, reason) VALUES ($1, $2, $3, $4)")
                        .bind(at_ms).bind(from).bind(to).bind(reason)
                        .execute(&mut *tx).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every position, by symbol.
    pub async fn positions(&self) -> Result<Vec<PositionRow>, JournalError> {
        let rows = sqlx::query("SELECT symbol, lots, average_price, realized_pnl FROM positions ORDER BY symbol")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PositionRow {
                    symbol: r.try_get(0)?,
                    lots: r.try_get(1)?,
                    average_price: r.try_get(2)?,
                    realized_pnl: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Orders, oldest first; with `open_only`, those not in a final state.
    pub async fn orders(&self, open_only: bool) -> Result<Vec<OrderRow>, JournalError> {
        let sql = if open_only {
            "SELECT client_order_id, chain_id, symbol, side, volume, filled, state, created_ms, decision_price FROM orders WHERE state NOT IN ('filled', 'rejected', 'cancelled', 'expired') ORDER BY created_ms, client_order_id"
        } else {
            "SELECT client_order_id, chain_id, symbol, side, volume, filled, state, created_ms, decision_price FROM orders ORDER BY created_ms, client_order_id"
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(OrderRow {
                    client_order_id: r.try_get(0)?,
                    chain_id: r.try_get(1)?,
                    symbol: r.try_get(2)?,
                    side: r.try_get(3)?,
                    volume: r.try_get(4)?,
                    filled: r.try_get(5)?,
                    state: r.try_get(6)?,
                    created_ms: r.try_get(7)?,
                    decision_price: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// PnL realised by fills at or after `since_ms` (all fills when `None`).
    pub async fn realized_pnl(&self, since_ms: Option<i64>) -> Result<f64, JournalError> {
        let row = sqlx::query("SELECT COALESCE(SUM(realized_pnl), 0.0) FROM fills WHERE time_ms >= $1")
            .bind(since_ms.unwrap_or(i64::MIN))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Writes one line of the audit log.
    pub async fn audit(&self, entry: &AuditRow) -> Result<(), JournalError> {
        sqlx::query("INSERT INTO audit_log (at_ms, actor, action, outcome, chain_id) VALUES ($1, $2, $3, $4, $5)")
            .bind(entry.at_ms)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.outcome)
            .bind(&entry.chain_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The audit log from `since_ms`, oldest first.
    pub async fn audit_since(&self, since_ms: i64) -> Result<Vec<AuditRow>, JournalError> {
        let rows = sqlx::query("SELECT at_ms, actor, action, outcome, chain_id FROM audit_log WHERE at_ms >= $1 ORDER BY at_ms")
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(AuditRow { at_ms: r.try_get(0)?, actor: r.try_get(1)?, action: r.try_get(2)?, outcome: r.try_get(3)?, chain_id: r.try_get(4)? }))
            .collect()
    }

    /// Realised PnL, trades, hit rate, drawdown, Sharpe and the equity curve of the fills at
    /// or after `since_ms`.
    pub async fn performance(&self, since_ms: i64, title: String) -> Result<mtml_core::Summary, JournalError> {
        let rows = sqlx::query("SELECT time_ms, realized_pnl FROM fills WHERE time_ms >= $1 ORDER BY time_ms, client_order_id")
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?;
        let fills: Vec<(i64, f64)> = rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_, JournalError>>()?;
        Ok(performance::summary(title, &fills))
    }

    /// Closes the pool, waiting for its connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Number of decisions recorded.
    pub async fn decision_count(&self) -> Result<i64, JournalError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM decisions").fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// The spans of a chain in the order they started; empty if the history does not
    /// have it.
    pub async fn chain(&self, chain_id: &str) -> Result<Vec<SpanRow>, JournalError> {
        let statement = format!("SELECT {SPAN_COLUMNS} FROM chain_spans WHERE chain_id = $1 ORDER BY start_unix_ns, service, seq");
        let rows = sqlx::query(&statement).bind(chain_id).fetch_all(&self.pool).await?;
        rows.iter().map(|r| span_row(r, 0)).collect()
    }

    /// Chains recorded at or after `since_ms`, the latest first or (`slowest`) the longest
    /// first; with `outcome`, only chains with a span whose outcome starts so (`rejected`,
    /// `error`).
    pub async fn chains(&self, since_ms: i64, slowest: bool, limit: i64, outcome: Option<&str>) -> Result<Vec<ChainRow>, JournalError> {
        let order = if slowest { "total_ns DESC" } else { "recorded_ms DESC" };
        let statement = format!(
            "SELECT chain_id, MAX(recorded_ms) AS recorded_ms, MAX(start_unix_ns + duration_ns) - MIN(start_unix_ns) AS total_ns, COUNT(*) AS spans \
             FROM chain_spans WHERE recorded_ms >= $1 GROUP BY chain_id \
             HAVING SUM(CASE WHEN outcome LIKE $3 THEN 1 ELSE 0 END) > 0 ORDER BY {order}, chain_id LIMIT $2"
        );
        let pattern = outcome.map_or_else(|| "%".to_owned(), |prefix| format!("{prefix}%"));
        let rows = sqlx::query(&statement).bind(since_ms).bind(limit).bind(pattern).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(ChainRow { chain_id: r.try_get(0)?, recorded_ms: r.try_get(1)?, total_ns: r.try_get(2)?, spans: r.try_get(3)? }))
            .collect()
    }

    /// The chains other processes than `service` recorded after `after_ms`, with when they last
    /// did (so a bridge can add its part to the chains a pipeline kept).
    pub async fn chains_recorded_by_others(&self, after_ms: i64, service: &str) -> Result<Vec<(String, i64)>, JournalError> {
        let rows = sqlx::query("SELECT chain_id, MAX(recorded_ms) FROM chain_spans WHERE recorded_ms > $1 AND service <> $2 GROUP BY chain_id")
            .bind(after_ms)
            .bind(service)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Forgets the chains recorded before `before_ms`; returns how many spans left.
    pub async fn forget_chains_before(&self, before_ms: i64) -> Result<u64, JournalError> {
        Ok(sqlx::query("DELETE FROM chain_spans WHERE recorded_ms < $1").bind(before_ms).execute(&self.pool).await?.rows_affected())
    }

    /// Every span recorded at or after `since_ms`, with its chain id, for latency and outcome
    /// statistics.
    pub async fn spans_since(&self, since_ms: i64) -> Result<Vec<(String, SpanRow)>, JournalError> {
        let statement = format!("SELECT chain_id, {SPAN_COLUMNS} FROM chain_spans WHERE recorded_ms >= $1 ORDER BY chain_id, start_unix_ns, service, seq");
        let rows = sqlx::query(&statement).bind(since_ms).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, span_row(r, 1)?))).collect()
    }
}

const SPAN_COLUMNS: &str = "stage, service, start_unix_ns, duration_ns, outcome";

/// A [`SpanRow`] from the [`SPAN_COLUMNS`] of a row, starting at column `first`.
fn span_row(row: &sqlx::any::AnyRow, first: usize) -> Result<SpanRow, JournalError> {
    Ok(SpanRow {
        stage: row.try_get(first)?,
        service: row.try_get(first + 1)?,
        start_unix_ns: row.try_get(first + 2)?,
        duration_ns: row.try_get(first + 3)?,
        outcome: row.try_get(first + 4)?,
    })
}

/// One span of a chain in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    /// The stage (`ingest`, `inference`...).
    pub stage: String,
    /// The process that recorded it (`mtml`, `bridge`, `pipeline`).
    pub service: String,
    /// Start on the wall clock, UTC epoch ns.
    pub start_unix_ns: i64,
    /// Duration, ns.
    pub duration_ns: i64,
    /// `ok`, `rejected: REASON` or `error: WHAT`.
    pub outcome: String,
}

/// A chain in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRow {
    /// Chain id, hex.
    pub chain_id: String,
    /// When it was written, UTC epoch ms.
    pub recorded_ms: i64,
    /// From its first span's start to its last span's end, ns.
    pub total_ns: i64,
    /// Spans kept.
    pub spans: i64,
}

/// A crash point (see `mtml_core::crash_point`): the process dies with a fill applied in memory
/// and not yet journaled. Everything journaled before that fill is committed first, so the test
/// knows exactly what the journal holds.
pub const CRASH_BEFORE_FILL: &str = "journal.before_fill";

/// Writes what arrives on `groups`, in order, until the channel closes; returns how many records
/// were written.
///
/// A group is the records of one event (an order's creation; a fill with the position it left
/// and the order's new state). A transaction holds whole groups only, so after a crash the
/// journal is a consistent prefix of what happened: a fill is never there without its position
/// and order state. A failed batch is logged and retried once a second, never dropped: the
/// pipeline goes on meanwhile and the channel holds the backlog.
pub fn spawn_writer(
    journal: Journal,
    mut groups: mpsc::UnboundedReceiver<Vec<Record>>,
) -> tokio::task::JoinHandle<u64> {
    let span = tracing::info_span!("task", name = "journal_writer");
    tokio::spawn(tracing::Instrument::instrument(async move {
        let mut written = 0u64;
        let mut batch = Vec::new();
        while let Some(first) = groups.recv().await {
            let mut crash_after_batch = crashes_before(&first);
            if !crash_after_batch {
                batch.extend(first);
                while batch.len() < 1_000 {
                    let Ok(group) = groups.try_recv() else { break };
                    if crashes_before(&group) {
                        crash_after_batch = true;
                        break;
                    }
                    batch.extend(group);
                }
            }
            write_retrying(&journal, &batch).await;
            written += batch.len() as u64;
            batch.clear();
            if crash_after_batch {
                mtml_core::crash_point::crash(CRASH_BEFORE_FILL);
            }
        }
        written
    }, span))
}

fn crashes_before(group: &[Record]) -> bool {
    group.iter().any(|r| matches!(r, Record::Fill { .. })) && mtml_core::crash_point::reached(CRASH_BEFORE_FILL)
}

async fn write_retrying(journal: &Journal, batch: &[Record]) {
    if batch.is_empty() {
        return;
    }
    while let Err(error) = journal.write(batch).await {
        tracing::error!(%error, records = batch.len(), "journal write failed; retrying");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The suite every journal backend passes: one check per behaviour, each on an empty journal.
/// [`journal_conformance!`](crate::journal_conformance) stamps out one test per check for a
/// backend.
#[cfg(any(test, feature = "conformance"))]
pub mod conformance {
    use super::*;

    /// A buy of 0.1 EURUSD at 1.1, created at `created_ms`.
    pub fn order(id: &str, created_ms: i64) -> Record {
        Record::OrderCreated {
            client_order_id: id.into(),
            chain_id: format!("chain-{id}"),
            symbol: "EURUSD".into(),
            side: "buy".into(),
            volume: 0.1,
            decision_price: 1.1,
            created_ms,
        }
    }

    /// What every check writes first: orders `a` (created twice, then filled) and `b` (sent), a
    /// fill of `a` and one of an order the journal never had (`z`), two positions of EURUSD, a
    /// decision and a state change, in one transaction.
    async fn write_day(journal: &Journal) {
        journal
            .write(&[
                order("a", 1),
                order("b", 2),
                order("a", 3),
                Record::OrderState { client_order_id: "a".into(), state: "filled".into(), filled: 0.1, at_ms: 4 },
                Record::Fill {
                    client_order_id: "a".into(),
                    chain_id: "chain-a".into(),
                    ticket: 7,
                    symbol: "EURUSD".into(),
                    side: "buy".into(),
                    volume: 0.1,
                    price: 1.1001,
                    time_ms: 4,
                    slippage: 0.0001,
                    realized_pnl: 0.0,
                },
                Record::Fill {
                    client_order_id: "z".into(),
                    chain_id: "chain-z".into(),
                    ticket: 8,
                    symbol: "EURUSD".into(),
                    side: "sell".into(),
                    volume: 0.1,
                    price: 1.2,
                    time_ms: 100,
                    slippage: 0.0,
                    realized_pnl: 25.5,
                },
                Record::Position { symbol: "EURUSD".into(), lots: 0.1, average_price: 1.1, realized_pnl: 0.0, at_ms: 4 },
                Record::Position { symbol: "EURUSD".into(), lots: 0.2, average_price: 1.15, realized_pnl: 25.5, at_ms: 5 },
                Record::Decision {
                    chain_id: "chain-a".into(),
                    symbol: "EURUSD".into(),
                    time_ms: 1,
                    probability: 0.61,
                    target_lots: 0.1,
                    outcome: "order".into(),
                },
                Record::StateChange { at_ms: 9, from: "ACTIVE".into(), to: "HALTED".into(), reason: "test".into() },
            ])
            .await
            .expect("write");
    }

    /// A new journal is empty; an order id is recorded once, and its state updates apply.
    pub async fn an_order_id_is_recorded_once_and_its_state_updates(journal: &Journal) {
        assert!(journal.positions().await.expect("read").is_empty(), "starts empty");
        write_day(journal).await;
        let orders = journal.orders(false).await.expect("orders");
        let ids: Vec<&str> = orders.iter().map(|o| o.client_order_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "an order id is recorded once");
        assert_eq!(orders[0].state, "filled", "state updates apply");
    }

    /// Orders in a final state are not open.
    pub async fn final_states_are_not_open(journal: &Journal) {
        write_day(journal).await;
        let open: Vec<String> = journal.orders(true).await.expect("open").into_iter().map(|o| o.client_order_id).collect();
        assert_eq!(open, ["b"], "final states are not open");
    }

    /// A symbol's latest position replaces the one before.
    pub async fn the_latest_position_wins(journal: &Journal) {
        write_day(journal).await;
        let positions = journal.positions().await.expect("positions");
        assert_eq!(
            positions,
            [PositionRow { symbol: "EURUSD".into(), lots: 0.2, average_price: 1.15, realized_pnl: 25.5 }],
            "the latest position wins"
        );
    }

    /// Realised PnL sums the fills since a time.
    pub async fn realized_pnl_sums_the_fills_since_a_time(journal: &Journal) {
        write_day(journal).await;
        assert_eq!(journal.realized_pnl(None).await.expect("pnl"), 25.5);
        assert_eq!(journal.realized_pnl(Some(50)).await.expect("pnl"), 25.5);
        assert_eq!(journal.realized_pnl(Some(101)).await.expect("pnl"), 0.0, "a day without fills");
    }

    /// Decisions are kept and counted.
    pub async fn decisions_are_counted(journal: &Journal) {
        write_day(journal).await;
        assert_eq!(journal.decision_count().await.expect("decisions"), 1);
    }

    /// Chains are kept whole, replaced when they grow, listed latest or slowest first.
    pub async fn chains_are_kept_whole_and_listed(journal: &Journal) {
        const T0: i64 = 1_700_000_000_000_000_000;
        let span_of = |service: &str, stage: &str, offset_ns: i64, duration_ns: i64, outcome: &str| SpanRow {
            stage: stage.to_owned(),
            service: service.to_owned(),
            start_unix_ns: T0 + offset_ns,
            duration_ns,
            outcome: outcome.to_owned(),
        };
        let span = |stage: &str, offset_ns: i64, duration_ns: i64, outcome: &str| span_of("pipeline", stage, offset_ns, duration_ns, outcome);
        let part = |service: &str, id: &str, spans: Vec<SpanRow>, recorded_ms| Record::Chain { chain_id: id.into(), service: service.into(), spans, recorded_ms };
        let chain = |id: &str, spans: Vec<SpanRow>, recorded_ms| part("pipeline", id, spans, recorded_ms);
        journal.write(&[chain("a", vec![span("ingest", 0, 10, "ok"), span("fill", 50, 100, "ok")], 1_000)]).await.expect("chain a");
        journal.write(&[chain("b", vec![span("ingest", 0, 10, "ok"), span("risk", 10, 5, "rejected: max_drawdown")], 2_000)]).await.expect("chain b");
        // a grows (a second partial fill): written again, whole.
        let grown = vec![span("ingest", 0, 10, "ok"), span("fill", 50, 100, "ok"), span("fill", 300, 50, "ok")];
        journal.write(&[chain("a", grown.clone(), 3_000)]).await.expect("a again");
        assert_eq!(journal.chain("a").await.expect("a"), grown);
        // Another process's part of chain a (the bridge, which read the tick before ingestion)
        // joins it in start order, and leaves the pipeline's part as it is.
        let received = span_of("bridge", "bridge_receive", -20, 15, "ok");
        journal.write(&[part("bridge", "a", vec![received.clone()], 3_000)]).await.expect("bridge part");
        let whole = journal.chain("a").await.expect("whole a");
        assert_eq!(whole[0], received);
        assert_eq!(whole[1..], grown[..]);
        let others = journal.chains_recorded_by_others(2_500, "bridge").await.expect("others");
        assert_eq!(others, [("a".to_owned(), 3_000)], "the pipeline's chains recorded after 2 500");
        journal.write(&[part("bridge", "a", vec![], 3_000)]).await.expect("bridge part gone");
        assert_eq!(journal.chain("a").await.expect("a"), grown);
        assert!(journal.chain("zz").await.expect("none").is_empty());
        let latest: Vec<String> = journal.chains(0, false, 10, None).await.expect("latest").into_iter().map(|c| c.chain_id).collect();
        assert_eq!(latest, ["a", "b"], "latest first");
        let slowest = journal.chains(0, true, 1, None).await.expect("slowest");
        assert_eq!((slowest[0].chain_id.as_str(), slowest[0].total_ns, slowest[0].spans), ("a", 350, 3));
        let rejected: Vec<String> = journal.chains(0, false, 10, Some("rejected")).await.expect("rejected").into_iter().map(|c| c.chain_id).collect();
        assert_eq!(rejected, ["b"]);
        assert!(journal.chains(0, false, 10, Some("error")).await.expect("errors").is_empty());
        assert_eq!(journal.chains(2_500, false, 10, None).await.expect("since").len(), 1);
        assert_eq!(journal.spans_since(0).await.expect("spans").len(), 5);
        // Retention: b (recorded at 2 000) goes, a (rewritten at 3 000) stays whole.
        assert_eq!(journal.forget_chains_before(2_500).await.expect("forget"), 2);
        let kept: Vec<String> = journal.chains(0, false, 10, None).await.expect("kept").into_iter().map(|c| c.chain_id).collect();
        assert_eq!(kept, ["a"]);
        assert_eq!(journal.chain("a").await.expect("a").len(), 3);
    }

    /// A terminal's deal history: a known order is left as it is, an unknown one is recorded
    /// filled, once however often the history repeats it.
    pub async fn a_deal_history_records_an_unknown_order_once(journal: &Journal) {
        write_day(journal).await;
        let executed = |id: &str| Record::ExecutedOrder {
            client_order_id: id.into(),
            symbol: "EURUSD".into(),
            lots: -0.3,
            average_price: 1.2,
            time_ms: 200,
        };
        journal.write(&[executed("b"), executed("lost"), executed("lost")]).await.expect("write");
        journal.write(&[executed("lost")]).await.expect("write");
        let orders = journal.orders(false).await.expect("orders");
        let summary: Vec<(&str, &str, f64)> =
            orders.iter().map(|o| (o.client_order_id.as_str(), o.state.as_str(), o.filled)).collect();
        assert_eq!(summary, [("a", "filled", 0.1), ("b", "sent", 0.0), ("lost", "filled", 0.3)]);
        assert_eq!(orders[2].side, "sell");
        assert_eq!(journal.realized_pnl(None).await.expect("pnl"), 25.5, "one fill for the recovered order, no PnL");
        let fills: i64 = sqlx::query("SELECT COUNT(*) FROM fills WHERE client_order_id = 'lost'")
            .fetch_one(&journal.pool)
            .await
            .expect("count")
            .try_get(0)
            .expect("count");
        assert_eq!(fills, 1);
    }
}

/// Stamps out the journal conformance suite for one backend: a `#[tokio::test]` per check, each
/// on a journal of its own. `$open` is an async function returning the journal and whatever
/// keeps its database alive; `$close` an async function taking both back when the check passed.
#[cfg(any(test, feature = "conformance"))]
#[macro_export]
macro_rules! journal_conformance {
    ($open:path, $close:path) => {
        mtml_test_support::conformance_tests!(mtml_journal::conformance => $open, $close;
            an_order_id_is_recorded_once_and_its_state_updates,
            final_states_are_not_open,
            the_latest_position_wins,
            realized_pnl_sums_the_fills_since_a_time,
            decisions_are_counted,
            chains_are_kept_whole_and_listed,
            a_deal_history_records_an_unknown_order_once);
    };
}
