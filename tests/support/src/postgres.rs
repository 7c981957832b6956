//! A fresh PostgreSQL database per test, on the server `cargo xtask test` provides.

/// A database created for one test on the server named by `MTML_TEST_POSTGRES_URL`; dropped by
/// [`FreshDatabase::drop_database`].
#[derive(Debug)]
pub struct FreshDatabase {
    admin: sqlx::AnyPool,
    name: String,
    /// Where the database is: hand it to `Journal::open`, `Registry::open`...
    pub url: String,
}

impl FreshDatabase {
    /// Creates `{prefix}_{pid}_{nanos}_{n}`. Panics with the way out when the variable is missing.
    pub async fn create(prefix: &str) -> Self {
        let admin_url = std::env::var("MTML_TEST_POSTGRES_URL")
            .expect("MTML_TEST_POSTGRES_URL is not set: run the suite with `cargo xtask test`, which provides PostgreSQL");
        sqlx::any::install_default_drivers();
        // Unique among the tests of this process however close together they start.
        static CREATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() % 1_000_000);
        let name = format!("{prefix}_{}_{nanos}_{n}", std::process::id());
        let admin = sqlx::AnyPool::connect(&admin_url).await.expect("connecting to the test PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("creating the test database");
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("MTML_TEST_POSTGRES_URL must name a database: {admin_url}"),
        };
        Self { admin, name, url }
    }

    /// Drops the database, closing whatever connections are left.
    pub async fn drop_database(self) {
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name)).execute(&self.admin).await.expect("dropping the test database");
    }
}
