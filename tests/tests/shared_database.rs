//! One PostgreSQL database for everything, as users set it up: the journal and the registry
//! open it in either order, and again, each with its migrations in a table of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use mtml_journal::Journal;
use mtml_registry::Registry;
use mtml_test_support::postgres::FreshDatabase;

#[tokio::test]
async fn the_journal_and_the_registry_share_one_postgres_database_in_either_order() {
    for registry_first in [false, true] {
        let database = FreshDatabase::create("mtml_one_db").await;
        let url = database.url.clone();
        if registry_first {
            let registry = Registry::open(&url).await.expect("registry first");
            let journal = Journal::open(&url).await.expect("then the journal");
            journal.close().await;
            drop(registry);
        } else {
            let journal = Journal::open(&url).await.expect("journal first");
            let registry = Registry::open(&url).await.expect("then the registry");
            journal.close().await;
            drop(registry);
        }
        // And again, as every later run does.
        let journal = Journal::open(&url).await.expect("the journal reopened");
        let registry = Registry::open(&url).await.expect("the registry reopened");
        assert!(registry.list().await.unwrap().is_empty());
        assert!(journal.orders(true).await.unwrap().is_empty());
        journal.close().await;
        drop(registry);
        database.drop_database().await;
    }
}
