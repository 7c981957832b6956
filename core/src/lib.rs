//! Domain types shared by every mtml service.
//!
//! - [`ChainId`] and [`chain`]: the id that follows a tick through every hop, and the spans each
//!   stage records against it.
//! - [`Tick`], [`Bar`], [`Symbol`]: market data as the pipeline sees it.
//! - [`order`]: orders, fills and execution events between execution and the bridge.
//! - [`reconcile`]: a terminal's books against mtml's orders and positions (pure).
//! - [`notice`]: what a person watching should hear about, and where it is emitted.
//! - [`stats`]: the population stability index (model comparison, feature drift).
//! - [`text`]: quoting user input in errors without echoing all of it.
//! - [`clock`]: the bridge-local monotonic clock and the injected wall clock.
//! - [`crash_point`]: named points where crash-recovery tests abort the process.
//!
//! Apart from reading `MTML_CRASH_AT` once, this crate does no I/O and knows no wire format: the bridge owns the EA protocol and
//! `mtml-proto` the gRPC contracts.

pub mod chain;
pub mod clock;
pub mod crash_point;
mod market;
pub mod notice;
pub mod order;
pub mod reconcile;
pub mod stats;
pub mod text;

pub use chain::{ChainId, ChainIdGenerator, ChainLog, LatencyBuckets, Outcome, Stage, StageSpan, TraceParent};
pub use market::{Bar, Ohlc, Symbol, Tick, MINUTE_MS};
pub use notice::{Notice, NoticeKind, NoticeSink, Notices, Summary};
pub use order::{ExecutedOrder, ExecutionEvent, Fill, MarketTimeFills, OrderRequest, OrderSink, OrderType, RecoveredOrder, Side};
