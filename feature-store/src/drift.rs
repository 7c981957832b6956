//! Feature drift: how far the features the pipeline computes live have moved from those a model
//! was trained on.
//!
//! A [`FeatureDistribution`] is the training features' distribution, feature by feature: the
//! decile edges of each and the share of rows between them. `mtml features export
//! --distribution FILE` writes it from the same tick files the training rows come from; a
//! configuration names it (`model.feature_distribution`). Live, a [`DriftMonitor`] keeps the
//! bin of each feature for the last `window` vectors and gives each feature's population
//! stability index against the training shares ([`mtml_core::stats::psi`]).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::definitions::{FEATURE_COUNT, FEATURE_SET};
use crate::engine::FeatureVector;

/// Bins per feature: deciles of the training rows.
pub const BINS: usize = 10;

/// One feature's training distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBins {
    /// The feature's name.
    pub name: String,
    /// The `BINS - 1` inner edges, ascending (bin `i` holds values below edge `i`, the last
    /// bin the rest).
    pub edges: Vec<f64>,
    /// Training rows per bin.
    pub counts: Vec<u64>,
}

/// The distribution of a model's training features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDistribution {
    /// The feature set the rows follow (`fx@2`).
    pub feature_set: String,
    /// Training rows.
    pub rows: u64,
    /// Each feature, in the set's order.
    pub features: Vec<FeatureBins>,
}

/// Why a distribution cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    /// Not JSON of the expected shape.
    #[error("not a feature distribution: {0}")]
    Format(#[from] serde_json::Error),
    /// Another feature set.
    #[error("the distribution is of feature set {found}, this build computes {expected}")]
    FeatureSet {
        /// In the file.
        found: String,
        /// Computed here.
        expected: String,
    },
    /// Features missing, extra, or with malformed bins.
    #[error("the distribution's features do not match {expected}: {problem}")]
    Features {
        /// Computed here.
        expected: String,
        /// What is wrong.
        problem: String,
    },
}

impl FeatureDistribution {
    /// The distribution of `rows` (each in [`FEATURE_SET`] order).
    pub fn from_rows(rows: &[[f64; FEATURE_COUNT]]) -> Self {
        let features = FEATURE_SET
            .names()
            .enumerate()
            .map(|(i, name)| {
                let mut values: Vec<f64> = rows.iter().map(|r| r[i]).filter(|v| v.is_finite()).collect();
                values.sort_by(f64::total_cmp);
                let edges: Vec<f64> = (1..BINS)
                    .map(|k| values.get((k * values.len() / BINS).min(values.len().saturating_sub(1))).copied().unwrap_or(0.0))
                    .collect();
                let mut counts = vec![0; BINS];
                for value in &values {
                    counts[bin(&edges, *value)] += 1;
                }
                FeatureBins { name: name.to_owned(), edges, counts }
            })
            .collect();
        Self { feature_set: FEATURE_SET.id(), rows: rows.len() as u64, features }
    }

