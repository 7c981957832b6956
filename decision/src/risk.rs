//! Pre-trade risk checks. No I/O: limits and state in, a verdict out.

use std::collections::HashSet;
use std::fmt;

use mtml_core::Symbol;

/// Limits the risk engine enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskLimits {
    /// Symbols that may be traded; empty means none.
    pub symbols: HashSet<Symbol>,
    /// Largest single order, lots.
    pub max_order_lots: f64,
    /// Largest absolute position per symbol, lots.
    pub max_position_lots: f64,
}

/// Whether orders may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TradingState {
    /// Any order within limits.
    Active,
    /// Only orders that reduce exposure.
    Reducing,
    /// No new orders.
    Halted,
}

/// Why risk refused an order. Names are stable: reports count rejections by them.
#[derive(Debug, Clone, PartialEq)]
pub enum RiskRejection {
    /// Symbol not on the whitelist.
    SymbolNotAllowed,
    /// Order larger than the maximum order size.
    MaxOrderSize {
        /// Lots asked.
        lots: f64,
        /// The limit.
        limit: f64,
    },
    /// Position after the order would exceed the maximum.
    MaxPosition {
        /// Absolute position the order would lead to.
        resulting: f64,
        /// The limit.
        limit: f64,
    },
    /// Trading is halted.
    Halted,
    /// Trading is reducing-only and the order would add exposure.
    ReducingOnly,
}

impl RiskRejection {
    /// Stable snake_case name.
    pub fn name(&self) -> &'static str {
        match self {
            RiskRejection::SymbolNotAllowed => "symbol_not_allowed",
            RiskRejection::MaxOrderSize { .. } => "max_order_size",
            RiskRejection::MaxPosition { .. } => "max_position",
            RiskRejection::Halted => "halted",
            RiskRejection::ReducingOnly => "reducing_only",
        }
    }
}

impl fmt::Display for RiskRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RiskRejection::MaxOrderSize { lots, limit } => {
                write!(f, "max_order_size: {lots} lots exceeds {limit}")
            }
            RiskRejection::MaxPosition { resulting, limit } => {
                write!(f, "max_position: position would be {resulting} lots, limit {limit}")
            }
            other => f.write_str(other.name()),
        }
    }
}

/// Checks proposed orders against [`RiskLimits`] and the [`TradingState`].
#[derive(Debug)]
pub struct RiskEngine {
    limits: RiskLimits,
    state: TradingState,
}

/// Rounding slack when comparing lot sizes computed in floating point.
const LOTS_EPSILON: f64 = 1e-9;

impl RiskEngine {
    /// An active engine with `limits`.
    pub fn new(limits: RiskLimits) -> Self {
        Self { limits, state: TradingState::Active }
    }

    /// Current trading state.
    pub fn state(&self) -> TradingState {
        self.state
    }

    /// Changes the trading state.
    pub fn set_state(&mut self, state: TradingState) {
        if state != self.state {
            tracing::warn!(from = ?self.state, to = ?state, "trading state changed");
            self.state = state;
        }
    }

    /// Checks an order of `signed_lots` (positive buys) on `symbol` with the current `position`.
    pub fn check(&self, symbol: &Symbol, signed_lots: f64, position: f64) -> Result<(), RiskRejection> {
        let resulting = position + signed_lots;
        let reduces = resulting.abs() < position.abs() - LOTS_EPSILON
            && resulting.signum() * position.signum() >= 0.0;
        match self.state {
            TradingState::Halted => return Err(RiskRejection::Halted),
            TradingState::Reducing if !reduces => return Err(RiskRejection::ReducingOnly),
            _ => {}
        }
        if !self.limits.symbols.contains(symbol) {
            return Err(RiskRejection::SymbolNotAllowed);
        }
        if signed_lots.abs() > self.limits.max_order_lots + LOTS_EPSILON {
            return Err(RiskRejection::MaxOrderSize {
                lots: signed_lots.abs(),
                limit: self.limits.max_order_lots,
            });
        }
        if resulting.abs() > self.limits.max_position_lots + LOTS_EPSILON && !reduces {
            return Err(RiskRejection::MaxPosition {
                resulting: resulting.abs(),
                limit: self.limits.max_position_lots,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn engine() -> RiskEngine {
        RiskEngine::new(RiskLimits {
            symbols: [Symbol::new("EURUSD")].into(),
            max_order_lots: 0.5,
            max_position_lots: 1.0,
        })
    }

    #[rstest]
    #[case("EURUSD", 0.5, 0.0, None)]
    #[case("EURUSD", 0.51, 0.0, Some("max_order_size"))]
    #[case("EURUSD", -0.5, 0.0, None)]
    #[case("EURUSD", -0.51, 0.0, Some("max_order_size"))]
    #[case("EURUSD", 0.5, 0.5, None)]
    #[case("EURUSD", 0.3, 0.8, Some("max_position"))]
    #[case("EURUSD", -0.3, -0.8, Some("max_position"))]
    #[case("EURUSD", -0.3, 1.2, None)]
    #[case("GBPUSD", 0.1, 0.0, Some("symbol_not_allowed"))]
    fn limits_at_and_across_their_boundaries(
        #[case] symbol: &str,
        #[case] lots: f64,
        #[case] position: f64,
        #[case] rejection: Option<&str>,
    ) {
        let verdict = engine().check(&Symbol::new(symbol), lots, position);
        assert_eq!(verdict.err().map(|r| r.name()), rejection);
    }

    #[test]
    fn reducing_allows_only_smaller_exposure_and_halted_nothing() {
        let mut risk = engine();
        let eurusd = Symbol::new("EURUSD");
        risk.set_state(TradingState::Reducing);
        assert_eq!(risk.check(&eurusd, -0.2, 0.5), Ok(()));
        assert_eq!(risk.check(&eurusd, 0.2, 0.5), Err(RiskRejection::ReducingOnly));
        assert_eq!(risk.check(&eurusd, -1.0, 0.5), Err(RiskRejection::ReducingOnly), "flip adds");
        risk.set_state(TradingState::Halted);
        assert_eq!(risk.check(&eurusd, -0.2, 0.5), Err(RiskRejection::Halted));
    }
}
