//! Opening a relational store the one way: PostgreSQL (`postgres://...`) or SQLite
//! (`sqlite://path?mode=rwc`, `sqlite::memory:`) through one sqlx `Any` pool, migrated before
//! use. The journal and the model registry both open their databases here.

use std::sync::Once;

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{MigrateError, Migrator};

static DRIVERS: Once = Once::new();

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database refused or is unreachable.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Its schema could not be brought up to date.
    #[error(transparent)]
    Migration(#[from] MigrateError),
}

/// A pool on `url`, with `migrator`'s migrations applied.
///
/// An in-memory SQLite database lives as long as its one connection, so it gets one. The pool
/// has no idle timeout and no lifetime: then sqlx runs no reaper task, whose race on its idle
/// count can spin a runtime thread at 100% (launchbadge/sqlx#3645).
pub async fn open(url: &str, migrator: &Migrator) -> Result<AnyPool, OpenError> {
    DRIVERS.call_once(install_default_drivers);
    let max = if url.contains(":memory:") { 1 } else { 4 };
    let pool = AnyPoolOptions::new().max_connections(max).idle_timeout(None).max_lifetime(None).connect(url).await?;
    migrator.run(&pool).await?;
    Ok(pool)
}
