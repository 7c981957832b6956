//! Predictions to target positions.
//!
//! Pure and deterministic: the same predictions, inputs and times give the same targets. Time is
//! market time passed in by the caller, never read from a clock here.

use std::collections::HashMap;

use mtml_core::Symbol;

use crate::execution::LOT_SIZE;

/// How big a position is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sizing {
    /// Always this many lots.
    FixedLots(f64),
    /// A notional of this fraction of equity (0.5 = half the equity).
    FractionOfEquity(f64),
    /// Volatility targeted: lose about `risk_per_trade` (quote currency) on a move of
    /// `atr_multiple` ATRs.
    VolatilityTarget {
        /// Quote currency risked per position.
        risk_per_trade: f64,
        /// ATRs to the notional stop.
        atr_multiple: f64,
    },
}

/// Thresholds, agreement, sizing and pacing of the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionConfig {
    /// A model votes long when its probability of "up" is at least this.
    pub buy_above: f32,
    /// A model votes short when its probability of "up" is at most this.
    pub sell_below: f32,
    /// Votes needed, with no vote the other way, to change the target.
    pub min_agreeing: usize,
    /// Position size.
    pub sizing: Sizing,
    /// Largest position the sizing may produce, lots.
    pub max_lots: f64,
    /// After a target change, keep the target at least this long (market time, ms).
    pub cooldown_ms: i64,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            buy_above: 0.55,
            sell_below: 0.45,
            min_agreeing: 1,
            sizing: Sizing::FixedLots(0.1),
            max_lots: 1.0,
            cooldown_ms: 60_000,
        }
    }
}

/// What sizing needs to know at the moment of the decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizingInputs {
    /// Account equity, quote currency.
    pub equity: f64,
    /// Price of the symbol.
    pub price: f64,
    /// ATR in basis points of the price (the `atr_14` feature).
    pub atr_bps: f64,
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

impl Default for Sizing {
    fn default() -> Self {
        Sizing::FixedLots(0.1)
    }
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

    /// Lots for a position, from the sizing rule, rounded down to 0.01 and capped.
    pub fn size(&self, inputs: SizingInputs) -> f64 {
        let raw = match self.config.sizing {
            Sizing::FixedLots(lots) => lots,
            Sizing::FractionOfEquity(fraction) => {
                if inputs.price > 0.0 { inputs.equity * fraction / (LOT_SIZE * inputs.price) } else { 0.0 }
            }
            Sizing::VolatilityTarget { risk_per_trade, atr_multiple } => {
                let atr_price = inputs.atr_bps / 10_000.0 * inputs.price;
                let loss_per_lot = atr_multiple * atr_price * LOT_SIZE;
                if loss_per_lot > 0.0 { risk_per_trade / loss_per_lot } else { 0.0 }
            }
        };
        let lots = (raw.max(0.0) * 100.0 + 1e-9).floor() / 100.0;
        lots.min(self.config.max_lots)
    }

    /// Takes the models' probabilities of "up" at market time `now_ms`; returns a new target when
    /// it changes. Between the thresholds, or when the models disagree, the target is kept: a
    /// weak or contested signal is no reason to trade.
    pub fn decide(
        &mut self,
        symbol: &Symbol,
        probabilities: &[f32],
        inputs: SizingInputs,
        now_ms: i64,
    ) -> Option<Target> {
        let longs = probabilities.iter().filter(|&&p| p >= self.config.buy_above).count();
        let shorts = probabilities.iter().filter(|&&p| p <= self.config.sell_below).count();
        let direction = if longs >= self.config.min_agreeing && shorts == 0 {
            1.0
        } else if shorts >= self.config.min_agreeing && longs == 0 {
            -1.0
        } else {
            return None;
        };
        let current = self.target(symbol);
        if current != 0.0 && current.signum() == direction {
            return None;
        }
        if let Some(&last) = self.last_change_ms.get(symbol)
            && now_ms - last < self.config.cooldown_ms
        {
            return None;
        }
        let wanted = direction * self.size(inputs);
        if wanted == current {
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
    use rstest::rstest;

    const INPUTS: SizingInputs = SizingInputs { equity: 10_000.0, price: 1.25, atr_bps: 4.0 };

    #[test]
    fn thresholds_cooldown_and_hold() {
        let mut engine = DecisionEngine::new(DecisionConfig::default());
        let eurusd = Symbol::new("EURUSD");
        assert_eq!(engine.decide(&eurusd, &[0.50], INPUTS, 0), None, "weak signal holds");
        assert_eq!(engine.decide(&eurusd, &[0.55], INPUTS, 0), Some(Target { lots: 0.1 }), "at threshold buys");
        assert_eq!(engine.decide(&eurusd, &[0.90], INPUTS, 1_000), None, "already long");
        assert_eq!(engine.decide(&eurusd, &[0.10], INPUTS, 59_999), None, "cool-down");
        assert_eq!(engine.decide(&eurusd, &[0.45], INPUTS, 60_000), Some(Target { lots: -0.1 }));
        assert_eq!(engine.target(&eurusd), -0.1);
    }

    #[rstest]
    #[case(&[0.6, 0.6], Some(0.1))]
    #[case(&[0.6, 0.5], None)]
    #[case(&[0.6, 0.4], None)]
    #[case(&[0.4, 0.3, 0.5], Some(-0.1))]
    fn several_models_must_agree(#[case] votes: &[f32], #[case] target: Option<f64>) {
        let config = DecisionConfig { min_agreeing: 2, ..DecisionConfig::default() };
        let mut engine = DecisionEngine::new(config);
        assert_eq!(engine.decide(&Symbol::new("EURUSD"), votes, INPUTS, 0).map(|t| t.lots), target);
    }

    #[rstest]
    #[case(Sizing::FixedLots(0.3), 0.3)]
    // 10 000 x 2.5 / (100 000 x 1.25) = 0.2 lots.
    #[case(Sizing::FractionOfEquity(2.5), 0.2)]
    // ATR 4 bps of 1.25 = 0.0005; 2 ATRs = 0.001 = 100 per lot; risking 50 gives 0.5 lots.
    #[case(Sizing::VolatilityTarget { risk_per_trade: 50.0, atr_multiple: 2.0 }, 0.5)]
    // Capped at max_lots.
    #[case(Sizing::VolatilityTarget { risk_per_trade: 5_000.0, atr_multiple: 2.0 }, 1.0)]
    fn sizing_rules(#[case] sizing: Sizing, #[case] lots: f64) {
        let engine = DecisionEngine::new(DecisionConfig { sizing, ..DecisionConfig::default() });
        assert!((engine.size(INPUTS) - lots).abs() < 1e-12, "{} vs {lots}", engine.size(INPUTS));
    }

    #[test]
    fn zero_volatility_sizes_nothing_instead_of_dividing_by_zero() {
        let sizing = Sizing::VolatilityTarget { risk_per_trade: 50.0, atr_multiple: 2.0 };
        let engine = DecisionEngine::new(DecisionConfig { sizing, ..DecisionConfig::default() });
        assert_eq!(engine.size(SizingInputs { atr_bps: 0.0, ..INPUTS }), 0.0);
    }

    #[test]
    fn same_inputs_give_same_decisions() {
        let run = || {
            let mut engine = DecisionEngine::new(DecisionConfig::default());
            let symbol = Symbol::new("EURUSD");
            (0..1000)
                .map(|i| engine.decide(&symbol, &[((i * 37) % 100) as f32 / 100.0], INPUTS, i * 7_000))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
