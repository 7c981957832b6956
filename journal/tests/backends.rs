//! The journal conformance suite, one test per behaviour, against real SQLite files, SQLite in
//! memory and a real PostgreSQL server; and what each backend keeps across a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use mtml_journal::conformance::order;
use mtml_journal::{Journal, Record};

mod sqlite_file {
    use super::*;

    async fn open() -> (Journal, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("journal.db").display());
        (Journal::open(&url).await.unwrap(), dir)
    }

    async fn close(journal: Journal, _dir: tempfile::TempDir) {
        journal.close().await;
    }

    mtml_journal::journal_conformance!(open, close);
}

mod sqlite_in_memory {
    use super::*;

    async fn open() -> (Journal, ()) {
        (Journal::open("sqlite::memory:").await.unwrap(), ())
    }

    async fn close(journal: Journal, (): ()) {
        journal.close().await;
    }

    mtml_journal::journal_conformance!(open, close);
}

/// PostgreSQL from `MTML_TEST_POSTGRES_URL`, which `cargo xtask test` sets after starting (or
/// finding) a server. Each test gets a fresh database.
mod postgres {
    use mtml_test_support::postgres::FreshDatabase;

    use super::*;

    async fn open() -> (Journal, FreshDatabase) {
        let database = FreshDatabase::create("mtml_journal").await;
        (Journal::open(&database.url).await.unwrap(), database)
    }

    async fn close(journal: Journal, database: FreshDatabase) {
        journal.close().await;
        database.drop_database().await;
    }

    mtml_journal::journal_conformance!(open, close);
}

fn position(lots: f64) -> Record {
    Record::Position { symbol: "EURUSD".into(), lots, average_price: 1.1, realized_pnl: 0.0, at_ms: 1 }
}

#[tokio::test]
async fn a_sqlite_file_keeps_what_was_written_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("journal.db").display());
    let journal = Journal::open(&url).await.unwrap();
    journal.write(&[position(0.2)]).await.unwrap();
    journal.close().await;
    // Reopening runs the migrations again without harm.
    let reopened = Journal::open(&url).await.unwrap();
    assert_eq!(reopened.positions().await.unwrap().len(), 1, "what was written is still there");
}

#[tokio::test]
async fn postgres_keeps_what_was_written_across_a_reopen() {
    let database = mtml_test_support::postgres::FreshDatabase::create("mtml_journal").await;
    let journal = Journal::open(&database.url).await.unwrap();
    journal.write(&[order("a", 1), order("b", 1), order("lost", 1)]).await.unwrap();
    journal.close().await;
    let reopened = Journal::open(&database.url).await.unwrap();
    assert_eq!(reopened.orders(false).await.unwrap().len(), 3, "what was written is still there");
    reopened.close().await;
    database.drop_database().await;
}
