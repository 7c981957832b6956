//! Each store's migrations in a table of its own: two stores whose migrations share numbers live
//! in one database (SQLite and PostgreSQL), a database sqlx's own runner migrated is adopted, and
//! one written by a newer mtml is refused by name.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use mtml_database::{OpenError, open};
use sqlx::Row;
use sqlx::migrate::Migrator;

static A: Migrator = sqlx::migrate!("tests/migrations/a");
static A2: Migrator = sqlx::migrate!("tests/migrations/a2");
static B: Migrator = sqlx::migrate!("tests/migrations/b");

async fn count(pool: &sqlx::AnyPool, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(pool).await.unwrap().try_get(0).unwrap()
}

async fn two_stores_share(url: &str) {
    let a = open(url, "a", &A).await.expect("store a");
    let b = open(url, "b", &B).await.expect("store b beside a, its migration 1 as well");
    sqlx::query("INSERT INTO a_orders (id, note) VALUES (1, 'kept')").execute(&a).await.unwrap();
    drop((a, b));
    // Reopened in the other order: nothing is applied twice, nothing is lost.
    let b = open(url, "b", &B).await.expect("store b again");
    let a = open(url, "a", &A).await.expect("store a again");
    assert_eq!(count(&a, "a_orders").await, 1);
    assert_eq!(count(&b, "b_models").await, 0);
    assert_eq!(count(&a, "mtml_a_migrations").await, 1);
    assert_eq!(count(&b, "mtml_b_migrations").await, 1);
}

#[tokio::test]
async fn two_stores_with_the_same_migration_numbers_share_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    two_stores_share(&format!("sqlite://{}?mode=rwc", dir.path().join("one.db").display())).await;
}

#[tokio::test]
async fn two_stores_with_the_same_migration_numbers_share_a_postgres_database() {
    let database = mtml_test_support::postgres::FreshDatabase::create("mtml_shared").await;
    two_stores_share(&database.url).await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_database_migrated_by_sqlx_itself_is_adopted_not_migrated_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        A.run(&pool).await.unwrap();
        sqlx::query("INSERT INTO a_orders (id, note) VALUES (7, 'from an earlier mtml')").execute(&pool).await.unwrap();
        pool.close().await;
    }
    let a = open(&url, "a", &A2).await.expect("adopted, then migration 2 applied");
    assert_eq!(count(&a, "a_orders").await, 1, "the earlier data is there");
    assert_eq!(count(&a, "mtml_a_migrations").await, 2);
    sqlx::query("UPDATE a_orders SET extra = 'x'").execute(&a).await.expect("migration 2 ran");
}

#[tokio::test]
async fn a_database_from_a_newer_mtml_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("new.db").display());
    drop(open(&url, "a", &A2).await.unwrap());
    let error = open(&url, "a", &A).await.expect_err("migration 2 is unknown to this build");
    assert!(matches!(error, OpenError::Schema { store: "a", .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("the a schema") && text.contains("migration 2") && text.contains("newer mtml"), "{text}");
}
