//! InfluxDB through its v1 HTTP API: line protocol to `/write` (gzip), InfluxQL to `/query`.
//!
//! The v1 API is the one every InfluxDB line serves: 1.x natively, 2.x and 3.x as their v1
//! compatibility endpoints (there the password is an API token and the database a DBRP mapping or
//! 3.x database). The `/api/v2` API exists only on 2.x, so the v1 API is the one that works
//! everywhere, including the InfluxDB 1.6 the tests run against.
//!
//! Measurements (tags, then fields):
//! - `ticks` (symbol, source): bid, ask, seq, chain_id; time = ms + seq mod 10^6 ns.
//! - `bars` (symbol, timeframe): bid_open..ask_close, ticks, width_ms, chain_id; time = open time.
//! - `features` (symbol, feature_set): one field per feature, mid, seq, chain_id; time as ticks.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mtml_core::{Bar, ChainId, Ohlc, Symbol};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::{BarRecord, FeatureVectorRecord, HistoryPoint, HistoryStore, NS_PER_MS, StoreError, TickRecord, TimeRange, key_time_ns, timeframe_name};
use crate::definitions::FEATURE_SET;

/// An InfluxDB v1 API endpoint: `http://[user:password@]host:8086/DATABASE`.
#[derive(Debug)]
pub struct InfluxV1 {
    base: Url,
    database: String,
    credentials: Option<(String, String)>,
    client: reqwest::Client,
    database_checked: AtomicBool,
}

