//! Predictions to target positions.
//!
//! Pure and deterministic: the same predictions and times give the same targets. Time is market
//! time passed in by the caller, never read from a clock here.

use std::collections::HashMap;

use mtml_core::Symbol;

/// Thresholds, sizing and pacing of the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionConfig {
    /// Go long when the probability of "up" is at least this.
    pub buy_above: f32,
    /// Go short when the probability of "up" is at most this.
    pub sell_below: f32,
    /// Size of a position, lots.
    pub lots: f64,
    /// After a target change, keep the target at least this long (market time, ms).
    pub cooldown_ms: i64,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self { buy_above: 0.55, sell_below: 0.45, lots: 0.1, cooldown_ms: 60_000 }
    }
}

/// A new target position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// Signed lots: positive long, negative short, zero flat.
    pub lots: f64,
}

/// Keeps each symbol's target and when it last changed.
#[derive(Debug, Default)]
pub struct DecisionEngine {
    config: DecisionConfig,
    last_change_ms: HashMap<Symbol, i64>,
    targets: HashMap<Symbol, f64>,
}

impl DecisionEngine {
    /// An engine with `config`.
    pub fn new(config: DecisionConfig) -> Self {
        Self { config, ..Self::default() }
    }

    /// The symbol's current target, lots.
    pub fn target(&self, symbol: &Symbol) -> f64 {
        self.targets.get(symbol).copied().unwrap_or(0.0)
    }

    /// Takes a prediction at market time `now_ms`; returns a new target when it changes.
    ///
    /// Between the thresholds the target is kept: a weak signal is no reason to trade.
    pub fn decide(&mut self, symbol: &Symbol, probability_up: f32, now_ms: i64) -> Option<Target> {
        let wanted = if probability_up >= self.config.buy_above {
            self.config.lots
        } else if probability_up <= self.config.sell_below {
            -self.config.lots
        } else {
            return None;
        };
        if wanted == self.target(symbol) {
            return None;
        }
        if let Some(&last) = self.last_change_ms.get(symbol)
            && now_ms - last < self.config.cooldown_ms
        {
            return None;
        }
        self.targets.insert(symbol.clone(), wanted);
        self.last_change_ms.insert(symbol.clone(), now_ms);
        Some(Target { lots: wanted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_cooldown_and_hold() {
        let mut engine = DecisionEngine::new(DecisionConfig::default());
        let eurusd = Symbol::new("EURUSD");
        assert_eq!(engine.decide(&eurusd, 0.50, 0), None, "weak signal holds");
        assert_eq!(engine.decide(&eurusd, 0.55, 0), Some(Target { lots: 0.1 }), "at threshold buys");
        assert_eq!(engine.decide(&eurusd, 0.90, 1_000), None, "already long");
        assert_eq!(engine.decide(&eurusd, 0.10, 59_999), None, "cool-down");
        assert_eq!(engine.decide(&eurusd, 0.45, 60_000), Some(Target { lots: -0.1 }));
        assert_eq!(engine.target(&eurusd), -0.1);
    }

    #[test]
    fn same_inputs_give_same_decisions() {
        let run = || {
            let mut engine = DecisionEngine::new(DecisionConfig::default());
            let symbol = Symbol::new("EURUSD");
            (0..1000)
                .map(|i| engine.decide(&symbol, ((i * 37) % 100) as f32 / 100.0, i * 7_000))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
