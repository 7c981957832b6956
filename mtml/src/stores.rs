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
                SqliteHistory::open(url).await.with_context(|| format!("opening features.history {}", mtml_core::text::redact_url(url)))?,
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
        let stores = Self { online, online_writer, history, history_writer, tasks };
        stores.probe().await;
        Ok(stores)
    }

    /// Reads each store once and says which are up: a store that is down at start is not fatal
    /// (its writer keeps what it is given and writes it when the store is back), but it is said.
    async fn probe(&self) {
        let probe = mtml_core::Symbol::new("MTML_PROBE");
        let online = match self.online.latest(&probe, 0).await {
            Ok(_) => "up".to_owned(),
            Err(error) => {
                tracing::warn!(store = %self.online.describe(), %error, "the online feature store is down at start: vectors are kept and written when it is back");
                format!("DOWN ({error})")
            }
        };
        let history = match &self.history {
            None => "none".to_owned(),
            Some(store) => match store.ticks(&probe, mtml_feature_store::history::TimeRange::new(0, 1, 1)).await {
                Ok(_) => "up".to_owned(),
                Err(error) => {
                    tracing::warn!(store = %store.describe(), %error, "the history store is down at start: history waits in memory and the write-ahead file");
                    format!("DOWN ({error})")
                }
            },
        };
        tracing::info!(online = %self.online.describe(), online_state = %online, history = %self.history.as_ref().map_or_else(|| "none".to_owned(), |h| h.describe()), history_state = %history, "feature stores opened");
    }

    /// A handle on the stores' counters, to report on them after the stores have closed.
    pub fn watch(&self) -> StoresWatch {
        StoresWatch {
            online: self.online.describe(),
            online_stats: self.online_writer.stats(),
            history: self.history.as_ref().map(|h| h.describe()),
            history_stats: self.history_writer.as_ref().map(HistoryWriter::stats),
        }
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

/// The stores' counters, kept past their close.
#[derive(Debug, Clone)]
pub struct StoresWatch {
    online: String,
    online_stats: Arc<mtml_feature_store::OnlineWriterStats>,
    history: Option<String>,
    history_stats: Option<Arc<mtml_feature_store::history::writer::WriterStats>>,
}

impl StoresWatch {
    /// Tells `notices` when a store goes down (its writes failing and held for retry) and when
    /// it comes back (with how long it was gone and the backlog it drains), checking twice a
    /// second until `shutdown`.
    pub async fn tell_outages(self, notices: mtml_core::Notices, shutdown: tokio_util::sync::CancellationToken) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut down_since: [Option<std::time::Instant>; 2] = [None, None];
        let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let online = (self.online.clone(), self.online_stats.outage.load(Relaxed), self.online_stats.accepted.load(Relaxed).saturating_sub(self.online_stats.written.load(Relaxed)));
            let history = self.history.clone().zip(self.history_stats.as_ref()).map(|(name, stats)| {
                (name, stats.outage.load(Relaxed), stats.in_memory.load(Relaxed) + stats.in_wal.load(Relaxed))
            });
            for (slot, (store, outage, backlog)) in [Some(online), history].into_iter().enumerate().filter_map(|(i, s)| Some((i, s?))) {
                match (down_since[slot], outage) {
                    (None, true) => {
                        down_since[slot] = Some(std::time::Instant::now());
                        notices.emit(|| mtml_core::Notice::StoreDown { store, error: "writes failing; held and retried".into() });
                    }
                    (Some(since), false) => {
                        down_since[slot] = None;
                        let down_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                        notices.emit(|| mtml_core::Notice::StoreRecovered { store, down_ms, backlog });
                    }
                    _ => {}
                }
            }
        }
    }
}

/// How the feature stores fared during a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoresReport {
    /// The online store.
    pub online: String,
    /// Online writes that failed (retried later).
    pub online_write_failures: u64,
    /// The online store was down when the run ended.
    pub online_down_at_end: bool,
    /// The history store, if any.
    pub history: Option<String>,
    /// History writes that failed (retried later).
    pub history_write_failures: u64,
    /// History points still waiting (memory and write-ahead file) when the run ended.
    pub history_backlog: u64,
    /// The history store was down when the run ended.
    pub history_down_at_end: bool,
}

impl StoresWatch {
    /// The counters now.
    pub fn report(&self) -> StoresReport {
        use std::sync::atomic::Ordering::Relaxed;
        let h = self.history_stats.as_ref();
        StoresReport {
            online: self.online.clone(),
            online_write_failures: self.online_stats.write_failures.load(Relaxed),
            online_down_at_end: self.online_stats.outage.load(Relaxed),
            history: self.history.clone(),
            history_write_failures: h.map_or(0, |s| s.write_failures.load(Relaxed)),
            history_backlog: h.map_or(0, |s| s.in_memory.load(Relaxed) + s.in_wal.load(Relaxed)),
            history_down_at_end: h.is_some_and(|s| s.outage.load(Relaxed)),
        }
    }
}

impl StoresReport {
    /// One line for a summary: `ok`, or what failed.
    pub fn text(&self) -> String {
        let mut problems = Vec::new();
        if self.online_write_failures > 0 || self.online_down_at_end {
            let state = if self.online_down_at_end { ", DOWN at the end" } else { ", recovered" };
            problems.push(format!("online {}: {} failed writes{state}", self.online, self.online_write_failures));
        }
        if let Some(history) = &self.history
            && (self.history_write_failures > 0 || self.history_down_at_end || self.history_backlog > 0)
        {
            let state = if self.history_down_at_end { ", DOWN at the end" } else { "" };
            problems.push(format!(
                "history {history}: {} failed writes, {} points not yet written{state}",
                self.history_write_failures, self.history_backlog
            ));
        }
        if problems.is_empty() { "ok".to_owned() } else { problems.join("; ") }
    }
}
