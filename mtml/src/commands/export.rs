//! `mtml features export`: history through the exact online feature code, as training rows in
//! CSV or Parquet.
//!
//! Each row holds the features of one tick, computed from that tick and earlier data only (point
//! in time correct), plus labels from the future for training: the mid price change over the
//! next 60 seconds.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use mtml_core::Symbol;
use mtml_feature_store::{FEATURE_SET, FEATURE_COUNT, FeatureVector};
use mtml_ingestion::FileTickStamper;

use mtml_pipeline::Featurizer;
use crate::commands::replay::load_ticks;

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

/// One training row: a feature vector and its label from the future.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingRow {
    /// The features, computed at `vector.time_msc` from data up to then.
    pub vector: FeatureVector,
    /// Log return of the mid over the label horizon, bps; `None` when the file ends first.
    pub future_return_bps: Option<f64>,
    /// 1 if the mid rose over the horizon, 0 if it fell, `None` if unchanged or unknown.
    pub label_up: Option<u8>,
}

/// Feature rows of a file with their labels: the first tick at least [`LABEL_HORIZON_MS`] after
/// a row decides its label.
pub fn training_rows(ticks: &Path, symbol: Option<&str>) -> anyhow::Result<Vec<TrainingRow>> {
    let (vectors, mids) = feature_rows(ticks, symbol)?;
    let mut cursors: HashMap<Symbol, usize> = HashMap::new();
    let empty = Vec::new();
    Ok(vectors
        .into_iter()
        .map(|vector| {
            let mids = mids.get(&vector.symbol).unwrap_or(&empty);
            let cursor = cursors.entry(vector.symbol.clone()).or_default();
            while *cursor < mids.len() && mids[*cursor].0 < vector.time_msc + LABEL_HORIZON_MS {
                *cursor += 1;
            }
            let future_return_bps = mids.get(*cursor).map(|&(_, future)| (future / vector.mid).ln() * 10_000.0);
            let label_up = future_return_bps.and_then(|r| if r > 0.0 { Some(1) } else if r < 0.0 { Some(0) } else { None });
            TrainingRow { vector, future_return_bps, label_up }
        })
        .collect())
}

/// Writes the training rows of `ticks` to `out`: Parquet if it ends in `.parquet`, else CSV
/// (`time_msc,symbol,<features>,mid,future_return_bps,label_up`, an empty field for a missing
/// label). Returns the number of rows.
pub fn export_features(ticks: &Path, symbol: Option<&str>, out: &Path, distribution: Option<&Path>) -> anyhow::Result<u64> {
    let rows = training_rows(ticks, symbol)?;
    if let Some(path) = distribution {
        // What the model is trained on, for measuring the live features' drift from it.
        let values: Vec<_> = rows.iter().map(|row| row.vector.values).collect();
        let json = mtml_feature_store::FeatureDistribution::from_rows(&values).to_json();
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    if out.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        write_parquet(file, &rows).with_context(|| format!("writing {}", out.display()))?;
    } else {
        write_csv(file, &rows).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(rows.len() as u64)
}

/// `mtml features describe`: the feature set's id and its features, as text or JSON.
pub fn describe_feature_set(json: bool) -> String {
    if json {
        let features: Vec<_> = FEATURE_SET
            .features
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "version": f.version, "params": f.params}))
            .collect();
        return format!("{}\n", serde_json::json!({"id": FEATURE_SET.id(), "features": features}));
    }
    let mut text = format!("{}\n", FEATURE_SET.id());
    for (i, f) in FEATURE_SET.features.iter().enumerate() {
        text.push_str(&format!("{i:>3}  {:<16} v{}  {}\n", f.name, f.version, f.params));
    }
    text
}

fn write_csv(file: std::fs::File, rows: &[TrainingRow]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(file);
    write!(w, "time_msc,symbol")?;
    for name in FEATURE_SET.names() {
        write!(w, ",{name}")?;
    }
    writeln!(w, ",mid,future_return_bps,label_up")?;
    for row in rows {
        let vector = &row.vector;
        write!(w, "{},{}", vector.time_msc, vector.symbol)?;
        for value in vector.values {
            write!(w, ",{value}")?;
        }
        match row.future_return_bps {
            Some(ret) => writeln!(w, ",{},{ret},{}", vector.mid, row.label_up.map_or(String::new(), |l| l.to_string()))?,
            None => writeln!(w, ",{},,", vector.mid)?,
        }
    }
    w.flush()
}

