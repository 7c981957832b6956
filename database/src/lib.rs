//! Opening a relational store the one way: PostgreSQL (`postgres://...`) or SQLite
//! (`sqlite://path?mode=rwc`, `sqlite::memory:`) through one sqlx `Any` pool, migrated before
//! use. The journal and the model registry both open their databases here.
//!
//! Each store records its migrations in a table of its own (`mtml_<store>_migrations`), so the
//! journal and the registry can share one database: sqlx's own runner keeps every store's
//! migrations in one `_sqlx_migrations` table, where the journal's migration 1 and the
//! registry's migration 1 collide. A database migrated by an earlier mtml through
//! `_sqlx_migrations` is adopted: a migration found there with the same version and checksum
//! counts as applied.

use std::sync::Once;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

static DRIVERS: Once = Once::new();

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database refused or is unreachable.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The database server does not answer.
    #[error("cannot reach the {store} database at {place}: {detail}")]
    Unreachable {
        /// The store (`journal`, `registry`).
        store: &'static str,
        /// Host and port.
        place: String,
        /// Why.
        detail: String,
    },
    /// A command that only reads found no store there (and created none).
    #[error("there is no {store} at {place}: nothing has been recorded there yet (is this the configuration of the instance you mean? give it with --config)")]
    Missing {
        /// The store (`journal`, `registry`).
        store: &'static str,
        /// The file or database looked at.
        place: String,
    },
    /// Its schema could not be brought up to date.
    #[error("the {store} schema cannot be brought up to date: {detail}")]
    Schema {
        /// The store (`journal`, `registry`).
        store: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// A pool on `url`, with `migrator`'s migrations for `store` applied.
///
/// An in-memory SQLite database lives as long as its one connection, so it gets one. The pool
/// has no idle timeout and no lifetime: then sqlx runs no reaper task, whose race on its idle
/// count can spin a runtime thread at 100% (launchbadge/sqlx#3645).
pub async fn open(url: &str, store: &'static str, migrator: &Migrator) -> Result<AnyPool, OpenError> {
    DRIVERS.call_once(install_default_drivers);
    reachable(url, store).await?;
    let max = if url.contains(":memory:") { 1 } else { 4 };
    let pool = AnyPoolOptions::new()
        .max_connections(max)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect(url)
        .await?;
    migrate(&pool, store, migrator).await?;
    Ok(pool)
}

/// Like [`open`], for commands that only read: a store that does not exist yet is
/// [`OpenError::Missing`], and nothing is created (no SQLite file, no tables).
pub async fn open_existing(url: &str, store: &'static str, migrator: &Migrator) -> Result<AnyPool, OpenError> {
    if let Some(path) = sqlite_file(url)
        && !path.exists()
    {
        return Err(OpenError::Missing { store, place: path.display().to_string() });
    }
    DRIVERS.call_once(install_default_drivers);
    reachable(url, store).await?;
    let probe = (AnyPoolOptions::new().max_connections(1).idle_timeout(None).max_lifetime(None))
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect(url)
        .await?;
    let table = migrations_table(store);
    let exists = sqlx::query(&format!("SELECT 1 FROM {table} LIMIT 1")).fetch_optional(&probe).await.is_ok()
        || !legacy_migrations(&probe).await.is_empty();
    probe.close().await;
    if !exists {
        return Err(OpenError::Missing { store, place: mtml_core::text::redact_url(url) });
    }
    open(url, store, migrator).await
}

/// How long reaching a database server may take before it counts as down.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `host:port` of a PostgreSQL URL (`postgres://user:pw@host:port/db`, port 5432 when left
/// out); `None` for other databases and for Unix sockets.
pub fn server_address(url: &str) -> Option<String> {
    let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://"))?;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.is_empty() {
        return None;
    }
    let has_port = host_port.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) && !host_port.ends_with(']');
    Some(if has_port { host_port.to_owned() } else { format!("{host_port}:5432") })
}

