//! The embedded history store: SQLite through sqlx, a file (or memory) and no server.

use std::str::FromStr;

use mtml_core::{Bar, ChainId, Ohlc, Symbol};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::{BarRecord, FeatureVectorRecord, HistoryPoint, HistoryStore, StoreError, TickRecord, TimeRange, key_time_ns, timeframe_name};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ticks (
    symbol TEXT NOT NULL, source TEXT NOT NULL, time_ns INTEGER NOT NULL,
    time_msc INTEGER NOT NULL, seq INTEGER NOT NULL, bid REAL NOT NULL, ask REAL NOT NULL,
    chain_id TEXT NOT NULL,
    PRIMARY KEY (symbol, source, time_ns)
);
CREATE INDEX IF NOT EXISTS ticks_by_time ON ticks (symbol, time_ns);
CREATE TABLE IF NOT EXISTS bars (
    symbol TEXT NOT NULL, timeframe TEXT NOT NULL, open_time_ms INTEGER NOT NULL,
    width_ms INTEGER NOT NULL,
    bid_open REAL NOT NULL, bid_high REAL NOT NULL, bid_low REAL NOT NULL, bid_close REAL NOT NULL,
    ask_open REAL NOT NULL, ask_high REAL NOT NULL, ask_low REAL NOT NULL, ask_close REAL NOT NULL,
    ticks INTEGER NOT NULL, chain_id TEXT NOT NULL,
    PRIMARY KEY (symbol, timeframe, open_time_ms)
);
CREATE TABLE IF NOT EXISTS features (
    symbol TEXT NOT NULL, feature_set TEXT NOT NULL, time_ns INTEGER NOT NULL,
    time_msc INTEGER NOT NULL, seq INTEGER NOT NULL, mid REAL NOT NULL, vals BLOB NOT NULL,
    chain_id TEXT NOT NULL,
    PRIMARY KEY (symbol, feature_set, time_ns)
);
";

/// History in SQLite: `sqlite://path?mode=rwc` or `sqlite::memory:`.
#[derive(Debug, Clone)]
pub struct SqliteHistory {
    url: String,
    pool: SqlitePool,
}

impl SqliteHistory {
    /// Opens (creating if needed) the database at `url` and its tables.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = |detail: String| StoreError::Unavailable { store: format!("history database {}", mtml_core::text::redact_url(url)), detail };
        let options = SqliteConnectOptions::from_str(url).map_err(|e| store(e.to_string()))?.create_if_missing(true);
        // One connection: SQLite has one writer anyway, and `:memory:` is per connection.
        // No reaper task (see the journal's pool): its idle-count race can spin a thread.
        let pool = SqlitePoolOptions::new().max_connections(1).idle_timeout(None).max_lifetime(None).connect_with(options).await.map_err(|e| store(e.to_string()))?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(|e| store(e.to_string()))?;
        Ok(Self { url: url.to_owned(), pool })
    }

    fn error(&self, error: sqlx::Error) -> StoreError {
        StoreError::Unavailable { store: self.describe(), detail: error.to_string() }
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt { store: self.describe(), detail }
    }

    fn chain(&self, text: &str) -> Result<ChainId, StoreError> {
        ChainId::from_str(text).map_err(|e| self.corrupt(format!("chain id {text:?}: {e}")))
    }
}

