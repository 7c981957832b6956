//! The `mtml.v1.Features` gRPC service: latest features, history, and the stores' status.

use std::collections::BTreeSet;
use std::sync::Arc;

use mtml_core::clock::{Clock, SystemClock};
use mtml_core::Symbol;
use mtml_feature_store::history::timeframe_width_ms;
use mtml_feature_store::store::OnlineWriterStats;
use mtml_feature_store::{FEATURE_SET, HistoryStore, OnlineStore, TimeRange};
use mtml_feature_store::history::writer::WriterStats;
use mtml_proto::v1::features_server::{Features, FeaturesServer};
use mtml_proto::v1::{
    FeatureValue, GetHistoryRequest, GetLatestRequest, HistoryBar, HistoryFeatures, HistoryKind, HistoryReply, HistoryTick,
    LatestFeatures, StoreStatusReply, StoreStatusRequest, WriterStatus,
};
use tonic::{Request, Response, Status};

use crate::services::status::IntoStatus;
use crate::stores::Stores;

/// Most rows one `GetHistory` returns.
pub const MAX_HISTORY_ROWS: u32 = 100_000;

/// Serves the stores of a [`Stores`].
#[derive(Clone)]
pub struct FeaturesService {
    online: Arc<dyn OnlineStore>,
    history: Option<Arc<dyn HistoryStore>>,
    online_stats: Arc<OnlineWriterStats>,
    history_stats: Option<Arc<WriterStats>>,
    symbols: Arc<BTreeSet<Symbol>>,
    clock: Arc<dyn Clock>,
}


impl FeaturesService {
    /// A service over `stores` for the configured `symbols`; ages against the system clock.
    pub fn new(stores: &Stores, symbols: impl IntoIterator<Item = Symbol>) -> Self {
        Self {
            online: Arc::clone(&stores.online),
            history: stores.history.clone(),
            online_stats: stores.online_writer.stats(),
            history_stats: stores.history_writer.as_ref().map(|w| w.stats()),
            symbols: Arc::new(symbols.into_iter().collect()),
            clock: Arc::new(SystemClock),
        }
    }

    /// The tonic server; replies may be large, so the send limit is lifted.
    pub fn into_server(self) -> FeaturesServer<Self> {
        FeaturesServer::new(self).max_encoding_message_size(usize::MAX)
    }

    fn symbol(&self, name: &str) -> Result<Symbol, Status> {
        let symbol = Symbol::new(name);
        if self.symbols.contains(&symbol) {
            return Ok(symbol);
        }
        let known: Vec<&str> = self.symbols.iter().map(Symbol::as_str).collect();
        Err(Status::not_found(format!("symbol {name:?} is not configured (pipeline.symbols: {})", known.join(", "))))
    }
}

#[tonic::async_trait]
impl Features for FeaturesService {
    async fn get_latest(&self, request: Request<GetLatestRequest>) -> Result<Response<LatestFeatures>, Status> {
        let symbol = self.symbol(&request.get_ref().symbol)?;
        let latest = self
            .online
            .latest(&symbol, self.clock.now_ms())
            .await
            .map_err(IntoStatus::into_status)?
            .ok_or_else(|| Status::not_found(format!("no features for {symbol} yet (it warms up on {} M1 bars)", mtml_feature_store::WARMUP_BARS)))?;
        let v = &latest.vector;
        Ok(Response::new(LatestFeatures {
            symbol: symbol.to_string(),
            feature_set: FEATURE_SET.id(),
            features: FEATURE_SET.names().zip(v.values).map(|(name, value)| FeatureValue { name: name.into(), value }).collect(),
            time_ms: v.time_msc,
            age_ms: latest.age_ms,
            stale: latest.stale,
            chain_id: Some(v.chain_id.into()),
            mid: v.mid,
        }))
    }

