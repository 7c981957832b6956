//! The business figures of a run, from its deals and the prices it saw: PnL and return, Sharpe
//! and Sortino ratios from hourly returns, maximum drawdown and how long it lasted, round trips
//! with their hit rate and holding time, time in the market, and costs.
//!
//! Feed [`FiguresBuilder`] the quotes in market-time order ([`FiguresBuilder::mark`]) and the
//! deals whenever they are known ([`FiguresBuilder::deal`]): a deal waits for the first quote at
//! or after its time and goes in just before it, deals in time order. Nothing here reads a
//! clock; the same inputs give the same figures.

use std::collections::HashMap;

use serde::Serialize;

use crate::execution::Position;

const HOUR_MS: i64 = 3_600_000;
/// Hours in a year of trading hours, for annualising hourly ratios: 252 days of 24 hours (FX
/// trades around the clock on weekdays; hours without a quote are not periods).
pub const HOURS_PER_YEAR: f64 = 252.0 * 24.0;

/// What a run earned and how it got there. Money is in the quote currency, as the PnL.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Realised plus unrealised PnL at the end, after commission.
    pub pnl: f64,
    /// `pnl` over the starting equity, percent.
    pub return_pct: f64,
    /// Annualised Sharpe ratio of hourly returns (mean over standard deviation, times the square
    /// root of [`HOURS_PER_YEAR`]); `None` with fewer than two hours or no variation.
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio of hourly returns (mean over the downside deviation).
    pub sortino: Option<f64>,
    /// Hours with a quote, the periods of the two ratios.
    pub hours: u64,
    /// Largest fall of equity from a peak, money.
    pub max_drawdown: f64,
    /// The same, percent of that peak.
    pub max_drawdown_pct: f64,
    /// From the peak before the largest fall to the recovery of that peak (or the end), ms.
    pub max_drawdown_duration_ms: i64,
    /// Round trips closed: a position from flat (or a flip) back to flat (or the next flip).
    pub trades: u64,
    /// Share of the closed round trips that made money; `None` without any.
    pub hit_rate: Option<f64>,
    /// Mean time a closed round trip was open, ms.
    pub average_holding_ms: Option<f64>,
    /// Share of the run's time with a position open.
    pub exposure: f64,
    /// Lots traded, both sides.
    pub lots_traded: f64,
    /// Commission paid (`lots_traded` times the commission per lot).
    pub commission: f64,
    /// Equity through the run: the last value of each interval, at most [`SERIES_POINTS`]
    /// intervals (one minute, doubled as often as needed), for charts.
    pub equity_curve: Vec<(i64, f64)>,
    /// Each symbol's mid through the run, sampled the same way.
    pub prices: std::collections::BTreeMap<String, Vec<(i64, f64)>>,
}

/// The most points a chart series keeps, whatever the run's length.
pub const SERIES_POINTS: usize = 2_048;

/// A value through time with bounded memory: the last value of each interval; when there are
/// more than [`SERIES_POINTS`], every other point goes and the interval doubles.
#[derive(Debug, Clone)]
struct Series {
    step_ms: i64,
    points: Vec<(i64, f64)>,
}

impl Default for Series {
    fn default() -> Self {
        Self { step_ms: 60_000, points: Vec::new() }
    }
}

impl Series {
    fn push(&mut self, time_ms: i64, value: f64) {
        match self.points.last_mut() {
            Some(last) if last.0.div_euclid(self.step_ms) == time_ms.div_euclid(self.step_ms) => *last = (time_ms, value),
            _ => self.points.push((time_ms, value)),
        }
        if self.points.len() > SERIES_POINTS {
            self.step_ms *= 2;
            let step = self.step_ms;
            let mut kept: Vec<(i64, f64)> = Vec::with_capacity(self.points.len() / 2 + 1);
            for point in self.points.drain(..) {
                match kept.last_mut() {
                    Some(last) if last.0.div_euclid(step) == point.0.div_euclid(step) => *last = point,
                    _ => kept.push(point),
                }
            }
            self.points = kept;
        }
    }
}

#[derive(Debug, Default)]
struct SymbolBook {
    position: Position,
    mid: Option<f64>,
    /// When the open round trip opened, and its realised PnL so far.
    open_since: Option<i64>,
    trip_pnl: f64,
}

