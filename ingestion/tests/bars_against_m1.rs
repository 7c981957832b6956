//! The bar builder against the real M1 file: grouping the recorded EURUSD ticks by UTC minute
//! must reproduce every row of `eurusd_fxcm_m1_2014-05-04_07.csv` exactly, with no bar for a
//! minute without ticks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use mtml_core::{Bar, MINUTE_MS, Symbol};
use mtml_ingestion::{BarBuilder, FileTickStamper, TickFileReader};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data").join(name)
}

fn m1_rows() -> Vec<(i64, [f64; 8])> {
    let text = std::fs::read_to_string(data("eurusd_fxcm_m1_2014-05-04_07.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let mut prices = [0.0; 8];
            for (i, price) in prices.iter_mut().enumerate() {
                *price = fields[i + 2].parse().unwrap();
            }
            (fields[0].parse().unwrap(), prices)
        })
        .collect()
}

fn as_row(bar: &Bar) -> (i64, [f64; 8]) {
    let (b, a) = (bar.bid, bar.ask);
    (bar.open_time_ms, [b.open, b.high, b.low, b.close, a.open, a.high, a.low, a.close])
}

#[test]
fn ticks_grouped_by_minute_reproduce_the_m1_file_exactly() {
    let reader = TickFileReader::open(data("eurusd_fxcm_ticks_2014-05-04_07.csv.gz")).unwrap();
    let mut stamper = FileTickStamper::new("file");
    let mut builder = BarBuilder::new(MINUTE_MS);
    let mut bars = Vec::new();
    let mut ticks = 0;
    for row in reader {
        let tick = stamper.stamp(Symbol::new("EURUSD"), &row.unwrap());
        bars.extend(builder.update(&tick));
        ticks += 1;
    }
    bars.extend(builder.flush());
    assert_eq!(ticks, 251_588, "every tick of the file read");
    let expected = m1_rows();
    assert_eq!(bars.len(), expected.len(), "one bar per minute with ticks, none for empty minutes");
    for (bar, expected) in bars.iter().zip(&expected) {
        assert_eq!(as_row(bar), *expected, "bar at {}", bar.open_time_ms);
    }
    assert_eq!(bars.iter().map(|b| u64::from(b.ticks)).sum::<u64>(), 251_588);
    // The file has gaps (weekend open, quiet minutes): consecutive bars are not always 1 min apart.
    assert!(bars.windows(2).any(|w| w[1].open_time_ms - w[0].open_time_ms > MINUTE_MS));
}

/// M1 rows of the file folded into bars `width_ms` wide: open of the first, highest high,
/// lowest low, close of the last; a window without rows has no bar.
fn fold_m1(width_ms: i64) -> Vec<(i64, [f64; 8])> {
    let mut out: Vec<(i64, [f64; 8])> = Vec::new();
    for (time, p) in m1_rows() {
        let open_time = time.div_euclid(width_ms) * width_ms;
        match out.last_mut() {
            Some((t, q)) if *t == open_time => {
                q[1] = q[1].max(p[1]);
                q[2] = q[2].min(p[2]);
                q[3] = p[3];
                q[5] = q[5].max(p[5]);
                q[6] = q[6].min(p[6]);
                q[7] = p[7];
            }
            _ => out.push((open_time, p)),
        }
    }
    out
}

#[test]
fn wider_bars_from_ticks_equal_the_m1_file_folded_to_the_same_width() {
    for (name, width) in [("M5", 5 * MINUTE_MS), ("M15", 15 * MINUTE_MS), ("H1", 60 * MINUTE_MS), ("H4", 240 * MINUTE_MS), ("D1", 1_440 * MINUTE_MS)] {
        let reader = TickFileReader::open(data("eurusd_fxcm_ticks_2014-05-04_07.csv.gz")).unwrap();
        let mut stamper = FileTickStamper::new("file");
        let mut builder = BarBuilder::new(width);
        let mut bars = Vec::new();
        for row in reader {
            bars.extend(builder.update(&stamper.stamp(Symbol::new("EURUSD"), &row.unwrap())));
        }
        bars.extend(builder.flush());
        let expected = fold_m1(width);
        assert_eq!(bars.len(), expected.len(), "{name}: one bar per window with ticks");
        for (bar, expected) in bars.iter().zip(&expected) {
            assert_eq!(as_row(bar), *expected, "{name} bar at {}", bar.open_time_ms);
            assert_eq!(bar.width_ms, width);
        }
    }
}