    async fn get_history(&self, request: Request<GetHistoryRequest>) -> Result<Response<HistoryReply>, Status> {
        let r = request.into_inner();
        let symbol = self.symbol(&r.symbol)?;
        let history = self.history.as_ref().ok_or_else(|| {
            Status::failed_precondition("history is turned off on this instance (features.history = \"none\")")
        })?;
        if r.from_ms >= r.to_ms {
            return Err(Status::invalid_argument(format!("from_ms ({}) must be before to_ms ({})", r.from_ms, r.to_ms)));
        }
        if r.limit > MAX_HISTORY_ROWS {
            return Err(Status::invalid_argument(format!("limit {} is above the maximum {MAX_HISTORY_ROWS}", r.limit)));
        }
        let limit = if r.limit == 0 { MAX_HISTORY_ROWS } else { r.limit };
        let range = TimeRange::new(r.from_ms, r.to_ms, limit as usize);
        let mut reply = HistoryReply { symbol: symbol.to_string(), ..Default::default() };
        match HistoryKind::try_from(r.kind).unwrap_or(HistoryKind::Unspecified) {
            HistoryKind::Ticks => {
                reply.ticks = history
                    .ticks(&symbol, range)
                    .await
                    .map_err(IntoStatus::into_status)?
                    .into_iter()
                    .map(|t| HistoryTick { time_ms: t.time_msc, seq: t.seq, bid: t.bid, ask: t.ask, source: t.source, chain_id: Some(t.chain_id.into()) })
                    .collect();
            }
            HistoryKind::Bars => {
                if timeframe_width_ms(&r.timeframe).is_none() {
                    return Err(Status::invalid_argument(format!("timeframe {:?} is not one like M1, M5, H1, D1", r.timeframe)));
                }
                reply.bars = history
                    .bars(&symbol, &r.timeframe, range)
                    .await
                    .map_err(IntoStatus::into_status)?
                    .into_iter()
                    .map(|b| {
                        let bar = b.bar;
                        HistoryBar {
                            open_time_ms: bar.open_time_ms,
                            width_ms: bar.width_ms,
                            bid_open: bar.bid.open,
                            bid_high: bar.bid.high,
                            bid_low: bar.bid.low,
                            bid_close: bar.bid.close,
                            ask_open: bar.ask.open,
                            ask_high: bar.ask.high,
                            ask_low: bar.ask.low,
                            ask_close: bar.ask.close,
                            ticks: bar.ticks,
                            chain_id: Some(b.chain_id.into()),
                        }
                    })
                    .collect();
            }
            HistoryKind::Features => {
                reply.feature_set = FEATURE_SET.id();
                reply.feature_names = FEATURE_SET.names().map(str::to_owned).collect();
                reply.features = history
                    .features(&symbol, range)
                    .await
                    .map_err(IntoStatus::into_status)?
                    .into_iter()
                    .map(|f| HistoryFeatures { time_ms: f.time_msc, seq: f.seq, mid: f.mid, values: f.values, chain_id: Some(f.chain_id.into()) })
                    .collect();
            }
            HistoryKind::Unspecified => {
                return Err(Status::invalid_argument("kind must be HISTORY_KIND_TICKS, HISTORY_KIND_BARS or HISTORY_KIND_FEATURES"));
            }
        }
        Ok(Response::new(reply))
    }

    async fn store_status(&self, _: Request<StoreStatusRequest>) -> Result<Response<StoreStatusReply>, Status> {
        use std::sync::atomic::Ordering::Relaxed;
        let o = &self.online_stats;
        let online = WriterStatus {
            store: self.online.describe(),
            outage: o.outage.load(Relaxed),
            accepted: o.accepted.load(Relaxed),
            written: o.written.load(Relaxed),
            write_failures: o.write_failures.load(Relaxed),
            ..Default::default()
        };
        let history = self.history.as_ref().zip(self.history_stats.as_ref()).map(|(store, stats)| {
            let s = stats.snapshot();
            WriterStatus {
                store: store.describe(),
                outage: s.outage,
                accepted: s.accepted,
                written: s.written,
                write_failures: s.write_failures,
                in_memory: s.in_memory,
                in_wal: s.in_wal,
                spilled: s.spilled,
                refused: s.refused,
            }
        });
        Ok(Response::new(StoreStatusReply { online: Some(online), history }))
    }
}
