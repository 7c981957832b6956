//! `mtml features export` as a user runs it: CSV and Parquet hold the same rows, and the rows are
//! the online feature code's values, bit for bit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

/// Feature columns.
const F: usize = mtml_feature_store::FEATURE_COUNT;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/eurusd_fxcm_ticks_2014-05-05_0600-1200.csv.gz")
}

fn export(out: &std::path::Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_mtml"))
        .args(["features", "export", "--ticks"])
        .arg(sample())
        .arg("--out")
        .arg(out)
        .env("MTML_LOG", "error")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn parquet_and_csv_exports_hold_the_online_values_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, parquet) = (dir.path().join("f.csv"), dir.path().join("f.parquet"));
    export(&csv);
    export(&parquet);
    let rows = mtml::commands::export::training_rows(&sample(), None).unwrap();
    assert_eq!(rows.len(), 17_330, "one row per warmed-up tick");

    // CSV: the header, then every row; floats print as the shortest text that reads back exact.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.len(), 2 + F + 3);
    assert_eq!(&header[2..5], ["ret_1", "ret_5", "ret_15"]);
    for (line, row) in lines.zip(&rows) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[0].parse::<i64>().unwrap(), row.vector.time_msc);
        for (field, value) in fields[2..2 + F].iter().zip(row.vector.values) {
            assert_eq!(field.parse::<f64>().unwrap().to_bits(), value.to_bits(), "{line}");
        }
    }

    // Parquet: typed columns, the same values, the label nullable, the feature set in metadata.
    let reader = SerializedFileReader::new(std::fs::File::open(&parquet).unwrap()).unwrap();
    let metadata = reader.metadata().file_metadata();
    assert_eq!(metadata.num_rows(), rows.len() as i64);
    let feature_set = metadata.key_value_metadata().unwrap().iter().find(|kv| kv.key == "mtml.feature_set").unwrap();
    assert_eq!(feature_set.value.as_deref(), Some(mtml_feature_store::FEATURE_SET.id().as_str()));
    let mut unlabelled = 0;
    for (record, row) in reader.get_row_iter(None).unwrap().zip(&rows) {
        let record = record.unwrap();
        let columns: Vec<(&String, &Field)> = record.get_column_iter().collect();
        assert_eq!(columns.len(), 2 + F + 3);
        assert_eq!(*columns[0].1, Field::TimestampMillis(row.vector.time_msc));
        assert_eq!(*columns[1].1, Field::Str("EURUSD".into()));
        for ((name, field), (expected_name, value)) in columns[2..2 + F].iter().zip(mtml_feature_store::FEATURE_SET.names().zip(row.vector.values)) {
            assert_eq!(name.as_str(), expected_name);
            let Field::Double(stored) = field else { panic!("{name} is {field:?}") };
            assert_eq!(stored.to_bits(), value.to_bits(), "{name} at {}", row.vector.time_msc);
        }
        match (columns[2 + F + 2].1, row.label_up) {
            (Field::Int(label), Some(expected)) => assert_eq!(*label, i32::from(expected)),
            (Field::Null, None) => unlabelled += 1,
            (field, expected) => panic!("label {field:?}, expected {expected:?}"),
        }
    }
    assert!(unlabelled > 0, "the last minute has no label, and unchanged mids have none");
}
