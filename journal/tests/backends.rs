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
    let admin_url = std::env::var("MTML_TEST_POSTGRES_URL")
        .expect("MTML_TEST_POSTGRES_URL is not set: run the suite with `cargo xtask test`, which provides PostgreSQL");
    sqlx::any::install_default_drivers();
    let database = format!("mtml_journal_{}_{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000);
    let admin = sqlx::AnyPool::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {database}")).execute(&admin).await.unwrap();
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => panic!("MTML_TEST_POSTGRES_URL must name a database: {admin_url}"),
    };
    let journal = Journal::open(&url).await.unwrap();
    conformance::run_all(&journal).await;
    drop(journal);
    let reopened = Journal::open(&url).await.unwrap();
    assert_eq!(reopened.orders(false).await.unwrap().len(), 3, "what was written is still there");
    reopened.close().await;
    sqlx::query(&format!("DROP DATABASE {database}")).execute(&admin).await.unwrap();
}