fn limit(range: TimeRange) -> i64 {
    i64::try_from(range.limit).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl HistoryStore for SqliteHistory {
    fn describe(&self) -> String {
        format!("history database {}", mtml_core::text::redact_url(&self.url))
    }

    async fn write(&self, points: &[HistoryPoint]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        for point in points {
            let query = match point {
                HistoryPoint::Tick(t) => sqlx::query("INSERT OR REPLACE INTO ticks VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
                    .bind(t.symbol.as_str())
                    .bind(&t.source)
                    .bind(key_time_ns(t.time_msc, t.seq))
                    .bind(t.time_msc)
                    .bind(t.seq as i64)
                    .bind(t.bid)
                    .bind(t.ask)
                    .bind(t.chain_id.to_string()),
                HistoryPoint::Bar(b) => {
                    let bar = &b.bar;
                    sqlx::query("INSERT OR REPLACE INTO bars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                        .bind(bar.symbol.as_str())
                        .bind(timeframe_name(bar.width_ms))
                        .bind(bar.open_time_ms)
                        .bind(bar.width_ms)
                        .bind(bar.bid.open)
                        .bind(bar.bid.high)
                        .bind(bar.bid.low)
                        .bind(bar.bid.close)
                        .bind(bar.ask.open)
                        .bind(bar.ask.high)
                        .bind(bar.ask.low)
                        .bind(bar.ask.close)
                        .bind(i64::from(bar.ticks))
                        .bind(b.chain_id.to_string())
                }
                HistoryPoint::Features(f) => {
                    let vals: Vec<u8> = f.values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    sqlx::query("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
                        .bind(f.symbol.as_str())
                        .bind(crate::FEATURE_SET.id())
                        .bind(key_time_ns(f.time_msc, f.seq))
                        .bind(f.time_msc)
                        .bind(f.seq as i64)
                        .bind(f.mid)
                        .bind(vals)
                        .bind(f.chain_id.to_string())
                }
            };
            query.execute(&mut *tx).await.map_err(|e| self.error(e))?;
        }
        tx.commit().await.map_err(|e| self.error(e))
    }

    async fn ticks(&self, symbol: &Symbol, range: TimeRange) -> Result<Vec<TickRecord>, StoreError> {
        let (from, to) = range.ns_bounds();
        let rows = sqlx::query("SELECT source, time_msc, seq, bid, ask, chain_id FROM ticks WHERE symbol = ? AND time_ns >= ? AND time_ns < ? ORDER BY time_ns, source LIMIT ?")
            .bind(symbol.as_str()).bind(from).bind(to).bind(limit(range))
            .fetch_all(&self.pool).await.map_err(|e| self.error(e))?;
        rows.iter()
            .map(|row| {
                Ok(TickRecord {
                    symbol: symbol.clone(),
                    source: row.get(0),
                    time_msc: row.get(1),
                    seq: row.get::<i64, _>(2) as u64,
                    bid: row.get(3),
                    ask: row.get(4),
                    chain_id: self.chain(row.get(5))?,
                })
            })
            .collect()
    }

    async fn bars(&self, symbol: &Symbol, timeframe: &str, range: TimeRange) -> Result<Vec<BarRecord>, StoreError> {
        let rows = sqlx::query("SELECT open_time_ms, width_ms, bid_open, bid_high, bid_low, bid_close, ask_open, ask_high, ask_low, ask_close, ticks, chain_id FROM bars WHERE symbol = ? AND timeframe = ? AND open_time_ms >= ? AND open_time_ms < ? ORDER BY open_time_ms LIMIT ?")
            .bind(symbol.as_str()).bind(timeframe).bind(range.from_ms).bind(range.to_ms).bind(limit(range))
            .fetch_all(&self.pool).await.map_err(|e| self.error(e))?;
        rows.iter()
            .map(|row| {
                let ohlc = |at: usize| Ohlc { open: row.get(at), high: row.get(at + 1), low: row.get(at + 2), close: row.get(at + 3) };
                Ok(BarRecord {
                    bar: Bar {
                        symbol: symbol.clone(),
                        open_time_ms: row.get(0),
                        width_ms: row.get(1),
                        bid: ohlc(2),
                        ask: ohlc(6),
                        ticks: u32::try_from(row.get::<i64, _>(10)).unwrap_or(u32::MAX),
                    },
                    chain_id: self.chain(row.get(11))?,
                })
            })
            .collect()
    }

    async fn features(&self, symbol: &Symbol, range: TimeRange) -> Result<Vec<FeatureVectorRecord>, StoreError> {
        let (from, to) = range.ns_bounds();
        let rows = sqlx::query("SELECT time_msc, seq, mid, vals, chain_id FROM features WHERE symbol = ? AND feature_set = ? AND time_ns >= ? AND time_ns < ? ORDER BY time_ns LIMIT ?")
            .bind(symbol.as_str()).bind(crate::FEATURE_SET.id()).bind(from).bind(to).bind(limit(range))
            .fetch_all(&self.pool).await.map_err(|e| self.error(e))?;
        rows.iter()
            .map(|row| {
                let bytes: Vec<u8> = row.get(3);
                if !bytes.len().is_multiple_of(8) {
                    return Err(self.corrupt(format!("feature values of {} bytes", bytes.len())));
                }
                let values = bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
                Ok(FeatureVectorRecord {
                    symbol: symbol.clone(),
                    time_msc: row.get(0),
                    seq: row.get::<i64, _>(1) as u64,
                    mid: row.get(2),
                    values,
                    chain_id: self.chain(row.get(4))?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn close<T>(_store: SqliteHistory, _keep: T) {}

    mod in_memory {
        use super::*;

        async fn open() -> (SqliteHistory, ()) {
            (SqliteHistory::open("sqlite::memory:").await.unwrap(), ())
        }

        crate::history_store_conformance!(crate::history::conformance => open, close);
    }

    mod file {
        use super::*;

        async fn open() -> (SqliteHistory, tempfile::TempDir) {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("history.db").display());
            (SqliteHistory::open(&url).await.unwrap(), dir)
        }

        crate::history_store_conformance!(crate::history::conformance => open, close);
    }

    #[tokio::test]
    async fn a_sqlite_file_keeps_points_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("history.db").display());
        let store = SqliteHistory::open(&url).await.unwrap();
        super::super::conformance::a_large_batch_comes_back_in_order(&store).await;
        drop(store);
        let again = SqliteHistory::open(&url).await.unwrap();
        let all = TimeRange::new(0, i64::MAX / super::super::NS_PER_MS, 100_000);
        assert_eq!(again.ticks(&Symbol::new("USDJPY"), all).await.unwrap(), super::super::conformance::large_batch());
    }
}
