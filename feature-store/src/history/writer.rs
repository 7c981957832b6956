//! Writing history without ever blocking the tick path, and without losing a point when the
//! store is down or slow.
//!
//! [`HistoryWriter::push`] appends to a backlog and returns. The backlog holds up to
//! `memory_points` points in memory; past that, and for as long as anything is waiting on disk,
//! points go to a write-ahead file (JSON lines), so order is kept: memory, then the file, then
//! memory again once the file is drained. A task takes batches of up to `batch_points` from the
//! front, writes them, and only then drops them; a failed write is retried with backoff, the same
//! batch, so nothing is skipped. A rewrite stores a point once (see [`super`]), so a retry after
//! an ambiguous failure does not duplicate it.
//!
//! A point the store refuses as data (or that no store could take: a NaN) is appended to the
//! dead-letter file `WAL.refused` with the reason and counted, never silently dropped. At
//! shutdown with the store still down, the memory backlog is moved into the write-ahead file,
//! which the next run replays first.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;

use super::{HistoryPoint, HistoryStore, StoreError};

/// Settings of a [`HistoryWriter`].
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Points per write (InfluxDB recommends about 5 000).
    pub batch_points: usize,
    /// Points held in memory before they spill to the write-ahead file.
    pub memory_points: usize,
    /// The write-ahead file; `WAL.offset` and `WAL.refused` sit beside it.
    pub wal_path: PathBuf,
    /// First retry delay after a failed write; doubles up to `max_retry`.
    pub retry: Duration,
    /// Longest retry delay.
    pub max_retry: Duration,
    /// After writing a batch smaller than `batch_points`, wait this long for more points before
    /// the next write: fewer, larger writes, and the writer wakes at most this often.
    pub flush_interval: Duration,
}

impl WriterSettings {
    /// Defaults: batches of 5 000, 100 000 points in memory, retries from 100 ms to 5 s.
    pub fn new(wal_path: impl Into<PathBuf>) -> Self {
        Self {
            batch_points: 5_000,
            memory_points: 100_000,
            wal_path: wal_path.into(),
            retry: Duration::from_millis(100),
            max_retry: Duration::from_secs(5),
            flush_interval: Duration::from_millis(50),
        }
    }
}

/// What the writer has done and holds, readable while it runs.
#[derive(Debug, Default, Serialize)]
pub struct WriterStats {
    /// Points pushed.
    pub accepted: AtomicU64,
    /// Points the store took.
    pub written: AtomicU64,
    /// Successful writes.
    pub batches: AtomicU64,
    /// Points waiting in memory.
    pub in_memory: AtomicU64,
    /// Points waiting in the write-ahead file.
    pub in_wal: AtomicU64,
    /// Points that ever went to the write-ahead file.
    pub spilled: AtomicU64,
    /// Points sent to the dead-letter file.
    pub refused: AtomicU64,
    /// Failed writes (each retried).
    pub write_failures: AtomicU64,
    /// True while the store is failing.
    pub outage: AtomicBool,
}

/// A plain copy of [`WriterStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WriterSnapshot {
    /// Points pushed.
    pub accepted: u64,
    /// Points the store took.
    pub written: u64,
    /// Successful writes.
    pub batches: u64,
    /// Points waiting in memory.
    pub in_memory: u64,
    /// Points waiting in the write-ahead file.
    pub in_wal: u64,
    /// Points that ever went to the write-ahead file.
    pub spilled: u64,
    /// Points sent to the dead-letter file.
    pub refused: u64,
    /// Failed writes.
    pub write_failures: u64,
    /// True while the store is failing.
    pub outage: bool,
}

impl WriterStats {
    /// A copy of the counters.
    pub fn snapshot(&self) -> WriterSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterSnapshot {
            accepted: get(&self.accepted),
            written: get(&self.written),
            batches: get(&self.batches),
            in_memory: get(&self.in_memory),
            in_wal: get(&self.in_wal),
            spilled: get(&self.spilled),
            refused: get(&self.refused),
            write_failures: get(&self.write_failures),
            outage: self.outage.load(Ordering::Relaxed),
        }
    }
}