/// Accumulates a run's figures in market time.
#[derive(Debug)]
pub struct FiguresBuilder {
    starting_equity: f64,
    commission_per_lot: f64,
    books: HashMap<String, SymbolBook>,
    commission: f64,
    lots_traded: f64,
    trips: Vec<(f64, i64)>,
    first_ms: Option<i64>,
    last_ms: i64,
    exposed_ms: i64,
    /// The hour being marked, and the equity at the end of each hour before it.
    hour: Option<i64>,
    hourly_equity: Vec<f64>,
    equity: f64,
    /// The highest equity so far, and when.
    peak: (f64, i64),
    worst: Option<Drawdown>,
    equity_curve: Series,
    prices: HashMap<String, Series>,
    /// Deals not yet applied: (time, symbol, lots, price), in the order they came.
    waiting: Vec<(i64, String, f64, f64)>,
}

/// The largest fall of equity so far.
#[derive(Debug, Clone, Copy)]
struct Drawdown {
    fall: f64,
    peak: f64,
    peak_ms: i64,
    /// When equity was back at `peak`; `None` while it is not.
    recovered_ms: Option<i64>,
}

impl FiguresBuilder {
    /// A run starting with `starting_equity`, paying `commission_per_lot` per lot traded.
    pub fn new(starting_equity: f64, commission_per_lot: f64) -> Self {
        Self {
            starting_equity,
            commission_per_lot,
            books: HashMap::new(),
            commission: 0.0,
            lots_traded: 0.0,
            trips: Vec::new(),
            first_ms: None,
            last_ms: 0,
            exposed_ms: 0,
            hour: None,
            hourly_equity: Vec::new(),
            equity: starting_equity,
            peak: (starting_equity, 0),
            worst: None,
            equity_curve: Series::default(),
            prices: HashMap::new(),
            waiting: Vec::new(),
        }
    }

    /// A deal of `lots` (positive to buy) in `symbol` at `price`, at `time_ms`; applied before
    /// the first quote marked at or after that time (or at the end).
    pub fn deal(&mut self, time_ms: i64, symbol: &str, lots: f64, price: f64) {
        self.waiting.push((time_ms, symbol.to_owned(), lots, price));
    }

    /// Applies the waiting deals of `time_ms` or earlier, in time order (ties as they came).
    fn apply_deals_until(&mut self, time_ms: i64) {
        if !self.waiting.iter().any(|d| d.0 <= time_ms) {
            return;
        }
        self.waiting.sort_by_key(|d| d.0);
        let due = self.waiting.partition_point(|d| d.0 <= time_ms);
        let deals: Vec<_> = self.waiting.drain(..due).collect();
        for (time_ms, symbol, lots, price) in deals {
            self.apply_deal(time_ms, &symbol, lots, price);
        }
    }

    fn apply_deal(&mut self, time_ms: i64, symbol: &str, lots: f64, price: f64) {
        self.advance(time_ms);
        self.lots_traded += lots.abs();
        self.commission += lots.abs() * self.commission_per_lot;
        let book = self.books.entry(symbol.to_owned()).or_default();
        let before = book.position;
        book.position.apply(lots, price);
        book.trip_pnl += book.position.realized_pnl - before.realized_pnl;
        let (was, now) = (before.lots, book.position.lots);
        if was == 0.0 && now != 0.0 {
            book.open_since = Some(time_ms);
        } else if now == 0.0 || now.signum() != was.signum() {
            // Closed, or flipped: one round trip ends here (a flip opens the next at once).
            if let Some(opened) = book.open_since.take() {
                self.trips.push((book.trip_pnl, time_ms - opened));
            }
            book.trip_pnl = 0.0;
            book.open_since = (now != 0.0).then_some(time_ms);
        }
        self.mark_equity(time_ms);
    }

    /// A quote of `symbol` with mid `mid`, at `time_ms`.
    pub fn mark(&mut self, time_ms: i64, symbol: &str, mid: f64) {
        self.apply_deals_until(time_ms);
        self.advance(time_ms);
        self.books.entry(symbol.to_owned()).or_default().mid = Some(mid);
        self.mark_equity(time_ms);
        match self.prices.get_mut(symbol) {
            Some(series) => series.push(time_ms, mid),
            None => self.prices.entry(symbol.to_owned()).or_default().push(time_ms, mid),
        }
    }

