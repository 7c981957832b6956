//! Tick ingestion.
//!
//! - [`tick_file`]: reading recorded ticks (CSV, gzip, MetaTrader 5 export) for replays.
//! - [`validate`]: what ingestion refuses, by named reason; crossed quotes pass, flagged.
//! - [`bars`]: M1 (and wider) bars from ticks, no bar for an empty minute.
//! - [`grpc`]: the `mtml.v1.Ingestion` tick stream service and the bridge-side forwarder.

pub mod bars;
pub mod dedup;
pub mod grpc;
pub mod tick_file;
mod time_parse;
pub mod validate;

pub use bars::BarBuilder;
pub use tick_file::{FileTick, FileTickStamper, TickFileError, TickFileReader, normalize_symbol, symbol_from_path};
pub use time_parse::parse_timestamp_ms;
pub use validate::{QuoteBand, QuoteState, RejectReason, TickValidator};
