//! Broker symbol names to canonical ones and back.
//!
//! Brokers decorate symbols (`EURUSDm`, `EURUSD.r`, `EURUSD-ECN`); models and risk limits speak
//! of `EURUSD`. Mapping happens here, once, at the bridge: nothing behind the bridge sees a broker
//! name.

use std::collections::HashMap;

/// Maps broker symbols to canonical ones: explicit entries first, then suffix detection against
/// the configured canonical symbols.
#[derive(Debug, Clone, Default)]
pub struct SymbolMapper {
    explicit: HashMap<String, String>,
    canonical: Vec<String>,
}

impl SymbolMapper {
    /// A mapper knowing the canonical symbols and explicit broker-to-canonical entries.
    pub fn new(canonical: Vec<String>, explicit: HashMap<String, String>) -> Self {
        let mut canonical = canonical;
        // Longest first, so that `EURUSDm` maps to `EURUSD` even if a shorter name also matches.
        canonical.sort_by_key(|name| std::cmp::Reverse(name.len()));
        Self { explicit, canonical }
    }

    /// The canonical name of a broker symbol, or the broker name unchanged when nothing matches
    /// (ingestion then rejects it as an unknown symbol, counted and logged).
    pub fn to_canonical(&self, broker: &str) -> String {
        if let Some(name) = self.explicit.get(broker) {
            return name.clone();
        }
        self.canonical
            .iter()
            .find(|name| is_suffixed(broker, name))
            .cloned()
            .unwrap_or_else(|| broker.to_owned())
    }
}

/// True when `broker` is `canonical` plus a typical broker suffix: nothing, or a short tail of
/// letters, digits and `.`, `_`, `-`, `#`, `+` that does not itself start another currency code.
fn is_suffixed(broker: &str, canonical: &str) -> bool {
    let Some(rest) = broker.strip_prefix(canonical) else {
        return false;
    };
    rest.len() <= 4
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || ".-_#+".contains(c))
        && !(rest.len() >= 3 && rest.chars().all(|c| c.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("EURUSD", "EURUSD")]
    #[case("EURUSDm", "EURUSD")]
    #[case("EURUSD.r", "EURUSD")]
    #[case("EURUSD-ECN", "EURUSD")]
    #[case("EURUSD#", "EURUSD")]
    #[case("USDJPY.pro", "USDJPY")]
    #[case("GER40", "DE40")]
    #[case("EURUSDCHF", "EURUSDCHF")]
    #[case("XAUUSD", "XAUUSD")]
    fn maps_broker_names(#[case] broker: &str, #[case] canonical: &str) {
        let mapper = SymbolMapper::new(
            vec!["EURUSD".into(), "USDJPY".into(), "DE40".into()],
            HashMap::from([("GER40".to_owned(), "DE40".to_owned())]),
        );
        assert_eq!(mapper.to_canonical(broker), canonical);
    }
}
