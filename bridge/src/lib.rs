//! The bridge between MetaTrader 5 terminals and the mtml pipeline.
//!
//! - [`wire`]: the EA protocol (framing, messages, connections); only this crate knows it.
//! - [`server`]: the TCP server, one task per terminal, turning ticks into chain-stamped
//!   [`mtml_core::Tick`]s and orders into ORDER frames.
//! - [`router`]: which terminal an order goes to.
//! - [`symbols`]: broker symbol names to canonical ones.
//! - [`simulator`]: a terminal that speaks the same protocol, for replays and tests.

pub mod router;
pub mod server;
pub mod simulator;
pub mod symbols;
pub mod wire;

pub use router::OrderRouter;
pub use server::{Bridge, BridgeConfig, BridgeOutputs, BridgeStats};
pub use simulator::{Pacing, SimSymbol, SimTick, SimulatorConfig, SimulatorReport, run_simulator};
pub use symbols::SymbolMapper;
