//! The journal conformance suite against real SQLite files and a real PostgreSQL server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mtml_journal::{Journal, conformance};

#[tokio::test]
async fn sqlite_file_passes_the_suite_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("journal.db").display());
    let journal = Journal::open(&url).await.unwrap();
    conformance::run_all(&journal).await;
    drop(journal);
    let reopened = Journal::open(&url).await.unwrap();
    assert_eq!(reopened.positions().await.unwrap().len(), 1, "what was written is still there");
}

#[tokio::test]
async fn sqlite_in_memory_passes_the_suite() {
    conformance::run_all(&Journal::open("sqlite::memory:").await.unwrap()).await;
}

/// PostgreSQL from `MTML_TEST_POSTGRES_URL`, which `cargo xtask test` sets after starting (or
/// finding) a server. Each run gets a fresh database.
#[tokio::test]
async fn postgres_passes_the_suite() {
    let database = mtml_test_support::postgres::FreshDatabase::create("mtml_journal").await;
    let url = database.url.clone();
    let journal = Journal::open(&url).await.unwrap();
    conformance::run_all(&journal).await;
    drop(journal);
    let reopened = Journal::open(&url).await.unwrap();
    assert_eq!(reopened.orders(false).await.unwrap().len(), 3, "what was written is still there");
    reopened.close().await;
    database.drop_database().await;
}
