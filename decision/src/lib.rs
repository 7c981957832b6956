//! Decision, risk and execution: what stands between a prediction and the broker.
//!
//! - [`decision`]: predictions to target positions, pure and deterministic.
//! - [`risk`]: pre-trade checks with named rejections, and the trading state.
//! - [`execution`]: client order ids, orders in flight, fills, positions and PnL.
//! - [`order_state`]: the order state machine, with only valid transitions.
//!
//! None of these modules does I/O or reads a clock: callers pass market time in.

pub mod decision;
pub mod execution;
pub mod order_state;
pub mod risk;

pub use decision::{DecisionConfig, DecisionEngine, Sizing, SizingInputs, Target};
pub use execution::{Difference, Execution, ExecutionStats, LOT_SIZE, Position, RecoveredOrder};
pub use order_state::{InvalidTransition, OrderEvent, OrderState, transition};
pub use risk::{
    AccountSnapshot, Facts, OrderCheck, RiskEngine, RiskLimits, RiskRejection, StateChange,
    TradingState,
};