/// The write-ahead file: lines appended at the end, read from `read_offset`.
#[derive(Debug)]
struct Wal {
    path: PathBuf,
    offset_path: PathBuf,
    writer: BufWriter<File>,
    /// Opened with the file, so reads find the same file even if its path is removed or replaced.
    reader: File,
    /// Bytes appended, including those still in `writer`'s buffer.
    end: u64,
    read_offset: u64,
    unread: u64,
}

impl Wal {
    fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let offset_path = sibling(path, "offset");
        let file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
        // Two writers appending to one file would interleave and replay each other's points.
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => std::io::Error::other(format!(
                "{} is in use by another mtml process (give each instance its own features.history_wal)",
                path.display()
            )),
            std::fs::TryLockError::Error(e) => e,
        })?;
        let end = file.metadata()?.len();
        let read_offset = std::fs::read_to_string(&offset_path)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|&o| o <= end)
            .unwrap_or(0);
        let reader = File::open(path)?;
        let mut lines = BufReader::new(reader.try_clone()?);
        lines.seek(SeekFrom::Start(read_offset))?;
        let unread = lines.lines().count() as u64;
        Ok(Self { path: path.to_owned(), offset_path, writer: BufWriter::new(file), reader, end, read_offset, unread })
    }

    fn append(&mut self, point: &HistoryPoint) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(point).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        self.end += line.len() as u64;
        self.unread += 1;
        Ok(())
    }

    /// Up to `max` points from the read offset, and the offset after them.
    fn read_batch(file: File, from: u64, to: u64, max: usize) -> std::io::Result<(Vec<Result<HistoryPoint, String>>, u64)> {
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(from))?;
        let mut offset = from;
        let mut points = Vec::new();
        let mut line = String::new();
        while points.len() < max && offset < to {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break; // a line torn by a crash mid-append: nothing after it was acknowledged
            }
            offset += n as u64;
            points.push(serde_json::from_str(line.trim_end()).map_err(|e| format!("{e}: {}", line.trim_end())));
        }
        Ok((points, offset))
    }

    fn commit(&mut self, offset: u64, points: u64) -> std::io::Result<()> {
        self.read_offset = offset;
        self.unread = self.unread.saturating_sub(points);
        if self.read_offset >= self.end {
            // Drained: start the file again.
            self.writer.flush()?;
            self.writer.get_ref().set_len(0)?;
            self.end = 0;
            self.read_offset = 0;
            self.unread = 0;
        }
        let tmp = sibling(&self.path, "offset.tmp");
        std::fs::write(&tmp, self.read_offset.to_string())?;
        std::fs::rename(tmp, &self.offset_path)
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

#[derive(Debug)]
struct Backlog {
    memory: VecDeque<HistoryPoint>,
    /// Points taken out of `memory` for the write in progress (they count against the bound).
    taken: usize,
    wal: Wal,
    /// The write-ahead file holds unread points: new points go there, behind them.
    spilling: bool,
    closed: bool,
}

/// Takes history points from the pipeline and writes them to a [`HistoryStore`] in the
/// background. See the module documentation.
#[derive(Debug, Clone)]
pub struct HistoryWriter {
    backlog: Arc<Mutex<Backlog>>,
    wake: Arc<Notify>,
    stats: Arc<WriterStats>,
    settings: Arc<WriterSettings>,
}

impl HistoryWriter {
    /// Opens the write-ahead file (replaying what an earlier run left in it first) and starts the
    /// writing task on the current tokio runtime.
    pub fn spawn(
        store: Arc<dyn HistoryStore>,
        settings: WriterSettings,
    ) -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let wal = Wal::open(&settings.wal_path)?;
        let stats = Arc::new(WriterStats::default());
        stats.in_wal.store(wal.unread, Ordering::Relaxed);
        if wal.unread > 0 {
            tracing::info!(points = wal.unread, wal = %settings.wal_path.display(), "history write-ahead file holds points from an earlier run; writing them first");
        }
        let spilling = wal.unread > 0;
        let writer = Self {
            backlog: Arc::new(Mutex::new(Backlog { memory: VecDeque::new(), taken: 0, wal, spilling, closed: false })),
            wake: Arc::new(Notify::new()),
            stats,
            settings: Arc::new(settings),
        };
        let span = tracing::info_span!("task", name = "history_writer");
        let task = tokio::spawn(tracing::Instrument::instrument(writer.clone().run(store), span));
        Ok((writer, task))
    }

    /// Takes a point. Never waits for the store; appends to the write-ahead file only while the
    /// store is behind by more than the memory holds.
    pub fn push(&self, point: HistoryPoint) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if let Err(reason) = point.check() {
            self.dead_letter(&[point], &format!("not storable: {reason}"));
            return;
        }
        let mut backlog = self.backlog.lock();
        if !backlog.spilling && backlog.memory.len() + backlog.taken < self.settings.memory_points {
            backlog.memory.push_back(point);
            self.stats.in_memory.store((backlog.memory.len() + backlog.taken) as u64, Ordering::Relaxed);
        } else {
            if !backlog.spilling {
                tracing::warn!(
                    memory_points = self.settings.memory_points,
                    wal = %self.settings.wal_path.display(),
                    "history backlog is full in memory; spilling to the write-ahead file"
                );
            }
            backlog.spilling = true;
            match backlog.wal.append(&point) {
                Ok(()) => {
                    self.stats.spilled.fetch_add(1, Ordering::Relaxed);
                    self.stats.in_wal.store(backlog.wal.unread, Ordering::Relaxed);
                }
                Err(error) => {
                    // The disk failed too: keep the point in memory rather than lose it.
                    tracing::error!(%error, wal = %self.settings.wal_path.display(), "cannot append to the history write-ahead file; holding the point in memory");
                    backlog.memory.push_back(point);
                    self.stats.in_memory.store(backlog.memory.len() as u64, Ordering::Relaxed);
                }
            }
        }
        drop(backlog);
        self.wake.notify_one();
    }

    /// Asks the task to stop once the backlog is written (or, if the store stays down, moved to
    /// the write-ahead file for the next run).
    pub fn close(&self) {
        self.backlog.lock().closed = true;
        self.wake.notify_one();
    }

    /// Counters.
    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.stats)
    }

    fn dead_letter(&self, points: &[HistoryPoint], reason: &str) {
        self.stats.refused.fetch_add(points.len() as u64, Ordering::Relaxed);
        let path = sibling(&self.settings.wal_path, "refused");
        tracing::error!(points = points.len(), reason, file = %path.display(), "history points refused; kept in the dead-letter file");
        let result = (|| -> std::io::Result<()> {
            let mut file = BufWriter::new(OpenOptions::new().create(true).append(true).open(&path)?);
            for point in points {
                let entry = serde_json::json!({ "reason": reason, "point": point });
                serde_json::to_writer(&mut file, &entry)?;
                file.write_all(b"\n")?;
            }
            file.flush()
        })();
        if let Err(error) = result {
            tracing::error!(%error, file = %path.display(), "cannot write the dead-letter file");
        }
    }

    /// The next batch: from memory if it holds any, else from the write-ahead file.
    fn next_batch(&self) -> std::io::Result<Option<Batch>> {
        let mut backlog = self.backlog.lock();
        if !backlog.memory.is_empty() {
            let n = backlog.memory.len().min(self.settings.batch_points);
            backlog.taken = n;
            // Moved, not copied, so that pushes wait as little as possible: the whole queue in
            // O(1) when it fits in a batch (the usual case), else the front of it.
            let points = if n == backlog.memory.len() {
                let all = std::mem::take(&mut backlog.memory);
                drop(backlog);
                Vec::from(all)
            } else {
                backlog.memory.drain(..n).collect()
            };
            return Ok(Some(Batch::Memory(points)));
        }
        if backlog.wal.unread == 0 {
            return Ok(None);
        }
        backlog.wal.writer.flush()?;
        let (file, from, to) = (backlog.wal.reader.try_clone()?, backlog.wal.read_offset, backlog.wal.end);
        drop(backlog);
        // Only this task reads, so the offset the clone shares with the original is its own.
        let (lines, offset) = Wal::read_batch(file, from, to, self.settings.batch_points)?;
        let count = lines.len() as u64;
        let mut points = Vec::with_capacity(lines.len());
        for line in lines {
            match line {
                Ok(point) => points.push(point),
                Err(error) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, "unreadable line in the history write-ahead file; skipped");
                }
            }
        }
        Ok(Some(Batch::Wal { points, offset, count }))
    }

    /// Drops a written batch from the backlog.
    fn commit(&self, batch: &Batch) -> std::io::Result<()> {
        let mut backlog = self.backlog.lock();
        match batch {
            Batch::Memory(_) => {
                backlog.taken = 0;
                self.stats.in_memory.store(backlog.memory.len() as u64, Ordering::Relaxed);
            }
            Batch::Wal { offset, count, .. } => {
                backlog.wal.commit(*offset, *count)?;
                if backlog.wal.unread == 0 && backlog.spilling {
                    backlog.spilling = false;
                    tracing::info!("history write-ahead file drained");
                }
                self.stats.in_wal.store(backlog.wal.unread, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// At shutdown with the store down: memory first, then the unread rest of the file, into a
    /// fresh write-ahead file for the next run.
    fn persist_backlog(&self, pending: Option<Batch>) -> std::io::Result<u64> {
        let mut backlog = self.backlog.lock();
        backlog.wal.writer.flush()?;
        let (path, from, to) = (backlog.wal.path.clone(), backlog.wal.read_offset, backlog.wal.end);
        let tmp = sibling(&path, "rewrite");
        let mut out = BufWriter::new(File::create(&tmp)?);
        let mut total = 0;
        let taken = match pending {
            Some(Batch::Memory(points)) => points,
            // A batch read from the file is still in the file's unread part.
            _ => Vec::new(),
        };
        for point in taken.iter().chain(&backlog.memory) {
            serde_json::to_writer(&mut out, point)?;
            out.write_all(b"\n")?;
            total += 1;
        }
        let mut reader = BufReader::new(backlog.wal.reader.try_clone()?);
        reader.seek(SeekFrom::Start(from))?;
        let mut rest = std::io::Read::take(reader, to - from);
        total += backlog.wal.unread;
        std::io::copy(&mut rest, &mut out)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        drop(out);
        std::fs::rename(&tmp, &path)?;
        std::fs::write(sibling(&path, "offset"), "0")?;
        backlog.memory.clear();
        backlog.taken = 0;
        backlog.wal = Wal::open(&path)?;
        Ok(total)
    }

    /// Everything is written: no write-ahead file is left behind.
    fn remove_drained_wal(&self) {
        let backlog = self.backlog.lock();
        if backlog.wal.unread == 0 && backlog.memory.is_empty() && backlog.taken == 0 {
            for path in [backlog.wal.path.clone(), backlog.wal.offset_path.clone()] {
                if let Err(error) = std::fs::remove_file(&path)
                    && error.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(%error, file = %path.display(), "cannot remove the drained write-ahead file");
                }
            }
        }
    }

    async fn run(self, store: Arc<dyn HistoryStore>) {
        self.write_until_closed(store).await;
        // The next writer on this file (a restart in the same process) may take it now.
        let backlog = self.backlog.lock();
        let _ = backlog.wal.writer.get_ref().unlock();
    }

    async fn write_until_closed(&self, store: Arc<dyn HistoryStore>) {
        let mut delay = self.settings.retry;
        let mut failures_since_close = 0;
        let mut pending: Option<Batch> = None;
        loop {
            let next = match pending.take() {
                Some(batch) => Ok(Some(batch)),
                None => self.next_batch(),
            };
            let batch = match next {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    if self.backlog.lock().closed {
                        self.remove_drained_wal();
                        return;
                    }
                    let notified = self.wake.notified();
                    // Re-check after registering, so a push in between is not missed (without
                    // taking a batch: that is the next iteration's job).
                    let idle = {
                        let backlog = self.backlog.lock();
                        backlog.memory.is_empty() && backlog.wal.unread == 0 && !backlog.closed
                    };
                    if idle {
                        notified.await;
                    }
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the history write-ahead file; retrying");
                    tokio::time::sleep(self.settings.max_retry).await;
                    continue;
                }
            };
            let result = if batch.points().is_empty() { Ok(()) } else { store.write(batch.points()).await };
            match result {
                Ok(()) => {
                    let n = batch.points().len() as u64;
                    self.stats.written.fetch_add(n, Ordering::Relaxed);
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    if self.stats.outage.swap(false, Ordering::Relaxed) {
                        let s = self.stats.snapshot();
                        tracing::info!(store = %store.describe(), in_memory = s.in_memory, in_wal = s.in_wal, "history store answers again; writing the backlog in order");
                    }
                    delay = self.settings.retry;
                    if let Err(error) = self.commit(&batch) {
                        tracing::error!(%error, "cannot advance the history write-ahead file; its points may be written again (stored once)");
                    }
                    if (n as usize) < self.settings.batch_points && !self.backlog.lock().closed {
                        tokio::time::sleep(self.settings.flush_interval).await;
                    }
                }
                Err(StoreError::Refused { detail, .. }) => {
                    self.dead_letter(batch.points(), &detail);
                    if let Err(error) = self.commit(&batch) {
                        tracing::error!(%error, "cannot advance the history write-ahead file");
                    }
                }
                Err(error) => {
                    self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
                    if !self.stats.outage.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "history store write failed; holding points (memory, then the write-ahead file) and retrying");
                    }
                    if self.backlog.lock().closed {
                        failures_since_close += 1;
                        if failures_since_close >= 3 {
                            match self.persist_backlog(Some(batch)) {
                                Ok(points) => tracing::warn!(points, wal = %self.settings.wal_path.display(), "history store still down at shutdown; backlog kept in the write-ahead file for the next run"),
                                Err(error) => tracing::error!(%error, "history store down at shutdown and the backlog could not be saved"),
                            }
                            return;
                        }
                    }
                    pending = Some(batch);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.settings.max_retry);
                }
            }
        }
    }
}

