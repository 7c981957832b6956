//! `mtml features export`: history through the exact online feature code, as training rows.
//!
//! Each row holds the features of one tick, computed from that tick and earlier data only (point
//! in time correct), plus labels from the future for training: the mid price change over the
//! next 60 seconds.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use mtml_core::Symbol;
use mtml_feature_store::{FX_V1, FeatureVector};
use mtml_ingestion::FileTickStamper;

use crate::featurize::Featurizer;
use crate::replay::load_ticks;

/// Label horizon: the first tick at least this far after a row decides its label.
pub const LABEL_HORIZON_MS: i64 = 60_000;

/// Each symbol's (time, mid) of every accepted tick, in order.
pub type MidsBySymbol = HashMap<Symbol, Vec<(i64, f64)>>;

/// Feature vectors of every tick of a file, in order, through the online code path.
pub fn feature_rows(
    path: &Path,
    symbol: Option<&str>,
) -> anyhow::Result<(Vec<FeatureVector>, MidsBySymbol)> {
    let loaded = load_ticks(path, symbol)?;
    let symbols = loaded.digits.keys().map(|s| Symbol::new(s));
    let mut featurizer = Featurizer::new(symbols, 1_000, &[]);
    let mut stamper = FileTickStamper::new("export");
    let mut vectors = Vec::new();
    let mut mids: MidsBySymbol = HashMap::new();
    for (symbol, row) in &loaded.ticks {
        let tick = stamper.stamp(Symbol::new(symbol), row);
        let Ok(ingested) = featurizer.ingest(&tick) else { continue };
        mids.entry(tick.symbol.clone()).or_default().push((tick.time_msc, tick.mid()));
        if let Some(vector) = featurizer.features(&tick, ingested.closed_bar.as_ref()) {
            vectors.push(vector);
        }
    }
    Ok((vectors, mids))
}

/// Writes the CSV: `time_msc,symbol,<features>,mid,future_return_bps,label_up`.
/// `label_up` is empty when the mid did not change over the horizon or the file ends first.
pub fn export_features(ticks: &Path, symbol: Option<&str>, out: &Path) -> anyhow::Result<u64> {
    let (vectors, mids) = feature_rows(ticks, symbol)?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    write!(w, "time_msc,symbol")?;
    for name in FX_V1.names() {
        write!(w, ",{name}")?;
    }
    writeln!(w, ",mid,future_return_bps,label_up")?;
    let mut cursors: HashMap<Symbol, usize> = HashMap::new();
    let mut rows = 0;
    let empty = Vec::new();
    for vector in &vectors {
        let mids = mids.get(&vector.symbol).unwrap_or(&empty);
        let cursor = cursors.entry(vector.symbol.clone()).or_default();
        while *cursor < mids.len() && mids[*cursor].0 < vector.time_msc + LABEL_HORIZON_MS {
            *cursor += 1;
        }
        write!(w, "{},{}", vector.time_msc, vector.symbol)?;
        for value in vector.values {
            write!(w, ",{value}")?;
        }
        match mids.get(*cursor) {
            Some(&(_, future)) => {
                let ret = (future / vector.mid).ln() * 10_000.0;
                let label = if ret > 0.0 { "1" } else if ret < 0.0 { "0" } else { "" };
                writeln!(w, ",{},{ret},{label}", vector.mid)?;
            }
            None => writeln!(w, ",{},,", vector.mid)?,
        }
        rows += 1;
    }
    w.flush()?;
    Ok(rows)
}
