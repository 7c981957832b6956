//! The automatic gate: a verdict on a comparison report.

use crate::comparison::ComparisonReport;

/// The automatic gate on a rollout: promote the challenger when it has done at least as well
/// as the champion on enough resolved signals, roll it back when it drifts or does worse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// Resolved signals each model needs before the gate judges.
    pub min_resolved: u64,
    /// Promote when the challenger's hit rate minus the champion's is at least this, and its
    /// signal PnL minus the champion's at least `promote_pnl_gain_bps`.
    pub promote_hit_rate_gain: f64,
    /// See `promote_hit_rate_gain`.
    pub promote_pnl_gain_bps: f64,
    /// Roll back when the challenger's hit rate minus the champion's is below this.
    pub rollback_hit_rate_gain: f64,
    /// Roll back when the probability shift (PSI) exceeds this.
    pub max_psi: f64,
}

/// What the gate makes of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough evidence yet, or neither bound crossed.
    Wait,
    /// The challenger met the gate.
    Promote(String),
    /// The challenger broke it.
    Rollback(String),
}

impl Gate {
    /// Judges a comparison report.
    pub fn judge(&self, report: &ComparisonReport) -> Verdict {
        let (a, b) = (&report.champion, &report.challenger);
        if a.resolved_signals < self.min_resolved || b.resolved_signals < self.min_resolved {
            return Verdict::Wait;
        }
        let (Some(hit_a), Some(hit_b)) = (a.hit_rate, b.hit_rate) else { return Verdict::Wait };
        let gain = hit_b - hit_a;
        let facts = format!(
            "hit rate {hit_b:.4} against {hit_a:.4} ({} and {} resolved), signal PnL {:+.1} against {:+.1} bps, PSI {:.4}",
            b.resolved_signals, a.resolved_signals, b.signal_pnl_bps, a.signal_pnl_bps, report.probability_psi
        );
        if report.probability_psi > self.max_psi {
            return Verdict::Rollback(format!("probability shift over {}: {facts}", self.max_psi));
        }
        if gain < self.rollback_hit_rate_gain {
            return Verdict::Rollback(format!("hit rate gain under {}: {facts}", self.rollback_hit_rate_gain));
        }
        if gain >= self.promote_hit_rate_gain && b.signal_pnl_bps - a.signal_pnl_bps >= self.promote_pnl_gain_bps {
            return Verdict::Promote(format!("met the gate: {facts}"));
        }
        Verdict::Wait
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::comparison::SideReport;

    fn report(hits: (Option<f64>, Option<f64>), resolved: u64, pnl: (f64, f64), psi: f64) -> ComparisonReport {
        let side = |model: &str, hit_rate, pnl| SideReport {
            model: model.into(),
            mean_probability: 0.5,
            signals: resolved,
            acted_on: 0,
            resolved_signals: resolved,
            hit_rate,
            signal_pnl_bps: pnl,
            orders: 0,
            fills: 0,
            resolved_fills: 0,
            fill_pnl: 0.0,
            latency_p50_us: 5.0,
            latency_p99_us: 9.0,
        };
        ComparisonReport {
            role: "shadow".into(),
            predictions: resolved,
            class_agreement: 0.9,
            signal_agreement: 0.9,
            probability_psi: psi,
            horizon_ms: 60_000,
            champion: side("fx:1", hits.0, pnl.0),
            challenger: side("fx:2", hits.1, pnl.1),
        }
    }

    #[test]
    fn the_gate_waits_for_evidence_then_promotes_or_rolls_back() {
        let gate = Gate { min_resolved: 100, promote_hit_rate_gain: 0.01, promote_pnl_gain_bps: 0.0, rollback_hit_rate_gain: -0.02, max_psi: 0.25 };
        assert_eq!(gate.judge(&report((Some(0.5), Some(0.9)), 99, (0.0, 50.0), 0.0)), Verdict::Wait, "too few resolved");
        assert!(matches!(gate.judge(&report((Some(0.50), Some(0.52)), 100, (1.0, 2.0), 0.05)), Verdict::Promote(r) if r.contains("0.5200 against 0.5000")));
        assert_eq!(gate.judge(&report((Some(0.50), Some(0.52)), 100, (3.0, 2.0), 0.05)), Verdict::Wait, "better hits, worse PnL");
        assert_eq!(gate.judge(&report((Some(0.50), Some(0.505)), 100, (1.0, 2.0), 0.05)), Verdict::Wait, "between the bounds");
        assert!(matches!(gate.judge(&report((Some(0.50), Some(0.47)), 100, (1.0, 2.0), 0.05)), Verdict::Rollback(r) if r.contains("hit rate gain under")));
        assert!(matches!(gate.judge(&report((Some(0.50), Some(0.60)), 100, (1.0, 9.0), 0.4)), Verdict::Rollback(r) if r.contains("probability shift")));
        assert_eq!(gate.judge(&report((None, Some(0.6)), 100, (0.0, 0.0), 0.0)), Verdict::Wait);
    }
}
