//! The bridge between MetaTrader 5 terminals and the mtml pipeline.
//!
//! - [`wire`]: the EA protocol (framing, messages, connections); only this crate knows it.
//! - [`server`]: the TCP server, one task per terminal, turning ticks into chain-stamped
//!   [`mtml_core::Tick`]s and orders into ORDER frames.
//! - [`sequencer`]: a connection's messages in sequence order, gaps asked for and given up
//!   (pure, tested with paused time).
//! - [`router`]: which terminal an order goes to.
//! - [`grpc`]: the `mtml.v1.Bridge` service, for execution running in another process.
//! - [`accounts`]: what the bridge remembers of an account across connections: where its tick
//!   streams stopped, and orders whose outcome a lost connection left unknown.
//! - [`normalize`]: orders fitted to the symbol's volume step, limits, digits and stops level.
//! - `pipe` (Windows only): the named-pipe server, serving connections like TCP ones.
//! - [`symbols`]: broker symbol names to canonical ones.
//!
//! The terminal simulator that speaks the same protocol lives in its own crate,
//! `mtml-simulator`.

pub mod accounts;
pub mod grpc;
pub mod normalize;
#[cfg(windows)]
pub mod pipe;
pub mod router;
pub mod sequencer;
pub mod server;
pub mod symbols;
pub mod wire;

pub use router::OrderRouter;
pub use server::{Backpressure, Bridge, BridgeConfig, BridgeOutputs, BridgeStats, TerminalTls};
pub use symbols::SymbolMapper;
