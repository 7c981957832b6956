//! O(1) incremental statistics the features are built from.

/// Exponential moving average; undefined until the first value.
#[derive(Debug, Clone, Copy)]
pub struct Ema {
    alpha: f64,
    value: Option<f64>,
}

impl Ema {
    /// An EMA over `period` samples (alpha = 2 / (period + 1)).
    pub fn with_period(period: usize) -> Self {
        Self::with_alpha(2.0 / (period as f64 + 1.0))
    }

    /// An EMA with smoothing factor `alpha`.
    pub fn with_alpha(alpha: f64) -> Self {
        Self { alpha, value: None }
    }

    /// Takes a sample.
    pub fn update(&mut self, x: f64) -> f64 {
        let next = match self.value {
            Some(v) => v + self.alpha * (x - v),
            None => x,
        };
        self.value = Some(next);
        next
    }

    /// Current value.
    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// Exponentially weighted mean and variance, for z-scores of a stream.
#[derive(Debug, Clone, Copy)]
pub struct EwmStats {
    alpha: f64,
    mean: Option<f64>,
    var: f64,
}

impl EwmStats {
    /// Stats with smoothing factor `alpha`.
    pub fn new(alpha: f64) -> Self {
        Self { alpha, mean: None, var: 0.0 }
    }

    /// Takes a sample and returns its z-score against the stats before it (0 while the variance
    /// is still zero).
    pub fn update(&mut self, x: f64) -> f64 {
        let Some(mean) = self.mean else {
            self.mean = Some(x);
            return 0.0;
        };
        let z = if self.var > 0.0 { (x - mean) / self.var.sqrt() } else { 0.0 };
        let diff = x - mean;
        let incr = self.alpha * diff;
        self.mean = Some(mean + incr);
        self.var = (1.0 - self.alpha) * (self.var + diff * incr);
        z
    }
}

/// Mean and sample standard deviation of the last `window` values (Welford with removal).
#[derive(Debug, Clone)]
pub struct RollingStats {
    window: usize,
    values: std::collections::VecDeque<f64>,
    mean: f64,
    m2: f64,
}

impl RollingStats {
    /// Stats over the last `window` values.
    pub fn new(window: usize) -> Self {
        Self { window: window.max(2), values: Default::default(), mean: 0.0, m2: 0.0 }
    }

    /// Takes a value, dropping the oldest when the window is full.
    pub fn push(&mut self, x: f64) {
        if self.values.len() == self.window
            && let Some(old) = self.values.pop_front()
        {
            let n = self.values.len() as f64;
            let old_mean = self.mean;
            self.mean = if n > 0.0 { (old_mean * (n + 1.0) - old) / n } else { 0.0 };
            self.m2 -= (old - old_mean) * (old - self.mean);
        }
        self.values.push_back(x);
        let n = self.values.len() as f64;
        let delta = x - self.mean;
        self.mean += delta / n;
        self.m2 += delta * (x - self.mean);
        // Rounding can leave a tiny negative sum of squares after many removals.
        self.m2 = self.m2.max(0.0);
    }

    /// True once the window is full.
    pub fn is_full(&self) -> bool {
        self.values.len() == self.window
    }

    /// Sample standard deviation of the window.
    pub fn std_dev(&self) -> f64 {
        let n = self.values.len();
        if n < 2 { 0.0 } else { (self.m2 / (n as f64 - 1.0)).sqrt() }
    }
}

/// Wilder's RSI over a stream of closes.
#[derive(Debug, Clone)]
pub struct Rsi {
    period: f64,
    last: Option<f64>,
    gain: Option<f64>,
    loss: f64,
    seen: usize,
    sum_gain: f64,
    sum_loss: f64,
}

impl Rsi {
    /// RSI over `period` closes.
    pub fn new(period: usize) -> Self {
        Self { period: period as f64, last: None, gain: None, loss: 0.0, seen: 0, sum_gain: 0.0, sum_loss: 0.0 }
    }

    /// Takes a close; returns the RSI once `period` changes have been seen.
    pub fn update(&mut self, close: f64) -> Option<f64> {
        let last = self.last.replace(close)?;
        let change = close - last;
        let (up, down) = (change.max(0.0), (-change).max(0.0));
        match self.gain {
            Some(gain) => {
                self.gain = Some((gain * (self.period - 1.0) + up) / self.period);
                self.loss = (self.loss * (self.period - 1.0) + down) / self.period;
            }
            None => {
                self.seen += 1;
                self.sum_gain += up;
                self.sum_loss += down;
                if self.seen as f64 >= self.period {
                    self.gain = Some(self.sum_gain / self.period);
                    self.loss = self.sum_loss / self.period;
                }
            }
        }
        let gain = self.gain?;
        Some(if self.loss == 0.0 { 100.0 } else { 100.0 - 100.0 / (1.0 + gain / self.loss) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rolling_std_matches_a_direct_computation(
            values in proptest::collection::vec(-1000.0f64..1000.0, 2..200),
            window in 2usize..40,
        ) {
            let mut rolling = RollingStats::new(window);
            for &v in &values {
                rolling.push(v);
            }
            let tail = &values[values.len().saturating_sub(window)..];
            let n = tail.len() as f64;
            let mean = tail.iter().sum::<f64>() / n;
            let var = tail.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
            prop_assert!((rolling.std_dev() - var.sqrt()).abs() < 1e-6 * (1.0 + var.sqrt()));
        }
    }

    #[test]
    fn rsi_of_a_rising_series_is_100_and_of_a_falling_one_0() {
        let mut up = Rsi::new(3);
        let mut down = Rsi::new(3);
        let (mut a, mut b) = (None, None);
        for i in 0..10 {
            a = up.update(f64::from(i));
            b = down.update(-f64::from(i));
        }
        assert_eq!(a, Some(100.0));
        assert_eq!(b, Some(0.0));
    }

    #[test]
    fn rsi_is_undefined_before_its_period() {
        let mut rsi = Rsi::new(14);
        for i in 0..14 {
            assert_eq!(rsi.update(f64::from(i % 3)), None, "at {i}");
        }
        assert!(rsi.update(1.0).is_some());
    }
}
