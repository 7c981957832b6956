//! Decision, risk and execution: what stands between a prediction and the broker.
//!
//! - [`decision`]: predictions to target positions, pure and deterministic.
//! - [`risk`]: pre-trade checks with named rejections, and the trading state.
//! - [`execution`]: client order ids, orders in flight, fills, positions and PnL.
//! - [`order_state`]: the order state machine, with only valid transitions.
//! - [`figures`]: the business figures of a run (return, Sharpe, drawdown, round trips, costs).
//! - [`desk`]: the three together as the tick path uses them: act once per target, lot
//!   rounding, equity marking, the margin account, and the stale-model guard's facts.
//!
//! None of these modules does I/O: callers pass market time in, and the one wall clock (the
//! stale-model guard's) is injected into the risk engine.

pub mod decision;
pub mod desk;
pub mod execution;
pub mod figures;
pub mod order_state;
pub mod risk;

pub use decision::{DecisionConfig, DecisionEngine, Sizing, SizingInputs, Target};
pub use desk::{Approved, Checked, CloseRefused, Desk, Proposal, TargetDecided};
pub use execution::{Applied, Difference, Execution, ExecutionStats, FillApplied, LOT_SIZE, Position};
pub use order_state::{InvalidTransition, OrderEvent, OrderState, transition};
pub use risk::{
    AccountSnapshot, Facts, ModelInUse, OrderCheck, RiskEngine, RiskLimits, RiskRejection, StateChange,
    StateCommandRefused, TradingState,
};
