//! The feature stores of a running instance, opened from `[features]`, with their writers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mtml_feature_store::history::influx::InfluxV1;
use mtml_feature_store::history::sqlite::SqliteHistory;
use mtml_feature_store::{HistoryStore, HistoryWriter, MemoryStore, OnlineStore, OnlineWriter, RedisSettings, RedisStore, WriterSettings};
use tokio::task::JoinHandle;

use crate::config::Config;

/// The online store and history store, and the writers the pipeline hands points to.
pub struct Stores {
    /// The latest vector per symbol, for readers.
    pub online: Arc<dyn OnlineStore>,
    /// Takes the pipeline's vectors off the tick path.
    pub online_writer: OnlineWriter,
    /// History, unless `features.history = "none"`.
    pub history: Option<Arc<dyn HistoryStore>>,
    /// Takes the pipeline's ticks, bars and vectors off the tick path.
    pub history_writer: Option<HistoryWriter>,
    tasks: Vec<JoinHandle<()>>,
}

impl Stores {
    /// Opens the configured stores and starts their writers. A server that is down now is not an
    /// error: writes wait for it (the online store keeps each symbol's latest vector, history
    /// spills to its write-ahead file). A store that cannot be opened at all (a SQLite file in
    /// a folder that does not exist) is.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let f = &config.features;
        let online: Arc<dyn OnlineStore> = if f.online == "memory" {
            Arc::new(MemoryStore::new(config.pipeline.stale_features_ms))
        } else {
            let settings = RedisSettings {
                url: f.online.clone(),
                prefix: "mtml:features".into(),
                ttl: f.online_ttl,
                stale_after_ms: config.pipeline.stale_features_ms,
                timeout: f.store_timeout,
            };
            Arc::new(RedisStore::new(settings)?)
        };
        let (online_writer, online_task) = OnlineWriter::spawn(Arc::clone(&online), Duration::from_millis(200));
        let mut tasks = vec![online_task];
        let history: Option<Arc<dyn HistoryStore>> = match f.history.as_str() {
            "none" => None,
            url if url.starts_with("sqlite:") => Some(Arc::new(
                SqliteHistory::open(url).await.with_context(|| format!("opening features.history {url}"))?,
            )),
            url => Some(Arc::new(InfluxV1::new(url, f.store_timeout)?)),
        };
        let history_writer = match &history {
            None => None,
            Some(store) => {
                let settings = WriterSettings {
                    batch_points: f.history_batch,
                    memory_points: f.history_memory_points,
                    wal_path: f.history_wal.clone(),
                    retry: Duration::from_millis(100),
                    max_retry: Duration::from_secs(5),
                    flush_interval: Duration::from_millis(50),
                };
                let (writer, task) = HistoryWriter::spawn(Arc::clone(store), settings)
                    .with_context(|| format!("opening the history write-ahead file {}", f.history_wal.display()))?;
                tasks.push(task);
                Some(writer)
            }
        };
        tracing::info!(online = %online.describe(), history = ?history.as_ref().map(|h| h.describe()), "feature stores ready");
        Ok(Self { online, online_writer, history, history_writer, tasks })
    }

    /// Writes what the writers hold and stops them. A store still down after a few retries
    /// leaves history in the write-ahead file for the next run.
    pub async fn close(self) {
        self.online_writer.close();
        if let Some(writer) = &self.history_writer {
            writer.close();
        }
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "feature store writer task failed");
            }
        }
    }
}