/// Fails fast, naming the server, when a database server does not accept connections.
async fn reachable(url: &str, store: &'static str) -> Result<(), OpenError> {
    let Some(address) = server_address(url) else { return Ok(()) };
    let unreachable = |detail: String| OpenError::Unreachable { store, place: address.clone(), detail };
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
    }
}

/// The file of a SQLite URL (`sqlite://path?…`, `sqlite:path`); `None` for other databases and
/// for memory.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// The table where `store` records its migrations.
pub fn migrations_table(store: &str) -> String {
    format!("mtml_{store}_migrations")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies the migrations of `migrator` that `store`'s table does not list, each in a
/// transaction with its row; refuses a database that lists a migration this build does not have
/// (written by a newer mtml) or one whose text changed.
async fn migrate(pool: &AnyPool, store: &'static str, migrator: &Migrator) -> Result<(), OpenError> {
    let schema = |detail: String| OpenError::Schema { store, detail };
    let table = migrations_table(store);
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, description TEXT NOT NULL, checksum TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)"
    ))
    .execute(pool)
    .await?;
    let applied: Vec<(i64, String)> = sqlx::query(&format!("SELECT version, checksum FROM {table} ORDER BY version"))
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let legacy = if applied.is_empty() { legacy_migrations(pool).await } else { Vec::new() };
    for (version, checksum) in &applied {
        match migrator.iter().find(|m| m.version == *version) {
            None => {
                return Err(schema(format!(
                    "the database has migration {version}, which this mtml does not know (it was written by a newer mtml; upgrade mtml or use another database)"
                )));
            }
            Some(m) if hex(&m.checksum) != *checksum => {
                return Err(schema(format!("migration {version} ({}) differs from the one applied to the database", m.description)));
            }
            Some(_) => {}
        }
    }
    for migration in migrator.iter().filter(|m| m.migration_type.is_up_migration()) {
        if applied.iter().any(|(v, _)| *v == migration.version) {
            continue;
        }
        let checksum = hex(&migration.checksum);
        let mut tx = pool.begin().await?;
        if !legacy.contains(&(migration.version, checksum.clone())) {
            sqlx::raw_sql(&migration.sql).execute(&mut *tx).await.map_err(|e| {
                schema(format!("migration {} ({}) failed: {e}", migration.version, migration.description))
            })?;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        sqlx::query(&format!("INSERT INTO {table} (version, description, checksum, applied_at_ms) VALUES ($1, $2, $3, $4)"))
            .bind(migration.version)
            .bind(migration.description.to_string())
            .bind(checksum)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// (version, checksum) of the migrations sqlx's own runner recorded, if an earlier mtml used it.
async fn legacy_migrations(pool: &AnyPool) -> Vec<(i64, String)> {
    // The table may not exist; then there is nothing to adopt.
    let Ok(rows) = sqlx::query("SELECT version, checksum FROM _sqlx_migrations WHERE success = TRUE").fetch_all(pool).await else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|row| {
            let version: i64 = row.try_get(0).ok()?;
            let checksum: Vec<u8> = row.try_get(1).ok()?;
            Some((version, hex(&checksum)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_postgres_server_that_is_not_there_is_named_at_once() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("postgres://mtml@127.0.0.1:{port}/mtml");
        static M: Migrator = Migrator::DEFAULT;
        let error = open(&url, "journal", &M).await.unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, OpenError::Unreachable { .. }), "{text}");
        assert!(text.starts_with(&format!("cannot reach the journal database at 127.0.0.1:{port}: ")), "{text}");
    }

    #[test]
    fn urls_name_their_file_and_hide_their_password() {
        assert_eq!(sqlite_file("sqlite://a/b.db?mode=rwc"), Some("a/b.db".into()));
        assert_eq!(sqlite_file("sqlite:j.db"), Some("j.db".into()));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
        assert_eq!(server_address("postgres://u:p@db.example:6543/mtml").as_deref(), Some("db.example:6543"));
        assert_eq!(server_address("postgres://u@127.0.0.1/mtml").as_deref(), Some("127.0.0.1:5432"));
        assert_eq!(server_address("sqlite://x.db"), None);
    }
}