    /// Moves the clock to `time_ms`: time in the market, and the hour's equity.
    fn advance(&mut self, time_ms: i64) {
        let first = *self.first_ms.get_or_insert(time_ms);
        if self.books.values().any(|b| b.position.lots != 0.0) {
            self.exposed_ms += (time_ms - self.last_ms.max(first)).max(0);
        }
        self.last_ms = self.last_ms.max(time_ms);
        let hour = time_ms.div_euclid(HOUR_MS);
        match self.hour {
            Some(current) if current == hour => {}
            Some(_) => {
                self.hourly_equity.push(self.equity);
                self.hour = Some(hour);
            }
            None => {
                self.hourly_equity.push(self.starting_equity);
                self.hour = Some(hour);
            }
        }
    }

    fn mark_equity(&mut self, time_ms: i64) {
        let open: f64 = (self.books.values())
            .map(|b| b.position.realized_pnl + b.mid.map_or(0.0, |mid| b.position.unrealized_pnl(mid)))
            .sum();
        self.equity = self.starting_equity + open - self.commission;
        self.equity_curve.push(time_ms, self.equity);
        if let Some(worst) = &mut self.worst
            && worst.recovered_ms.is_none()
            && self.equity >= worst.peak
        {
            worst.recovered_ms = Some(time_ms);
        }
        if self.equity >= self.peak.0 {
            self.peak = (self.equity, time_ms);
        }
        let fall = self.peak.0 - self.equity;
        if fall > self.worst.map_or(0.0, |w| w.fall) {
            self.worst = Some(Drawdown { fall, peak: self.peak.0, peak_ms: self.peak.1, recovered_ms: None });
        }
    }