    /// Reads and checks a distribution written by [`FeatureDistribution::to_json`].
    pub fn from_json(text: &str) -> Result<Self, DistributionError> {
        let distribution: Self = serde_json::from_str(text)?;
        let expected = FEATURE_SET.id();
        if distribution.feature_set != expected {
            return Err(DistributionError::FeatureSet { found: distribution.feature_set, expected });
        }
        let names: Vec<&str> = distribution.features.iter().map(|f| f.name.as_str()).collect();
        let wanted: Vec<&str> = FEATURE_SET.names().collect();
        let problem = if names != wanted {
            Some(format!("features {names:?}, expected {wanted:?}"))
        } else {
            distribution
                .features
                .iter()
                .find(|f| f.edges.len() != BINS - 1 || f.counts.len() != BINS || f.edges.windows(2).any(|w| w[0] > w[1]))
                .map(|f| format!("{}: {BINS} bins with ascending edges expected", f.name))
        };
        match problem {
            Some(problem) => Err(DistributionError::Features { expected, problem }),
            None => Ok(distribution),
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The bin of `value` between `edges`.
fn bin(edges: &[f64], value: f64) -> usize {
    edges.partition_point(|edge| *edge <= value)
}

/// The live features' drift from a training distribution, over a sliding window of vectors.
#[derive(Debug)]
pub struct DriftMonitor {
    distribution: FeatureDistribution,
    window: usize,
    /// Each kept vector's bin per feature, oldest first.
    kept: VecDeque<[u8; FEATURE_COUNT]>,
    /// Per feature, kept vectors per bin.
    counts: Vec<[u64; BINS]>,
}

impl DriftMonitor {
    /// Compares the last `window` vectors with `distribution`.
    pub fn new(distribution: FeatureDistribution, window: usize) -> Self {
        Self { window: window.max(1), kept: VecDeque::new(), counts: vec![[0; BINS]; distribution.features.len()], distribution }
    }

    /// Takes a live vector into the window (the oldest leaves when full).
    pub fn observe(&mut self, vector: &FeatureVector) {
        if self.kept.len() == self.window
            && let Some(old) = self.kept.pop_front()
        {
            for (feature, b) in old.iter().enumerate() {
                self.counts[feature][usize::from(*b)] -= 1;
            }
        }
        let mut bins = [0u8; FEATURE_COUNT];
        for (feature, bins_of) in self.distribution.features.iter().enumerate() {
            let b = bin(&bins_of.edges, vector.values[feature]);
            bins[feature] = b as u8;
            self.counts[feature][b] += 1;
        }
        self.kept.push_back(bins);
    }

    /// Vectors the window holds when full.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Vectors in the window.
    pub fn observed(&self) -> usize {
        self.kept.len()
    }

    /// Each feature's PSI against training, in the set's order.
    pub fn psi(&self) -> Vec<(&str, f64)> {
        self.distribution
            .features
            .iter()
            .zip(&self.counts)
            .map(|(training, live)| (training.name.as_str(), mtml_core::stats::psi(&training.counts, live)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rows(n: usize, shift: f64) -> Vec<[f64; FEATURE_COUNT]> {
        (0..n).map(|i| [((i * 7919) % 1000) as f64 / 1000.0 + shift; FEATURE_COUNT]).collect()
    }

    fn vector(values: [f64; FEATURE_COUNT]) -> FeatureVector {
        FeatureVector {
            symbol: mtml_core::Symbol::new("EURUSD"),
            chain_id: mtml_core::ChainIdGenerator::with_prefix(1).next_id(),
            time_msc: 0,
            seq: 0,
            mid: 1.0,
            values,
        }
    }

    #[test]
    fn the_same_features_do_not_drift_and_shifted_ones_do() {
        let training = FeatureDistribution::from_rows(&rows(5_000, 0.0));
        assert!(training.features.iter().all(|f| f.counts.iter().all(|c| (450..=550).contains(c))), "deciles: {:?}", training.features[0]);
        let again = FeatureDistribution::from_json(&training.to_json()).unwrap();
        assert_eq!(again, training);
        let mut same = DriftMonitor::new(training.clone(), 1_000);
        let mut moved = DriftMonitor::new(training, 1_000);
        for row in rows(3_000, 0.0) {
            same.observe(&vector(row));
        }
        for row in rows(3_000, 0.5) {
            moved.observe(&vector(row));
        }
        assert_eq!(same.observed(), 1_000, "the window is bounded");
        assert!(same.psi().iter().all(|(_, psi)| *psi < 0.05), "{:?}", same.psi());
        assert!(moved.psi().iter().all(|(_, psi)| *psi > 0.25), "{:?}", moved.psi());
        // The window slides: back to the training features, the drift goes.
        for row in rows(1_000, 0.0) {
            moved.observe(&vector(row));
        }
        assert!(moved.psi().iter().all(|(_, psi)| *psi < 0.05), "{:?}", moved.psi());
    }

    #[test]
    fn a_distribution_of_another_set_or_shape_is_refused_by_name() {
        let mut other = FeatureDistribution::from_rows(&rows(100, 0.0));
        other.feature_set = "fx@1".into();
        let error = FeatureDistribution::from_json(&other.to_json()).unwrap_err().to_string();
        assert!(error.contains("feature set fx@1"), "{error}");
        let mut short = FeatureDistribution::from_rows(&rows(100, 0.0));
        short.features.pop();
        assert!(FeatureDistribution::from_json(&short.to_json()).unwrap_err().to_string().contains("do not match"));
        assert!(FeatureDistribution::from_json("{\"rows\": 3}").unwrap_err().to_string().starts_with("not a feature distribution"));
    }
}
