//! Helpers for mtml's end-to-end tests: where the data is, and what the fuzz targets check
//! ([`fuzz`]).

use std::path::PathBuf;

/// A file in the repository's `data/` directory.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data").join(name)
}

/// The full recorded EURUSD tick file (251 588 ticks, 2014-05-04 to 07).
pub fn eurusd_ticks() -> PathBuf {
    data("eurusd_fxcm_ticks_2014-05-04_07.csv.gz")
}

/// The six-hour sample the demo replays.
pub fn eurusd_sample() -> PathBuf {
    data("eurusd_fxcm_ticks_2014-05-05_0600-1200.csv.gz")
}

pub mod fuzz;
