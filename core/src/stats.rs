//! Statistics shared by the model comparison and feature drift.

/// Population stability index of `actual` against `expected` (counts per bin), with empty bins
/// smoothed so that the index stays finite. Below 0.1 is usually read as stable, above 0.25 as a
/// shift worth acting on.
pub fn psi(expected: &[u64], actual: &[u64]) -> f64 {
    let (te, ta) = (expected.iter().sum::<u64>() as f64, actual.iter().sum::<u64>() as f64);
    if te == 0.0 || ta == 0.0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let pe = (e as f64 / te).max(1e-4);
            let pa = (a as f64 / ta).max(1e-4);
            (pa - pe) * (pa / pe).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_for_equal_distributions_and_grows_with_shift() {
        let a = [10, 20, 30, 40];
        assert!(psi(&a, &a).abs() < 1e-12);
        let small = psi(&a, &[12, 20, 28, 40]);
        let large = psi(&a, &[40, 30, 20, 10]);
        assert!(small > 0.0 && small < 0.05 && large > 0.25, "{small} {large}");
        assert_eq!(psi(&a, &[0, 0, 0, 0]), 0.0, "nothing seen yet");
    }
}
