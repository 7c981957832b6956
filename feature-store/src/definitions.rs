//! The feature set, declared in one place.
//!
//! A model records the feature set name and version it was trained on; inference refuses a model
//! whose declared set differs from the one this code computes. Changing a definition (formula,
//! parameter or order) means a new version.

/// One feature: its name, the version of its definition, and its parameters in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureDef {
    /// Column name in exports and model signatures.
    pub name: &'static str,
    /// Bumped when the definition changes.
    pub version: u32,
    /// Parameters and units, for people reading a signature.
    pub params: &'static str,
}

/// A versioned, ordered list of features: the model input layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureSet {
    /// Name, e.g. `fx_v1`.
    pub name: &'static str,
    /// Version of the set as a whole.
    pub version: u32,
    /// The features in model input order.
    pub features: &'static [FeatureDef],
}

impl FeatureSet {
    /// `name@version`, as models declare it.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Feature names in input order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        self.features.iter().map(|f| f.name)
    }
}

/// Number of features in [`FEATURE_SET`].
pub const FEATURE_COUNT: usize = 14;

/// Bars a symbol needs before its features are defined (the longest window plus one).
pub const WARMUP_BARS: usize = 31;

/// The feature set this code computes: bar-based trend and volatility, tick-based spread,
/// activity and quote imbalance, and time of day. Returns and distances are in basis points so
/// that all inputs share a scale.
///
/// History: `fx@1` was the first thirteen; `fx@2` added `quote_imbalance` at the end.
pub const FEATURE_SET: FeatureSet = FeatureSet {
    name: "fx",
    version: 2,
    features: &[
        FeatureDef { name: "ret_1", version: 1, params: "log return of M1 mid close over 1 bar, bps" },
        FeatureDef { name: "ret_5", version: 1, params: "log return over 5 M1 bars, bps" },
        FeatureDef { name: "ret_15", version: 1, params: "log return over 15 M1 bars, bps" },
        FeatureDef { name: "mid_vs_close", version: 1, params: "log(mid / last M1 close), bps" },
        FeatureDef { name: "ema_gap_20", version: 1, params: "(mid - EMA20 of M1 closes) / mid, bps" },
        FeatureDef { name: "rsi_14", version: 1, params: "Wilder RSI of M1 closes, 14 bars, 0..100" },
        FeatureDef { name: "atr_14", version: 1, params: "Wilder ATR of M1 mid bars, 14 bars, bps of close" },
        FeatureDef { name: "vol_30", version: 1, params: "std of 1-bar returns over 30 bars (Welford), bps" },
        FeatureDef { name: "spread_bps", version: 1, params: "(ask - bid) / mid, bps; negative when crossed" },
        FeatureDef { name: "spread_z", version: 1, params: "spread z-score, EWMA mean and variance, alpha 0.01" },
        FeatureDef { name: "tick_rate", version: 1, params: "ticks per M1 bar, EWMA alpha 0.2" },
        FeatureDef { name: "tod_sin", version: 1, params: "sin(2 pi UTC time of day)" },
        FeatureDef { name: "tod_cos", version: 1, params: "cos(2 pi UTC time of day)" },
        FeatureDef {
            name: "quote_imbalance",
            version: 1,
            params: "EWMA alpha 0.1 of (sign of bid change + sign of ask change) / 2 per tick, -1..1",
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_constant_matches_the_declaration_and_names_are_unique() {
        assert_eq!(FEATURE_SET.features.len(), FEATURE_COUNT);
        let mut names: Vec<_> = FEATURE_SET.names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FEATURE_COUNT);
        assert_eq!(FEATURE_SET.id(), "fx@2");
    }
}