    /// The figures of everything fed so far.
    pub fn finish(mut self) -> Figures {
        self.apply_deals_until(i64::MAX);
        self.hourly_equity.push(self.equity);
        let returns: Vec<f64> = self.hourly_equity.windows(2).filter(|w| w[0] != 0.0).map(|w| w[1] / w[0] - 1.0).collect();
        let n = returns.len() as f64;
        let mean = returns.iter().sum::<f64>() / n.max(1.0);
        let deviation = (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        let downside = (returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / n.max(1.0)).sqrt();
        let annual = HOURS_PER_YEAR.sqrt();
        let ratio = |spread: f64| (returns.len() >= 2 && spread > 0.0).then(|| mean / spread * annual);
        // The largest fall lasts from its peak until equity is back at that peak, or the end.
        let worst = self.worst.unwrap_or(Drawdown { fall: 0.0, peak: self.starting_equity, peak_ms: self.last_ms, recovered_ms: None });
        let duration = worst.recovered_ms.unwrap_or(self.last_ms) - worst.peak_ms;
        let pnl = self.equity - self.starting_equity;
        let wins = self.trips.iter().filter(|(pnl, _)| *pnl > 0.0).count();
        let span = self.last_ms - self.first_ms.unwrap_or(self.last_ms);
        Figures {
            pnl,
            return_pct: pnl / self.starting_equity * 100.0,
            sharpe: ratio(deviation),
            sortino: ratio(downside),
            hours: returns.len() as u64,
            max_drawdown: worst.fall,
            max_drawdown_pct: worst.fall / worst.peak * 100.0,
            max_drawdown_duration_ms: duration,
            trades: self.trips.len() as u64,
            hit_rate: (!self.trips.is_empty()).then(|| wins as f64 / self.trips.len() as f64),
            average_holding_ms: (!self.trips.is_empty()).then(|| self.trips.iter().map(|(_, ms)| *ms as f64).sum::<f64>() / self.trips.len() as f64),
            exposure: if span > 0 { self.exposed_ms as f64 / span as f64 } else { 0.0 },
            lots_traded: self.lots_traded,
            commission: self.commission,
            equity_curve: self.equity_curve.points,
            prices: self.prices.into_iter().map(|(symbol, series)| (symbol, series.points)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;

    #[test]
    fn a_winning_and_a_losing_round_trip_give_the_figures_by_hand() {
        let mut f = FiguresBuilder::new(10_000.0, 3.0);
        f.mark(0, "EURUSD", 1.1000);
        // Hour 0: buy 1 lot at 1.1000, sell it at 1.1010: +100, less 6 commission.
        f.deal(10, "EURUSD", 1.0, 1.1000);
        f.mark(20, "EURUSD", 1.1005);
        f.deal(30 * 60_000, "EURUSD", -1.0, 1.1010);
        // Hour 1: sell 1 lot at 1.1010; it goes against us to 1.1030 (-200), closed at 1.1020 (-100).
        f.mark(H, "EURUSD", 1.1010);
        f.deal(H + 10, "EURUSD", -1.0, 1.1010);
        f.mark(H + 20, "EURUSD", 1.1030);
        f.deal(H + 40 * 60_000, "EURUSD", 1.0, 1.1020);
        f.mark(2 * H, "EURUSD", 1.1020);
        let figures = f.finish();
        assert!((figures.pnl - (100.0 - 100.0 - 12.0)).abs() < 1e-6, "{figures:?}");
        assert!((figures.return_pct - -0.12).abs() < 1e-9);
        assert_eq!(figures.trades, 2);
        assert_eq!(figures.hit_rate, Some(0.5));
        let holding = ((30 * 60_000 - 10) + (40 * 60_000 - 10)) as f64 / 2.0;
        assert_eq!(figures.average_holding_ms, Some(holding));
        assert!((figures.lots_traded - 4.0).abs() < 1e-12);
        assert!((figures.commission - 12.0).abs() < 1e-12);
        // Peak 10 094 (after the first trip's close); lowest 10 094 - 200 - 3 = 9 891 at 1.1030.
        assert!((figures.max_drawdown - 203.0).abs() < 1e-6, "{}", figures.max_drawdown);
        assert!((figures.max_drawdown_pct - 203.0 / 10_094.0 * 100.0).abs() < 1e-9);
        assert_eq!(figures.max_drawdown_duration_ms, H, "from the last time at the peak (flat at H) to the end: never recovered");
        // Open 30 min of hour 0 and 40 min of hour 1, of a run of two hours.
        let exposed = (30 * 60_000 - 10) + (40 * 60_000 - 10);
        assert!((figures.exposure - exposed as f64 / (2 * H) as f64).abs() < 1e-9);
        // Hourly equity 10 000 -> 10 094 -> 9 988 -> 9 988: three returns, one of them zero.
        assert_eq!(figures.hours, 3);
        let returns = [10_094.0 / 10_000.0 - 1.0, 9_988.0 / 10_094.0 - 1.0, 0.0];
        let mean = returns.iter().sum::<f64>() / 3.0;
        let sd = (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((figures.sharpe.unwrap() - mean / sd * HOURS_PER_YEAR.sqrt()).abs() < 1e-9);
        let downside = (returns[1].powi(2) / 3.0).sqrt();
        assert!((figures.sortino.unwrap() - mean / downside * HOURS_PER_YEAR.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn chart_series_stay_bounded_and_keep_the_last_value_of_each_interval() {
        let mut series = Series::default();
        for minute in 0..10_000i64 {
            series.push(minute * 60_000, minute as f64);
            series.push(minute * 60_000 + 30_000, minute as f64 + 0.5);
        }
        assert!(series.points.len() <= SERIES_POINTS && series.points.len() > SERIES_POINTS / 2, "{}", series.points.len());
        assert_eq!(series.points.last(), Some(&(9_999 * 60_000 + 30_000, 9_999.5)), "the last value kept");
        assert!(series.points.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(series.points.iter().all(|p| p.1.fract() == 0.5), "each interval's last value");
    }

    #[test]
    fn a_flip_closes_one_round_trip_and_opens_the_next_and_a_drawdown_recovers() {
        let mut f = FiguresBuilder::new(1_000.0, 0.0);
        f.deal(0, "USDJPY", 0.1, 100.0);
        f.mark(1_000, "USDJPY", 99.0);
        f.mark(2_000, "USDJPY", 101.0);
        f.deal(3_000, "USDJPY", -0.2, 101.0);
        let figures = f.finish();
        assert_eq!(figures.trades, 1, "the flip closed the long; the short is still open");
        assert_eq!(figures.hit_rate, Some(1.0));
        assert_eq!(figures.max_drawdown_duration_ms, 2_000, "from the start's peak to the recovery");
        assert!((figures.max_drawdown - 10_000.0).abs() < 1e-6, "0.1 lot × 100 000 × 1.0");
        assert_eq!(figures.sharpe, None, "one hour: no ratio");
    }
}
