//! Champion and challenger as the pipeline holds them: which one acts for a chain, and how a
//! registry rollout state becomes a loaded model set.
//!
//! The pipeline thread owns a [`Models`]: the champion's session and, during a rollout, the
//! challenger's. Both predict on the same vector. A shadow challenger's prediction is recorded
//! and never acted on; a canary's is acted on for the chains whose id falls in its share, so a
//! replay of the same ticks splits the same way.

use mtml_core::{ChainId, Symbol};
use mtml_inference::{Model, OnnxRuntime};
use mtml_registry::{RolloutState, VersionRow};

use crate::RolloutError;
use crate::validate::check_against_feature_set;

/// How a challenger takes traffic, as the pipeline applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Predicts beside the champion; never acted on.
    Shadow,
    /// Acted on for `percent` of chains, on `symbols` only if any are given.
    Canary {
        /// 1 to 100.
        percent: u8,
        /// Symbols it may act on; empty for all.
        symbols: Vec<Symbol>,
    },
}

impl Role {
    /// Whether the challenger, not the champion, acts for this chain.
    pub fn challenger_acts(&self, chain_id: ChainId, symbol: &Symbol) -> bool {
        match self {
            Self::Shadow => false,
            Self::Canary { percent, symbols } => {
                (symbols.is_empty() || symbols.contains(symbol)) && chain_id.bucket_percent() < *percent
            }
        }
    }

    /// From the registry's route.
    pub fn from_route(route: &mtml_registry::Route) -> Self {
        match route {
            mtml_registry::Route::Shadow => Self::Shadow,
            mtml_registry::Route::Canary { percent, symbols } => Self::Canary {
                percent: *percent,
                symbols: symbols.iter().map(|s| Symbol::new(s)).collect(),
            },
        }
    }

    /// `shadow`, `canary 20%`, `canary 20% of EURUSD`.
    pub fn describe(&self) -> String {
        match self {
            Self::Shadow => "shadow".into(),
            Self::Canary { percent, symbols } if symbols.is_empty() => format!("canary {percent}%"),
            Self::Canary { percent, symbols } => {
                format!("canary {percent}% of {}", symbols.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
            }
        }
    }
}

/// One model version with this thread's session.
#[derive(Debug)]
pub struct Slot {
    /// `name:version` (or `name:embedded`, `name:file`).
    pub label: String,
    /// When the version was registered or trained, UTC epoch ms, if known (the stale-model guard).
    pub born_ms: Option<i64>,
    /// The session.
    pub model: Model,
}

/// The challenger and its role.
#[derive(Debug)]
pub struct ChallengerSlot {
    /// The version.
    pub slot: Slot,
    /// How it takes traffic.
    pub role: Role,
}

/// The models the pipeline predicts with.
#[derive(Debug)]
pub struct Models {
    /// Acted on, except for a canary's share.
    pub champion: Slot,
    /// On trial, if a rollout is under way.
    pub challenger: Option<ChallengerSlot>,
    /// Registry revision this set came from (0 when not from the registry).
    pub revision: i64,
}

impl Models {
    /// The champion alone.
    pub fn champion_only(champion: Slot) -> Self {
        Self { champion, challenger: None, revision: 0 }
    }

    /// The slot whose prediction acted: the challenger's when `by_challenger`.
    pub fn acting(&self, by_challenger: bool) -> &Slot {
        match (&self.challenger, by_challenger) {
            (Some(c), true) => &c.slot,
            _ => &self.champion,
        }
    }

    /// `champion fx:3, challenger fx:4 on canary 20%`, for logs and reports.
    pub fn describe(&self) -> String {
        match &self.challenger {
            Some(c) => format!("champion {}, challenger {} on {}", self.champion.label, c.slot.label, c.role.describe()),
            None => format!("champion {}", self.champion.label),
        }
    }
}

/// What the two models said about one vector, and which one acts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Predicted {
    /// The probability acted on.
    pub acted: f32,
    /// True when it is the challenger's.
    pub by_challenger: bool,
}


/// Builds the pipeline's models for a registry rollout state: the champion's session and the
/// challenger's, each loaded, checked against the feature set and warmed up. Blocking.
pub fn build_models(runtime: &OnnxRuntime, state: &RolloutState, champion: (&VersionRow, &[u8]), challenger: Option<(&VersionRow, &[u8])>) -> Result<Models, RolloutError> {
    let slot = |row: &VersionRow, bytes: &[u8]| -> Result<Slot, RolloutError> {
        let label = format!("{}:{}", row.name, row.version);
        let model = Model::from_bytes(runtime, &row.name, bytes).map_err(|source| RolloutError::Load { label: label.clone(), source })?;
        check_against_feature_set(&model, true).map_err(|mismatch| RolloutError::Mismatch { label: label.clone(), mismatch })?;
        Ok(Slot { label, born_ms: Some(row.uploaded_ms), model })
    };
    let champion = slot(champion.0, champion.1)?;
    let challenger = match (challenger, &state.challenger) {
        (Some((row, bytes)), Some(c)) => Some(ChallengerSlot { slot: slot(row, bytes)?, role: Role::from_route(&c.route) }),
        _ => None,
    };
    Ok(Models { champion, challenger, revision: state.revision })
}


#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn chain(n: u64) -> ChainId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&7u64.to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
        ChainId::from_bytes(bytes).unwrap()
    }

    #[test]
    fn a_canary_takes_its_share_of_chains_and_only_on_its_symbols() {
        let eurusd = Symbol::new("EURUSD");
        let gbpusd = Symbol::new("GBPUSD");
        let canary = Role::Canary { percent: 20, symbols: vec![eurusd.clone()] };
        let taken = (1..=10_000).filter(|&n| canary.challenger_acts(chain(n), &eurusd)).count();
        assert!((1_800..=2_200).contains(&taken), "{taken} of 10 000 chains");
        assert!((1..=10_000).all(|n| !canary.challenger_acts(chain(n), &gbpusd)), "not on other symbols");
        assert!((1..=10_000).all(|n| !Role::Shadow.challenger_acts(chain(n), &eurusd)), "a shadow never acts");
        let all = Role::Canary { percent: 100, symbols: vec![] };
        assert!((1..=1_000).all(|n| all.challenger_acts(chain(n), &gbpusd)));
        // The same chain always goes the same way.
        let first: Vec<bool> = (1..=500).map(|n| canary.challenger_acts(chain(n), &eurusd)).collect();
        let again: Vec<bool> = (1..=500).map(|n| canary.challenger_acts(chain(n), &eurusd)).collect();
        assert_eq!(first, again);
    }
}
