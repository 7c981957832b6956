//! Decision, risk and execution: what stands between a prediction and the broker.
//!
//! - [`decision`]: predictions to target positions, pure and deterministic.
//! - [`risk`]: pre-trade checks with named rejections, and the trading state.
//! - [`execution`]: client order ids, orders in flight, fills, positions and PnL.
//!
//! None of these modules does I/O or reads a clock: callers pass market time in.

pub mod decision;
pub mod execution;
pub mod risk;

pub use decision::{DecisionConfig, DecisionEngine, Target};
pub use execution::{Execution, ExecutionStats, LOT_SIZE, Position};
pub use risk::{RiskEngine, RiskLimits, RiskRejection, TradingState};
