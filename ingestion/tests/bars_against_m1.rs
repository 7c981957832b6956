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