enum Batch {
    Memory(Vec<HistoryPoint>),
    Wal { points: Vec<HistoryPoint>, offset: u64, count: u64 },
}

impl Batch {
    fn points(&self) -> &[HistoryPoint] {
        match self {
            Batch::Memory(points) | Batch::Wal { points, .. } => points,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{TickRecord, TimeRange, conformance, sqlite::SqliteHistory};
    use mtml_core::Symbol;

    /// SQLite that fails while `down` is set, and refuses ticks of `BAD`.
    #[derive(Debug)]
    struct Flaky {
        inner: SqliteHistory,
        down: AtomicBool,
        calls: AtomicU64,
    }

    #[async_trait::async_trait]
    impl HistoryStore for Flaky {
        fn describe(&self) -> String {
            "flaky history".into()
        }
        async fn write(&self, points: &[HistoryPoint]) -> Result<(), StoreError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) {
                return Err(StoreError::Unavailable { store: self.describe(), detail: "down".into() });
            }
            if points.iter().any(|p| matches!(p, HistoryPoint::Tick(t) if t.symbol.as_str() == "BAD")) {
                return Err(StoreError::Refused { store: self.describe(), detail: "field type conflict".into() });
            }
            self.inner.write(points).await
        }
        async fn ticks(&self, symbol: &Symbol, range: TimeRange) -> Result<Vec<TickRecord>, StoreError> {
            self.inner.ticks(symbol, range).await
        }
        async fn bars(&self, symbol: &Symbol, timeframe: &str, range: TimeRange) -> Result<Vec<super::super::BarRecord>, StoreError> {
            self.inner.bars(symbol, timeframe, range).await
        }
        async fn features(&self, symbol: &Symbol, range: TimeRange) -> Result<Vec<super::super::FeatureVectorRecord>, StoreError> {
            self.inner.features(symbol, range).await
        }
    }

