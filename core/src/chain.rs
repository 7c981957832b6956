//! Chain ids and the spans recorded against them.
//!
//! The bridge gives every tick a [`ChainId`] the moment it reads it. Every stage that handles the
//! tick, or anything the tick caused (prediction, decision, order, fill), records a [`StageSpan`]
//! into the [`ChainLog`], which keeps per-stage latency histograms and the most recent chains so
//! that a chain can be looked up afterwards.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A W3C trace-context trace id: 16 bytes, written as 32 lowercase hex digits, never all zero.
///
/// Using the trace-id format means chains can be exported to OpenTelemetry unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId([u8; 16]);

impl ChainId {
    /// Builds an id from its bytes; `None` for the all-zero id, which W3C reserves as invalid.
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(Self(bytes))
    }

    /// Builds an id from a byte slice (as carried in protobuf), checking length and non-zero.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().and_then(Self::from_bytes)
    }

    /// The 16 bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// A number in `0..100` derived from the id, stable across runs: canary splits use it so that
    /// a replay routes the same chains the same way.
    pub fn bucket_percent(self) -> u8 {
        let folded = u64::from_be_bytes(self.0[8..].try_into().unwrap_or_default())
            ^ u64::from_be_bytes(self.0[..8].try_into().unwrap_or_default());
        // Fibonacci hashing spreads sequential counters evenly over the buckets.
        let mixed = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        u8::try_from((mixed >> 32) % 100).unwrap_or(0)
    }
}

impl ChainId {
    /// Whether the chain falls in a sample of `basis_points` in 10 000, stable across runs and
    /// processes, and independent of [`ChainId::bucket_percent`] (so sampled chains are not
    /// all on one side of a canary split).
    pub fn sampled(self, basis_points: u16) -> bool {
        if basis_points == 0 {
            return false;
        }
        let folded = u64::from_le_bytes(self.0[8..].try_into().unwrap_or_default())
            .rotate_left(17)
            ^ u64::from_le_bytes(self.0[..8].try_into().unwrap_or_default());
        let mixed = folded.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        (mixed >> 32) % 10_000 < u64::from(basis_points)
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({self})")
    }
}

/// A W3C `traceparent` (`00-TRACEID-PARENTID-FLAGS`): how a chain crosses a gRPC or HTTP call.
/// The trace id is the chain id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The chain (trace) the call belongs to.
    pub chain: ChainId,
    /// The caller's span, 8 bytes, never all zero.
    pub parent: [u8; 8],
    /// The caller sampled the trace (flag 01).
    pub sampled: bool,
}

impl TraceParent {
    /// Parses the header; `None` for anything W3C says to ignore (wrong length, version `ff`,
    /// non-hex, an all-zero id), so a bad header starts a new chain rather than failing a call.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |text: &str| text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if version.len() != 2 || version == "ff" || !hex(version) || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if parent.len() != 16 || flags.len() != 2 || !hex(parent) || !hex(flags) {
            return None;
        }
        let chain: ChainId = trace.parse().ok()?;
        let parent = u64::from_str_radix(parent, 16).ok().filter(|p| *p != 0)?.to_be_bytes();
        let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
        Some(Self { chain, parent, sampled })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{:016x}-{:02x}", self.chain, u64::from_be_bytes(self.parent), u8::from(self.sampled))
    }
}

/// Why a text is not a chain id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainIdParseError {
    /// Not 32 characters long.
    #[error("chain id must be 32 hex digits, got {0} characters")]
    Length(usize),
    /// A character outside `0-9a-f`.
    #[error("chain id must be lowercase hex, found {0:?}")]
    NotHex(char),
    /// All zeros, which W3C reserves as invalid.
    #[error("chain id must not be all zeros")]
    Zero,
}

impl FromStr for ChainId {
    type Err = ChainIdParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 32 {
            return Err(ChainIdParseError::Length(text.chars().count()));
        }
        let mut bytes = [0u8; 16];
        let digits = text.as_bytes();
        for (i, byte) in bytes.iter_mut().enumerate() {
            let hi = hex_value(digits[2 * i])?;
            let lo = hex_value(digits[2 * i + 1])?;
            *byte = hi << 4 | lo;
        }
        Self::from_bytes(bytes).ok_or(ChainIdParseError::Zero)
    }
}

