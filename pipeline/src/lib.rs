//! The tick path as a library: from a tick in to an order out, with no sockets.
//!
//! - [`featurize`]: ingestion and features for one tick, the one code path shared by the live
//!   pipeline and the offline export (so training and serving see identical values).
//! - [`Pipeline`]: every stage on one tick (ingest, features, inference, decision, risk,
//!   execution), each a span of the tick's chain, and the thread that runs it.
//! - [`PipelineBuilder`]: what a pipeline is made of; orders leave through an
//!   [`mtml_core::OrderSink`], so this crate does not name the bridge.
//! - [`PipelineHandle`]: operator commands and model swaps for the running thread.
//! - [`counters`]: progress, counters by stage, and the outcome when it stops.
//! - [`backtest`]: the pipeline driven straight from ticks by a simulated broker in market time.

pub mod backtest;
mod builder;
mod command;
pub mod counters;
pub mod featurize;
mod pipeline;
mod records;

pub use builder::PipelineBuilder;
pub use command::{Closed, PipelineCommand, PipelineHandle, PipelineStopped};
pub use counters::{ModelCounters, PipelineCounters, PipelineOutcome, PipelineProgress, PipelineSnapshot, StateChangeReport};
pub use featurize::{Featurizer, Ingested};
pub use pipeline::Pipeline;