    async fn flaky() -> Arc<Flaky> {
        Arc::new(Flaky { inner: SqliteHistory::open("sqlite::memory:").await.unwrap(), down: AtomicBool::new(false), calls: AtomicU64::new(0) })
    }

    fn settings(dir: &Path) -> WriterSettings {
        WriterSettings {
            batch_points: 7,
            memory_points: 20,
            wal_path: dir.join("history.wal"),
            retry: Duration::from_millis(2),
            max_retry: Duration::from_millis(10),
            flush_interval: Duration::from_millis(1),
        }
    }

    fn tick(i: u64) -> HistoryPoint {
        HistoryPoint::Tick(conformance::tick("EURUSD", 1_000 + i as i64, i, 1.1 + i as f64 * 1e-5))
    }

    async fn stored(store: &Flaky) -> Vec<u64> {
        let all = TimeRange::new(0, 1 << 40, 1_000_000);
        store.ticks(&Symbol::new("EURUSD"), all).await.unwrap().iter().map(|t| t.seq).collect()
    }

    #[tokio::test]
    async fn an_outage_spills_to_the_file_and_everything_arrives_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = flaky().await;
        let (writer, task) = HistoryWriter::spawn(store.clone(), settings(dir.path())).unwrap();
        for i in 0..30 {
            writer.push(tick(i));
        }
        store.down.store(true, Ordering::Relaxed);
        let calls = store.calls.load(Ordering::Relaxed);
        for i in 30..200 {
            writer.push(tick(i));
        }
        while store.calls.load(Ordering::Relaxed) < calls + 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let during = writer.stats().snapshot();
        assert!(during.outage, "the outage shows: {during:?}");
        assert!(during.in_wal > 0 && during.spilled > 0, "the overflow went to the file: {during:?}");
        assert!(during.in_memory <= 20, "memory stays bounded: {during:?}");
        store.down.store(false, Ordering::Relaxed);
        writer.close();
        task.await.unwrap();
        assert_eq!(stored(&store).await, (0..200).collect::<Vec<_>>(), "every point once, in order");
        let after = writer.stats().snapshot();
        assert_eq!((after.accepted, after.written, after.in_memory, after.in_wal, after.outage), (200, 200, 0, 0, false), "{after:?}");
        assert!(!dir.path().join("history.wal").exists(), "no write-ahead file is left behind");
    }

    #[tokio::test]
    async fn a_backlog_left_at_shutdown_is_written_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = flaky().await;
        store.down.store(true, Ordering::Relaxed);
        let (writer, task) = HistoryWriter::spawn(store.clone(), settings(dir.path())).unwrap();
        for i in 0..50 {
            writer.push(tick(i));
        }
        writer.close();
        task.await.unwrap();
        assert!(stored(&store).await.is_empty());
        store.down.store(false, Ordering::Relaxed);
        let (writer, task) = HistoryWriter::spawn(store.clone(), settings(dir.path())).unwrap();
        assert_eq!(writer.stats().snapshot().in_wal, 50, "the next run finds the backlog");
        writer.push(tick(50));
        writer.close();
        task.await.unwrap();
        assert_eq!(stored(&store).await, (0..51).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_second_writer_on_the_same_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = flaky().await;
        let (first, task) = HistoryWriter::spawn(store.clone(), settings(dir.path())).unwrap();
        let error = HistoryWriter::spawn(store.clone(), settings(dir.path())).unwrap_err();
        assert!(error.to_string().contains("in use by another mtml process"), "{error}");
        first.close();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn refused_and_unstorable_points_go_to_the_dead_letter_file_and_the_rest_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = flaky().await;
        let mut s = settings(dir.path());
        s.batch_points = 1;
        let (writer, task) = HistoryWriter::spawn(store.clone(), s).unwrap();
        writer.push(tick(1));
        writer.push(HistoryPoint::Tick(conformance::tick("BAD", 1_000, 2, 1.0)));
        writer.push(HistoryPoint::Tick(conformance::tick("EURUSD", 1_000, 3, f64::NAN)));
        writer.push(tick(4));
        writer.close();
        task.await.unwrap();
        assert_eq!(stored(&store).await, [1, 4]);
        assert_eq!(writer.stats().snapshot().refused, 2);
        let letters = std::fs::read_to_string(dir.path().join("history.wal.refused")).unwrap();
        assert_eq!(letters.lines().count(), 2, "{letters}");
        assert!(letters.contains("field type conflict") && letters.contains("bid is NaN"), "{letters}");
    }
}