fn hex_value(digit: u8) -> Result<u8, ChainIdParseError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        other => Err(ChainIdParseError::NotHex(char::from(other))),
    }
}

impl Serialize for ChainId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hands out chain ids: a random 64-bit prefix chosen when the generator is made (one per
/// bridge), followed by a counter. Unique across restarts and bridges with overwhelming
/// probability, ordered within one bridge, and costs one atomic increment per tick.
#[derive(Debug)]
pub struct ChainIdGenerator {
    prefix: u64,
    counter: AtomicU64,
}

impl ChainIdGenerator {
    /// A generator with a random prefix.
    pub fn new() -> Self {
        Self::with_prefix(rand::random::<u64>() | 1)
    }

    /// A generator with a given prefix, for reproducible tests. A zero prefix is made non-zero
    /// so that no id is ever all zeros.
    pub fn with_prefix(prefix: u64) -> Self {
        Self { prefix: prefix.max(1), counter: AtomicU64::new(1) }
    }

    /// The next id.
    pub fn next_id(&self) -> ChainId {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.prefix.to_be_bytes());
        bytes[8..].copy_from_slice(&count.to_be_bytes());
        ChainId(bytes)
    }
}

impl Default for ChainIdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

/// A hop in the life of a tick, in the order a tick meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The bridge decodes the tick frame from the terminal.
    BridgeReceive,
    /// Ingestion validates the tick and updates bars.
    Ingest,
    /// Features are updated and the vector stored.
    Features,
    /// The model predicts from the feature vector.
    Inference,
    /// Decision turns the prediction into a target position.
    Decision,
    /// Risk checks the order the target implies.
    Risk,
    /// Execution creates the order and hands it to the bridge.
    Execution,
    /// The bridge writes the order frame to the terminal.
    BridgeSend,
    /// The terminal reported the order's fill back to execution.
    Fill,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 9] = [
        Stage::BridgeReceive,
        Stage::Ingest,
        Stage::Features,
        Stage::Inference,
        Stage::Decision,
        Stage::Risk,
        Stage::Execution,
        Stage::BridgeSend,
        Stage::Fill,
    ];

    /// The stage's name as written in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::BridgeReceive => "bridge_receive",
            Stage::Ingest => "ingest",
            Stage::Features => "features",
            Stage::Inference => "inference",
            Stage::Decision => "decision",
            Stage::Risk => "risk",
            Stage::Execution => "execution",
            Stage::BridgeSend => "bridge_send",
            Stage::Fill => "fill",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a stage's work on a chain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Outcome {
    /// It did its work and the chain went on (or ended as it should).
    #[default]
    Ok,
    /// It refused the chain, for a named reason (`wide_spread`, `max_drawdown`...).
    Rejected(&'static str),
    /// It failed (`inference_error`...).
    Error(&'static str),
}

impl Outcome {
    /// `ok`, `rejected: REASON` or `error: WHAT`, as the history stores it.
    pub fn text(self) -> String {
        match self {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Rejected(reason) => format!("rejected: {reason}"),
            Outcome::Error(what) => format!("error: {what}"),
        }
    }
}

/// One stage's work on a chain: when it started (monotonic ns), how long it took, and how it
/// ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSpan {
    /// Which hop.
    pub stage: Stage,
    /// Start on the process monotonic clock.
    pub start_ns: u64,
    /// Duration in nanoseconds.
    pub duration_ns: u64,
    /// How it ended.
    #[serde(skip)]
    pub outcome: Outcome,
}

/// Latency summary of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// Largest sample, microseconds.
    pub max_us: f64,
}

/// Keeps the spans of recent chains and latency histograms per stage.
///
/// Bounded: at most `capacity` chains are kept, the oldest forgotten first, so a long run does not
/// grow without limit. Histograms cover every chain ever recorded.
pub struct ChainLog {
    inner: Mutex<ChainLogInner>,
}