impl InfluxV1 {
    /// An endpoint for `url`. Nothing is contacted yet: a server that is down now is a write
    /// error later, not a start-up failure.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let refused = |detail: String| StoreError::Refused { store: format!("influxdb at {}", mtml_core::text::redact_url(url)), detail };
        let mut base = Url::parse(url).map_err(|e| refused(format!("not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(refused("expected http://host:8086/DATABASE".into()));
        }
        let database = base.path().trim_matches('/').to_owned();
        if database.is_empty() || database.contains('/') {
            return Err(refused("the URL path must name the database: http://host:8086/DATABASE".into()));
        }
        let credentials = (!base.username().is_empty())
            .then(|| (base.username().to_owned(), base.password().unwrap_or_default().to_owned()));
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_path("/");
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| refused(format!("HTTP client: {e}")))?;
        Ok(Self { base, database, credentials, client, database_checked: AtomicBool::new(false) })
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable { store: self.describe(), detail: detail.to_string() }
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("db", &self.database);
            if let Some((user, password)) = &self.credentials {
                query.append_pair("u", user).append_pair("p", password);
            }
        }
        url
    }

    async fn answer_error(&self, response: reqwest::Response, what: &str) -> StoreError {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(body);
        let detail = format!("{what}: HTTP {status}: {}", message.trim());
        match status {
            // Only the data itself being refused is final; everything else (a server starting
            // up, a database not there yet, credentials being fixed) is retried, the points kept.
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNPROCESSABLE_ENTITY => {
                StoreError::Refused { store: self.describe(), detail }
            }
            StatusCode::NOT_FOUND => {
                // The database may have gone (or never been created): create it before the retry.
                self.database_checked.store(false, Ordering::Relaxed);
                self.unavailable(format!("{detail} (is this InfluxDB's v1 API? 1.x serves it natively, 2.x and 3.x as their v1 compatibility API)"))
            }
            _ => self.unavailable(detail),
        }
    }

    /// Creates the database (InfluxDB 1.x; on 2.x and 3.x the database must exist already).
    async fn create_database(&self) -> Result<(), StoreError> {
        let statement = format!("CREATE DATABASE \"{}\"", self.database.replace('"', "\\\""));
        let mut url = self.endpoint("/query");
        url.query_pairs_mut().append_pair("q", &statement);
        let response = self.client.post(url).send().await.map_err(|e| self.unavailable(e))?;
        if !response.status().is_success() {
            return Err(self.answer_error(response, "creating the database").await);
        }
        self.database_checked.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn post_lines(&self, body: Vec<u8>) -> Result<reqwest::Response, StoreError> {
        let mut url = self.endpoint("/write");
        url.query_pairs_mut().append_pair("precision", "ns");
        self.client
            .post(url)
            .header("Content-Encoding", "gzip")
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// Runs one InfluxQL `SELECT`; the rows of its single series, by column name.
    async fn select(&self, statement: &str) -> Result<Vec<Row>, StoreError> {
        let mut url = self.endpoint("/query");
        url.query_pairs_mut().append_pair("q", statement).append_pair("epoch", "ns");
        let response = self.client.get(url).send().await.map_err(|e| self.unavailable(e))?;
        if !response.status().is_success() {
            return Err(self.answer_error(response, "query").await);
        }
        let bytes = response.bytes().await.map_err(|e| self.unavailable(e))?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| self.corrupt(format!("query answer: {e}")))?;
        let result = body.pointer("/results/0").ok_or_else(|| self.corrupt("query answer has no results".into()))?;
        if let Some(error) = result.get("error").and_then(Value::as_str) {
            // A database not created yet has nothing in it.
            if error.contains("database not found") {
                return Ok(Vec::new());
            }
            return Err(StoreError::Refused { store: self.describe(), detail: format!("query {statement:?}: {error}") });
        }
        let Some(series) = result.pointer("/series/0") else { return Ok(Vec::new()) };
        let columns: Vec<String> = series
            .get("columns")
            .and_then(Value::as_array)
            .map(|c| c.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let values = series.get("values").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(values
            .into_iter()
            .map(|row| Row { columns: columns.clone(), values: row.as_array().cloned().unwrap_or_default() })
            .collect())
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt { store: self.describe(), detail }
    }

    fn where_clause(&self, tags: &[(&str, &str)], column: &str, from_ns: i64, to_ns: i64) -> String {
        let mut clause = String::new();
        for (key, value) in tags {
            let _ = write!(clause, "\"{key}\" = '{}' AND ", quote_string(value));
        }
        let _ = write!(clause, "{column} >= {from_ns} AND {column} < {to_ns}");
        clause
    }
}

/// One row of a query answer.
struct Row {
    columns: Vec<String>,
    values: Vec<Value>,
}

impl Row {
    fn get(&self, name: &str) -> Result<&Value, String> {
        self.columns
            .iter()
            .position(|c| c == name)
            .and_then(|i| self.values.get(i))
            .filter(|v| !v.is_null())
            .ok_or_else(|| format!("column {name} missing"))
    }

    fn f64(&self, name: &str) -> Result<f64, String> {
        self.get(name)?.as_f64().ok_or_else(|| format!("column {name} is not a number"))
    }

    fn i64(&self, name: &str) -> Result<i64, String> {
        self.get(name)?.as_i64().ok_or_else(|| format!("column {name} is not an integer"))
    }

    fn str(&self, name: &str) -> Result<&str, String> {
        self.get(name)?.as_str().ok_or_else(|| format!("column {name} is not a string"))
    }

    fn chain(&self) -> Result<ChainId, String> {
        self.str("chain_id")?.parse().map_err(|e| format!("chain_id: {e}"))
    }
}

/// Escapes a measurement name, tag key or tag value of the line protocol.
fn escape_tag(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes a string field value of the line protocol (inside double quotes).
fn escape_field_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Quotes a string literal of InfluxQL (inside single quotes).
fn quote_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A float as the line protocol takes it: shortest text that reads back to the same bits.
fn float(out: &mut String, name: &str, value: f64) {
    let _ = write!(out, "{name}={value:?},");
}

/// Appends one point as a line of the line protocol.
pub fn write_line(out: &mut String, point: &HistoryPoint) {
    match point {
        HistoryPoint::Tick(t) => {
            let _ = write!(out, "ticks,source={},symbol={} ", escape_tag(&t.source), escape_tag(t.symbol.as_str()));
            float(out, "ask", t.ask);
            float(out, "bid", t.bid);
            let _ = writeln!(out, "chain_id=\"{}\",seq={}i {}", t.chain_id, t.seq, key_time_ns(t.time_msc, t.seq));
        }
        HistoryPoint::Bar(b) => {
            let bar = &b.bar;
            let _ = write!(out, "bars,symbol={},timeframe={} ", escape_tag(bar.symbol.as_str()), timeframe_name(bar.width_ms));
            for (side, ohlc) in [("ask", &bar.ask), ("bid", &bar.bid)] {
                for (part, value) in [("close", ohlc.close), ("high", ohlc.high), ("low", ohlc.low), ("open", ohlc.open)] {
                    float(out, &format!("{side}_{part}"), value);
                }
            }
            let _ = writeln!(
                out,
                "chain_id=\"{}\",ticks={}i,width_ms={}i {}",
                b.chain_id,
                bar.ticks,
                bar.width_ms,
                bar.open_time_ms * NS_PER_MS
            );
        }
        HistoryPoint::Features(f) => {
            let _ = write!(out, "features,feature_set={},symbol={} ", escape_tag(&FEATURE_SET.id()), escape_tag(f.symbol.as_str()));
            for (name, &value) in FEATURE_SET.names().zip(&f.values) {
                float(out, name, value);
            }
            float(out, "mid", f.mid);
            let _ = writeln!(out, "chain_id=\"{}\",seq={}i {}", escape_field_string(&f.chain_id.to_string()), f.seq, key_time_ns(f.time_msc, f.seq));
        }
    }
}

#[async_trait::async_trait]
impl HistoryStore for InfluxV1 {
    fn describe(&self) -> String {
        format!("influxdb at {} database {}", mtml_core::text::redact_url(self.base.as_str().trim_end_matches('/')), self.database)
    }

    async fn write(&self, points: &[HistoryPoint]) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        if let Some(problem) = points.iter().find_map(|p| p.check().err()) {
            return Err(StoreError::Refused { store: self.describe(), detail: format!("point not writable: {problem}") });
        }
        let mut lines = String::with_capacity(points.len() * 160);
        for point in points {
            write_line(&mut lines, point);
        }
        let mut gzip = flate2::write::GzEncoder::new(Vec::with_capacity(lines.len() / 4), flate2::Compression::fast());
        gzip.write_all(lines.as_bytes()).map_err(|e| self.unavailable(format!("compressing: {e}")))?;
        let body = gzip.finish().map_err(|e| self.unavailable(format!("compressing: {e}")))?;
        if !self.database_checked.load(Ordering::Relaxed) {
            // Best effort: InfluxDB 2.x and 3.x have no CREATE DATABASE on the v1 API.
            match self.create_database().await {
                Ok(()) => self.database_checked.store(true, Ordering::Relaxed),
                Err(error @ StoreError::Unavailable { .. }) => return Err(error),
                Err(error) => tracing::debug!(%error, "CREATE DATABASE refused; assuming the database exists"),
            }
        }
        let mut response = self.post_lines(body.clone()).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            // A server just started (or a database dropped since) may not have it yet: create it
            // and write once more.
            self.database_checked.store(false, Ordering::Relaxed);
            if self.create_database().await.is_ok() {
                self.database_checked.store(true, Ordering::Relaxed);
                response = self.post_lines(body).await?;
            }
        }
        if response.status().is_success() {
            return Ok(());
        }
        Err(self.answer_error(response, &format!("writing {} points", points.len())).await)
    }

    async fn ticks(&self, symbol: &Symbol, range: TimeRange) -> Result<Vec<TickRecord>, StoreError> {
        let (from, to) = range.ns_bounds();
        let statement = format!(
            "SELECT * FROM ticks WHERE {} ORDER BY time ASC LIMIT {}",
            self.where_clause(&[("symbol", symbol.as_str())], "time", from, to),
            range.limit
        );
        let rows = self.select(&statement).await?;
        rows.iter()
            .map(|row| {
                Ok(TickRecord {
                    symbol: symbol.clone(),
                    source: row.str("source")?.to_owned(),
                    time_msc: row.i64("time")?.div_euclid(NS_PER_MS),
                    seq: row.i64("seq")? as u64,
                    bid: row.f64("bid")?,
                    ask: row.f64("ask")?,
                    chain_id: row.chain()?,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(|e| self.corrupt(format!("ticks: {e}")))
    }

    async fn bars(&self, symbol: &Symbol, timeframe: &str, range: TimeRange) -> Result<Vec<BarRecord>, StoreError> {
        let (from, to) = range.ns_bounds();
        let statement = format!(
            "SELECT * FROM bars WHERE {} ORDER BY time ASC LIMIT {}",
            self.where_clause(&[("symbol", symbol.as_str()), ("timeframe", timeframe)], "time", from, to),
            range.limit
        );
        let rows = self.select(&statement).await?;
        rows.iter()
            .map(|row| {
                let ohlc = |side: &str| -> Result<Ohlc, String> {
                    Ok(Ohlc {
                        open: row.f64(&format!("{side}_open"))?,
                        high: row.f64(&format!("{side}_high"))?,
                        low: row.f64(&format!("{side}_low"))?,
                        close: row.f64(&format!("{side}_close"))?,
                    })
                };
                Ok(BarRecord {
                    bar: Bar {
                        symbol: symbol.clone(),
                        open_time_ms: row.i64("time")?.div_euclid(NS_PER_MS),
                        width_ms: row.i64("width_ms")?,
                        bid: ohlc("bid")?,
                        ask: ohlc("ask")?,
                        ticks: u32::try_from(row.i64("ticks")?).map_err(|e| e.to_string())?,
                    },
                    chain_id: row.chain()?,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(|e| self.corrupt(format!("bars: {e}")))
    }

    async fn features(&self, symbol: &Symbol, range: TimeRange) -> Result<Vec<FeatureVectorRecord>, StoreError> {
        let (from, to) = range.ns_bounds();
        let id = FEATURE_SET.id();
        let statement = format!(
            "SELECT * FROM features WHERE {} ORDER BY time ASC LIMIT {}",
            self.where_clause(&[("symbol", symbol.as_str()), ("feature_set", &id)], "time", from, to),
            range.limit
        );
        let rows = self.select(&statement).await?;
        rows.iter()
            .map(|row| {
                Ok(FeatureVectorRecord {
                    symbol: symbol.clone(),
                    chain_id: row.chain()?,
                    time_msc: row.i64("time")?.div_euclid(NS_PER_MS),
                    seq: row.i64("seq")? as u64,
                    mid: row.f64("mid")?,
                    values: FEATURE_SET.names().map(|name| row.f64(name)).collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(|e| self.corrupt(format!("features: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::conformance;

    #[test]
    fn lines_escape_tags_and_strings_and_keep_float_bits() {
        let mut tick = conformance::tick("EUR USD,x=1", 1_000, 7, 0.1 + 0.2);
        tick.source = "a b".into();
        let mut out = String::new();
        write_line(&mut out, &HistoryPoint::Tick(tick.clone()));
        assert!(out.starts_with("ticks,source=a\\ b,symbol=EUR\\ USD\\,x\\=1 "), "{out}");
        assert!(out.contains("bid=0.30000000000000004,"), "{out}");
        assert!(out.trim_end().ends_with(&format!("seq=7i {}", 1_000 * NS_PER_MS + 7)), "{out}");
        assert_eq!(quote_string("it's"), "it\\'s");
        assert_eq!(escape_field_string("a\"b\\"), "a\\\"b\\\\");
    }

    #[test]
    fn a_url_without_a_database_is_refused_with_the_form_expected() {
        let error = InfluxV1::new("http://127.0.0.1:8086", Duration::from_secs(1)).unwrap_err();
        assert!(error.to_string().contains("http://host:8086/DATABASE"), "{error}");
        let error = InfluxV1::new("redis://127.0.0.1:8086/x", Duration::from_secs(1)).unwrap_err();
        assert!(error.to_string().contains("expected http://"), "{error}");
        let store = InfluxV1::new("http://me:secret@127.0.0.1:8086/mtml", Duration::from_secs(1)).unwrap();
        assert!(!store.describe().contains("secret"), "credentials stay out of logs: {}", store.describe());
        assert!(store.endpoint("/write").as_str().contains("u=me&p=secret"));
    }
}
