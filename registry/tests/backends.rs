//! The registry conformance suite, one test per behaviour, against real SQLite files, SQLite in
//! memory and a real PostgreSQL server; and what a file keeps across a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use mtml_registry::{Registry, conformance};

async fn close<T>(registry: Registry, keep: T) {
    drop(registry);
    drop(keep);
}

mod sqlite_file {
    use super::*;

    async fn open() -> (Registry, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("registry.db").display());
        (Registry::open(&url).await.unwrap(), dir)
    }

    mtml_registry::registry_conformance!(open, close);
}

mod sqlite_in_memory {
    use super::*;

    async fn open() -> (Registry, ()) {
        (Registry::open("sqlite::memory:").await.unwrap(), ())
    }

    mtml_registry::registry_conformance!(open, close);
}

/// PostgreSQL from `MTML_TEST_POSTGRES_URL`, which `cargo xtask test` sets. A fresh database
/// per test.
mod postgres {
    use mtml_test_support::postgres::FreshDatabase;

    use super::*;

    async fn open() -> (Registry, FreshDatabase) {
        let database = FreshDatabase::create("mtml_registry").await;
        (Registry::open(&database.url).await.unwrap(), database)
    }

    async fn close(registry: Registry, database: FreshDatabase) {
        drop(registry);
        database.drop_database().await;
    }

    mtml_registry::registry_conformance!(open, close);
}

#[tokio::test]
async fn a_sqlite_file_keeps_versions_and_the_champion_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("registry.db").display());
    let registry = Registry::open(&url).await.unwrap();
    conformance::versions_are_numbered_per_name_and_duplicates_refused(&registry).await;
    conformance::a_change_on_a_stale_revision_is_refused(&registry).await;
    drop(registry);
    let reopened = Registry::open(&url).await.unwrap();
    assert_eq!(reopened.list().await.unwrap().len(), 6, "what was registered is still there");
    assert_eq!(reopened.rollout_state("rollout-fx").await.unwrap().champion, Some(3), "and who is champion");
}