struct ChainLogInner {
    capacity: usize,
    chains: HashMap<ChainId, Vec<StageSpan>>,
    order: VecDeque<ChainId>,
    stages: HashMap<Stage, Histogram<u64>>,
    tick_to_order: Histogram<u64>,
    /// Chains that went all the way to a fill, oldest first (bounded like `order`).
    filled: VecDeque<ChainId>,
    /// Chains finished (an order, a fill, a rejection, an error) not yet handed to [`ChainLog::take_finished`] (bounded like `order`).
    to_export: VecDeque<ChainId>,
    /// Of the ordinary chains (no order, no refusal, no error), the share in 1/10 000 handed out
    /// too, chosen by chain id ([`ChainId::sampled`]) so that every process keeps the same ones.
    sample_basis_points: u16,
}

fn new_histogram() -> Histogram<u64> {
    // One nanosecond to one hour at three significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

impl ChainLog {
    /// A log that keeps the spans of the last `capacity` chains.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(ChainLogInner {
                capacity: capacity.max(1),
                chains: HashMap::new(),
                order: VecDeque::new(),
                stages: HashMap::new(),
                tick_to_order: new_histogram(),
                filled: VecDeque::new(),
                to_export: VecDeque::new(),
                sample_basis_points: 0,
            }),
        }
    }

    /// Also hands out this share of ordinary chains (in 1/10 000: 100 is 1%) when a process is
    /// done with them ([`ChainLog::end`]).
    pub fn with_sample(self, basis_points: u16) -> Self {
        self.inner.lock().sample_basis_points = basis_points.min(10_000);
        self
    }

    /// Another process kept this chain (refused or failed it there): this process hands out its
    /// own part too, unless it keeps the chain by itself anyway (an order, a refusal or an error
    /// here, or the sample).
    pub fn keep(&self, chain: ChainId) {
        let mut inner = self.inner.lock();
        let kept_anyway = |spans: &Vec<StageSpan>| {
            spans.iter().any(|s| matches!(s.stage, Stage::Execution | Stage::BridgeSend | Stage::Fill) || s.outcome != Outcome::Ok)
        };
        let Some(spans) = inner.chains.get(&chain) else { return };
        if kept_anyway(spans) || chain.sampled(inner.sample_basis_points) {
            return;
        }
        if inner.to_export.len() >= inner.capacity {
            inner.to_export.pop_front();
        }
        inner.to_export.push_back(chain);
    }

    /// This process is done with the chain's tick: a sampled chain is handed to
    /// [`ChainLog::take_finished`] with the spans it has so far.
    pub fn end(&self, chain: ChainId) {
        let mut inner = self.inner.lock();
        if chain.sampled(inner.sample_basis_points) && inner.chains.contains_key(&chain) {
            if inner.to_export.len() >= inner.capacity {
                inner.to_export.pop_front();
            }
            inner.to_export.push_back(chain);
        }
    }

    /// Records that `stage` worked on `chain` from `start_ns` for `duration_ns`, and went on.
    pub fn record(&self, chain: ChainId, stage: Stage, start_ns: u64, duration_ns: u64) {
        self.record_outcome(chain, stage, start_ns, duration_ns, Outcome::Ok);
    }

    /// Records a stage's work with how it ended; a chain a stage rejected or failed is handed to
    /// [`ChainLog::take_finished`] like one that reached a fill.
    pub fn record_outcome(&self, chain: ChainId, stage: Stage, start_ns: u64, duration_ns: u64, outcome: Outcome) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        inner
            .stages
            .entry(stage)
            .or_insert_with(new_histogram)
            .saturating_record(duration_ns.max(1));
        let span = StageSpan { stage, start_ns, duration_ns, outcome };
        match inner.chains.get_mut(&chain) {
            Some(spans) => spans.push(span),
            None => {
                if inner.order.len() >= inner.capacity
                    && let Some(oldest) = inner.order.pop_front()
                {
                    inner.chains.remove(&oldest);
                }
                inner.order.push_back(chain);
                inner.chains.insert(chain, vec![span]);
            }
        }
        if stage == Stage::Fill {
            if inner.filled.len() >= inner.capacity {
                inner.filled.pop_front();
            }
            inner.filled.push_back(chain);
        }
        // An order made (execution), sent (bridge send) or filled: in a split deployment each
        // process sees only some of these, and each keeps its part of the chain.
        if matches!(stage, Stage::Execution | Stage::BridgeSend | Stage::Fill) || outcome != Outcome::Ok {
            if inner.to_export.len() >= inner.capacity {
                inner.to_export.pop_front();
            }
            inner.to_export.push_back(chain);
        }
    }

    /// The chains that led to an order (made, sent or filled), or that a stage rejected or failed,
    /// or that were sampled, since the last call,
    /// each once with all its spans so far (a later partial fill hands the chain out again,
    /// whole).
    pub fn take_finished(&self) -> Vec<(ChainId, Vec<StageSpan>)> {
        let mut inner = self.inner.lock();
        let mut ids: Vec<ChainId> = inner.to_export.drain(..).collect();
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(*id));
        ids.into_iter().filter_map(|id| inner.chains.get(&id).map(|spans| (id, spans.clone()))).collect()
    }

    /// Records the time from the bridge reading a tick to the bridge writing the order it caused.
    pub fn record_tick_to_order(&self, nanos: u64) {
        self.inner.lock().tick_to_order.saturating_record(nanos.max(1));
    }

    /// The spans of a chain, in the order they were recorded, if it is still kept.
    pub fn chain(&self, chain: ChainId) -> Option<Vec<StageSpan>> {
        self.inner.lock().chains.get(&chain).cloned()
    }

    /// The oldest kept chain that went all the way to a fill.
    pub fn first_filled_chain(&self) -> Option<(ChainId, Vec<StageSpan>)> {
        let inner = self.inner.lock();
        inner
            .filled
            .iter()
            .find_map(|id| inner.chains.get(id).map(|spans| (*id, spans.clone())))
    }

    /// Latency summary per stage that has samples, in pipeline order.
    pub fn stage_latencies(&self) -> Vec<(Stage, LatencySummary)> {
        let inner = self.inner.lock();
        Stage::ALL
            .iter()
            .filter_map(|stage| inner.stages.get(stage).map(|h| (*stage, summarize(h))))
            .collect()
    }

    /// Latency summary from tick read to order written.
    pub fn tick_to_order(&self) -> LatencySummary {
        summarize(&self.inner.lock().tick_to_order)
    }

    /// Each stage's latencies as cumulative counts at `bounds_ns` (a Prometheus histogram).
    pub fn stage_buckets(&self, bounds_ns: &[u64]) -> Vec<(Stage, LatencyBuckets)> {
        let inner = self.inner.lock();
        Stage::ALL.iter().filter_map(|stage| inner.stages.get(stage).map(|h| (*stage, buckets(h, bounds_ns)))).collect()
    }

    /// Tick read to order written as cumulative counts at `bounds_ns`.
    pub fn tick_to_order_buckets(&self, bounds_ns: &[u64]) -> LatencyBuckets {
        buckets(&self.inner.lock().tick_to_order, bounds_ns)
    }
}

