//! The registry conformance suite against real SQLite files and a real PostgreSQL server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mtml_registry::{Registry, conformance};

#[tokio::test]
async fn sqlite_file_passes_the_suite_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("registry.db").display());
    let registry = Registry::open(&url).await.unwrap();
    conformance::run_all(&registry).await;
    conformance::run_rollout(&registry).await;
    let reopened = Registry::open(&url).await.unwrap();
    assert_eq!(reopened.list().await.unwrap().len(), 6, "what was registered is still there");
    assert_eq!(reopened.rollout_state("rollout-fx").await.unwrap().champion, Some(3), "and who is champion");
}

#[tokio::test]
async fn sqlite_in_memory_passes_the_suite() {
    let registry = Registry::open("sqlite::memory:").await.unwrap();
    conformance::run_all(&registry).await;
    conformance::run_rollout(&registry).await;
}

/// PostgreSQL from `MTML_TEST_POSTGRES_URL`, which `cargo xtask test` sets. A fresh database
/// each run.
#[tokio::test]
async fn postgres_passes_the_suite() {
    let database = mtml_test_support::postgres::FreshDatabase::create("mtml_registry").await;
    let url = database.url.clone();
    let registry = Registry::open(&url).await.unwrap();
    conformance::run_all(&registry).await;
    conformance::run_rollout(&registry).await;
    drop(registry);
    database.drop_database().await;
}