/// The Parquet schema of the export: the same columns as the CSV, typed.
pub fn parquet_schema() -> String {
    let mut schema = String::from(
        "message mtml_features {\n  required int64 time_msc (TIMESTAMP(MILLIS,true));\n  required binary symbol (STRING);\n",
    );
    for name in FEATURE_SET.names() {
        schema.push_str(&format!("  required double {name};\n"));
    }
    schema.push_str("  required double mid;\n  optional double future_return_bps;\n  optional int32 label_up;\n}\n");
    schema
}

/// Rows per Parquet row group.
const ROW_GROUP: usize = 65_536;

fn write_parquet(file: std::fs::File, rows: &[TrainingRow]) -> anyhow::Result<()> {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;

    let schema = Arc::new(parquet::schema::parser::parse_message_type(&parquet_schema())?);
    let mut props = WriterProperties::builder().set_compression(Compression::SNAPPY);
    props = props.set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
        "mtml.feature_set".into(),
        FEATURE_SET.id(),
    )]));
    let mut writer = SerializedFileWriter::new(file, schema, Arc::new(props.build()))?;
    for group in rows.chunks(ROW_GROUP) {
        let mut row_group = writer.next_row_group()?;
        let mut column = 0;
        while let Some(mut col) = row_group.next_column()? {
            let features = FEATURE_COUNT;
            match column {
                0 => {
                    let times: Vec<i64> = group.iter().map(|r| r.vector.time_msc).collect();
                    col.typed::<Int64Type>().write_batch(&times, None, None)?;
                }
                1 => {
                    let symbols: Vec<ByteArray> = group.iter().map(|r| ByteArray::from(r.vector.symbol.as_str())).collect();
                    col.typed::<ByteArrayType>().write_batch(&symbols, None, None)?;
                }
                c if c < 2 + features => {
                    let values: Vec<f64> = group.iter().map(|r| r.vector.values[c - 2]).collect();
                    col.typed::<DoubleType>().write_batch(&values, None, None)?;
                }
                c if c == 2 + features => {
                    let mids: Vec<f64> = group.iter().map(|r| r.vector.mid).collect();
                    col.typed::<DoubleType>().write_batch(&mids, None, None)?;
                }
                c if c == 3 + features => {
                    let present: Vec<f64> = group.iter().filter_map(|r| r.future_return_bps).collect();
                    let levels: Vec<i16> = group.iter().map(|r| i16::from(r.future_return_bps.is_some())).collect();
                    col.typed::<DoubleType>().write_batch(&present, Some(&levels), None)?;
                }
                _ => {
                    let present: Vec<i32> = group.iter().filter_map(|r| r.label_up.map(i32::from)).collect();
                    let levels: Vec<i16> = group.iter().map(|r| i16::from(r.label_up.is_some())).collect();
                    col.typed::<Int32Type>().write_batch(&present, Some(&levels), None)?;
                }
            }
            col.close()?;
            column += 1;
        }
        row_group.close()?;
    }
    writer.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_refuses_the_quotes_the_pipeline_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eurusd.csv");
        let mut text = String::from("time_utc_ms,bid,ask\n");
        for i in 0..20_i64 {
            let (bid, ask) = if i == 10 { (1.387, 13.879) } else if i == 12 { (13.87, 13.88) } else { (1.387, 1.3879) };
            text.push_str(&format!("{},{bid},{ask}\n", 1_399_230_000_000 + i * 1_000));
        }
        std::fs::write(&path, text).unwrap();
        let (_, mids) = feature_rows(&path, None).unwrap();
        let mids = &mids[&Symbol::new("EURUSD")];
        assert_eq!(mids.len(), 18, "the wide spread and the outlier are left out");
        assert!(mids.iter().all(|(_, mid)| (1.38..1.39).contains(mid)), "{mids:?}");
    }
}