/// Latencies as cumulative counts: how many were at most each bound (within the histogram's three
/// significant digits), how many in all, and their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyBuckets {
    /// (bound in nanoseconds, samples at most that long).
    pub at_most: Vec<(u64, u64)>,
    /// Samples.
    pub count: u64,
    /// Sum of the samples, nanoseconds.
    pub sum_ns: f64,
}

fn buckets(histogram: &Histogram<u64>, bounds_ns: &[u64]) -> LatencyBuckets {
    LatencyBuckets {
        at_most: bounds_ns.iter().map(|&bound| (bound, histogram.count_between(0, bound))).collect(),
        count: histogram.len(),
        sum_ns: histogram.mean() * histogram.len() as f64,
    }
}

impl Default for ChainLog {
    fn default() -> Self {
        Self::new(65_536)
    }
}

impl fmt::Debug for ChainLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainLog").field("chains", &self.inner.lock().order.len()).finish()
    }
}

fn summarize(histogram: &Histogram<u64>) -> LatencySummary {
    let to_us = |ns: u64| (ns as f64 / 1000.0 * 100.0).round() / 100.0;
    LatencySummary {
        count: histogram.len(),
        p50_us: to_us(histogram.value_at_quantile(0.5)),
        p99_us: to_us(histogram.value_at_quantile(0.99)),
        max_us: to_us(histogram.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_chains_are_handed_out_once_each_whole() {
        let log = ChainLog::default();
        let ids = ChainIdGenerator::with_prefix(2);
        let (a, b) = (ids.next_id(), ids.next_id());
        log.record(a, Stage::Ingest, 0, 5);
        log.record(b, Stage::Ingest, 0, 5);
        log.record(a, Stage::Fill, 10, 5);
        log.record(a, Stage::Fill, 20, 5);
        let taken = log.take_finished();
        assert_eq!(taken.len(), 1, "b has no order; a once though filled twice");
        assert_eq!(taken[0].0, a);
        assert_eq!(taken[0].1.len(), 3);
        assert!(log.take_finished().is_empty(), "nothing new");
        let c = ids.next_id();
        log.record_outcome(c, Stage::Risk, 0, 5, Outcome::Rejected("max_drawdown"));
        let taken = log.take_finished();
        assert_eq!((taken.len(), taken[0].1[0].outcome.text()), (1, "rejected: max_drawdown".to_owned()), "a rejected chain is kept too");
    }

    #[test]
    fn latencies_come_out_as_cumulative_buckets() {
        let log = ChainLog::default();
        let chain = ChainIdGenerator::with_prefix(1).next_id();
        for duration in [500, 2_000, 2_000, 50_000] {
            log.record(chain, Stage::Ingest, 0, duration);
        }
        let stages = log.stage_buckets(&[1_000, 10_000, 100_000]);
        let (_, ingest) = stages.iter().find(|(s, _)| *s == Stage::Ingest).unwrap();
        assert_eq!(ingest.at_most, [(1_000, 1), (10_000, 3), (100_000, 4)]);
        assert_eq!(ingest.count, 4);
        assert!((ingest.sum_ns - 54_500.0).abs() / 54_500.0 < 0.01, "{}", ingest.sum_ns);
    }

    #[test]
    fn a_sample_of_ordinary_chains_is_handed_out_the_same_in_every_process() {
        let ids = ChainIdGenerator::with_prefix(7);
        let chains: Vec<ChainId> = (0..20_000).map(|_| ids.next_id()).collect();
        let kept = |basis_points| {
            let log = ChainLog::new(100_000).with_sample(basis_points);
            for chain in &chains {
                log.record(*chain, Stage::Ingest, 0, 5);
                log.end(*chain);
            }
            log.take_finished().into_iter().map(|(id, _)| id).collect::<Vec<_>>()
        };
        assert!(kept(0).is_empty(), "no sample: ordinary chains are not kept");
        let one_percent = kept(100);
        assert!((150..=250).contains(&one_percent.len()), "about 1% of 20 000: {}", one_percent.len());
        assert_eq!(one_percent, kept(100), "the same chains in another process");
        assert_eq!(kept(10_000).len(), chains.len(), "everything at 100%");
        // Independent of the canary split: the sample is not all on one side of it.
        let challenger = one_percent.iter().filter(|c| c.bucket_percent() < 50).count();
        assert!((50..=150).contains(&challenger), "{challenger} of {} sampled chains under a 50% canary", one_percent.len());
        let log = ChainLog::default().with_sample(10_000);
        log.end(chains[0]);
        assert!(log.take_finished().is_empty(), "a chain with no spans here is not handed out");
    }

    #[test]
    fn a_traceparent_carries_the_chain_and_bad_ones_are_ignored() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(header).unwrap();
        assert_eq!(parsed.chain.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(parsed.sampled);
        assert_eq!(parsed.to_string(), header);
        for bad in [
            "",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A later version may add fields; its first four are read.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more").is_some());
    }

    #[test]
    fn a_chain_kept_elsewhere_is_handed_out_here_once_unless_kept_anyway() {
        let log = ChainLog::default();
        let ids = ChainIdGenerator::with_prefix(9);
        let (refused_there, ordered_here, unknown) = (ids.next_id(), ids.next_id(), ids.next_id());
        log.record(refused_there, Stage::BridgeReceive, 0, 5);
        log.record(ordered_here, Stage::BridgeReceive, 0, 5);
        log.record(ordered_here, Stage::BridgeSend, 10, 5);
        assert_eq!(log.take_finished().len(), 1, "the order's chain");
        for chain in [refused_there, ordered_here, unknown] {
            log.keep(chain);
        }
        let taken = log.take_finished();
        assert_eq!(taken.len(), 1, "only the chain this process would not have kept");
        assert_eq!((taken[0].0, taken[0].1[0].stage), (refused_there, Stage::BridgeReceive));
    }

    #[test]
    fn spans_line_up_on_the_wall_clock() {
        let a = crate::clock::monotonic_ns();
        let b = a + 1_000;
        assert_eq!(crate::clock::unix_ns(b) - crate::clock::unix_ns(a), 1_000);
        let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        assert!((crate::clock::unix_ns(crate::clock::monotonic_ns()) / 1_000_000 - now_ms).abs() < 1_000);
    }
    use proptest::prelude::*;

    #[test]
    fn ids_are_w3c_trace_ids_and_unique() {
        let generator = ChainIdGenerator::with_prefix(0xfeed);
        let a = generator.next_id();
        let b = generator.next_id();
        assert_ne!(a, b);
        assert_eq!(a.to_string(), "000000000000feed0000000000000001");
        assert_eq!(a.to_string().len(), 32);
    }

    #[test]
    fn zero_prefix_never_gives_the_invalid_all_zero_id() {
        let generator = ChainIdGenerator::with_prefix(0);
        assert_ne!(generator.next_id().to_bytes(), [0; 16]);
    }

    #[test]
    fn parse_rejects_bad_text_with_the_reason() {
        assert_eq!("abc".parse::<ChainId>(), Err(ChainIdParseError::Length(3)));
        assert_eq!(
            "0000000000000000000000000000000G".parse::<ChainId>(),
            Err(ChainIdParseError::NotHex('G'))
        );
        assert_eq!("0".repeat(32).parse::<ChainId>(), Err(ChainIdParseError::Zero));
    }

    #[test]
    fn chain_ids_serialize_as_hex_strings() {
        let id: ChainId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"4bf92f3577b34da6a3ce929d0e0e4736\"");
        assert_eq!(serde_json::from_str::<ChainId>(&json).unwrap(), id);
    }

    #[test]
    fn buckets_of_sequential_ids_are_spread_evenly() {
        let generator = ChainIdGenerator::with_prefix(42);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[usize::from(generator.next_id().bucket_percent())] += 1;
        }
        // 1000 expected per bucket; a broken hash puts everything in a few buckets.
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn log_keeps_recent_chains_and_forgets_the_oldest() {
        let log = ChainLog::new(2);
        let generator = ChainIdGenerator::with_prefix(7);
        let ids: Vec<_> = (0..3).map(|_| generator.next_id()).collect();
        for (i, id) in ids.iter().enumerate() {
            log.record(*id, Stage::Ingest, i as u64, 10);
        }
        log.record(ids[2], Stage::Fill, 5, 20);
        assert!(log.chain(ids[0]).is_none());
        assert_eq!(log.chain(ids[2]).unwrap().len(), 2);
        let (filled, spans) = log.first_filled_chain().unwrap();
        assert_eq!(filled, ids[2]);
        assert_eq!(spans[1].stage, Stage::Fill);
        let latencies = log.stage_latencies();
        assert_eq!(latencies[0].0, Stage::Ingest);
        assert_eq!(latencies[0].1.count, 3);
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(bytes in any::<[u8; 16]>()) {
            if let Some(id) = ChainId::from_bytes(bytes) {
                prop_assert_eq!(id.to_string().parse::<ChainId>().unwrap(), id);
            }
        }
    }
}
