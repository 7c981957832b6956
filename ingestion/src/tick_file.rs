//! Tick files: CSV (optionally gzipped) and MetaTrader 5's own tick export.
//!
//! Accepted layouts, recognised from the header row:
//! - CSV with a time column (`time_utc_ms` or `time_msc` in epoch ms, or `timestamp`/`time` as
//!   text, UTC unless an offset is given) plus `bid` and `ask`; an optional `symbol` column; any
//!   other columns are ignored.
//! - MetaTrader 5 tick export: tab separated `<DATE> <TIME> <BID> <ASK> <LAST> <VOLUME> <FLAGS>`,
//!   where a side that did not change is left empty and carries the previous value forward, as
//!   the terminal's own `MqlTick` does.
//!
//! A row that cannot be parsed ends reading with the file, line number and reason. Rows that parse
//! but are not valid quotes (non-positive prices, NaN) are handed on for ingestion to reject and
//! count: reading is about syntax, validation about meaning.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use mtml_core::text::quote;
use mtml_core::{ChainIdGenerator, Symbol, Tick};

use crate::time_parse::parse_timestamp_ms;

/// A row of a tick file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileTick {
    /// 1-based line number in the (decompressed) file.
    pub line: u64,
    /// Symbol from a `symbol` column, if the file has one.
    pub symbol: Option<String>,
    /// UTC epoch milliseconds.
    pub time_msc: i64,
    /// Bid.
    pub bid: f64,
    /// Ask.
    pub ask: f64,
}

/// Turns file rows into pipeline ticks the way a terminal connection does: each gets a fresh
/// chain id and the next sequence number. For offline paths (export, benchmarks, tests) that
/// feed the pipeline's code without a bridge.
#[derive(Debug)]
pub struct FileTickStamper {
    chain_ids: ChainIdGenerator,
    terminal: Arc<str>,
    seq: u64,
}

impl FileTickStamper {
    /// A stamper whose ticks name `terminal` as their source.
    pub fn new(terminal: &str) -> Self {
        Self { chain_ids: ChainIdGenerator::with_prefix(1), terminal: Arc::from(terminal), seq: 0 }
    }

    /// The pipeline tick of a row.
    pub fn stamp(&mut self, symbol: Symbol, row: &FileTick) -> Tick {
        self.seq += 1;
        Tick {
            chain_id: self.chain_ids.next_id(),
            symbol,
            time_msc: row.time_msc,
            bid: row.bid,
            ask: row.ask,
            seq: self.seq,
            terminal: Arc::clone(&self.terminal),
            received_ns: 0,
        }
    }
}

/// Why a tick file cannot be read, naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum TickFileError {
    /// The file cannot be opened.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error (not a `source`: its text is already in this message).
        error: std::io::Error,
    },
    /// A line does not parse.
    #[error("{path}:{line}: {reason}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy)]
enum TimeColumn {
    EpochMs(usize),
    Text(usize),
    /// MetaTrader export: date and time in two columns.
    DateAndTime(usize, usize),
    /// HistData.com: `YYYYMMDD HHMMSSmmm` in EST (UTC-5 all year).
    HistData(usize),
}

#[derive(Debug, Clone, Copy)]
struct Layout {
    separator: char,
    time: TimeColumn,
    bid: usize,
    ask: usize,
    symbol: Option<usize>,
    /// Empty bid or ask carries the previous value (MetaTrader export).
    carry_forward: bool,
    /// The first line is a row, not a header (HistData).
    headerless: bool,
}

/// Reads a tick file row by row.
pub struct TickFileReader {
    path: PathBuf,
    lines: Box<dyn BufRead + Send>,
    layout: Layout,
    line: u64,
    /// The first line of a headerless file, read while detecting the layout.
    first_row: Option<String>,
    buffer: String,
    last_bid: Option<f64>,
    last_ask: Option<f64>,
    failed: bool,
}

impl std::fmt::Debug for TickFileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickFileReader").field("path", &self.path).field("line", &self.line).finish()
    }
}

impl TickFileReader {
    /// Opens a file; see [`TickFileReader::from_source`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TickFileError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|error| TickFileError::Io { path: path.clone(), error })?;
        Self::from_source(path, file)
    }

    /// Reads a tick file's bytes from any source, detecting gzip and UTF-16 by their first bytes
    /// and the layout by the header row; `path` is only used in error messages.
    pub fn from_source(path: PathBuf, source: impl Read + Send + 'static) -> Result<Self, TickFileError> {
        const BUFFER: usize = 256 * 1024;
        let mut source = BufReader::with_capacity(BUFFER, source);
        let first = source.fill_buf().map_err(|error| TickFileError::Io { path: path.clone(), error })?;
        let magic = [first.first().copied().unwrap_or(0), first.get(1).copied().unwrap_or(0)];
        let reader: Box<dyn BufRead + Send> = match magic {
            [0x1f, 0x8b] => Box::new(BufReader::with_capacity(BUFFER, MultiGzDecoder::new(source))),
            [0xff, 0xfe] => Box::new(BufReader::with_capacity(BUFFER, Utf16Reader::new(source, false))),
            [0xfe, 0xff] => Box::new(BufReader::with_capacity(BUFFER, Utf16Reader::new(source, true))),
            _ => Box::new(source),
        };
        Self::from_reader(path, reader)
    }

    /// Reads text from any buffered source; `path` is only used in error messages.
    pub fn from_reader(
        path: PathBuf,
        mut lines: Box<dyn BufRead + Send>,
    ) -> Result<Self, TickFileError> {
        let mut header = String::new();
        read_line(&mut lines, &mut header).map_err(|error| TickFileError::Row { path: path.clone(), line: 1, reason: unreadable(&error) })?;
        let layout = detect_layout(header.trim_start_matches('\u{feff}').trim_end())
            .map_err(|reason| TickFileError::Row { path: path.clone(), line: 1, reason })?;
        // A headerless format's first line is already a row.
        let (line, first_row) = if layout.headerless { (0, Some(header)) } else { (1, None) };
        Ok(Self {
            path,
            lines,
            layout,
            line,
            first_row,
            buffer: String::new(),
            last_bid: None,
            last_ask: None,
            failed: false,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn parse_row(&mut self) -> Result<FileTick, String> {
        let layout = self.layout;
        let row = self.buffer.trim_end_matches(['\r', '\n']);
        let fields: Vec<&str> = row.split(layout.separator).collect();
        let needed = [layout.bid, layout.ask, layout.symbol.unwrap_or(0)]
            .into_iter()
            .chain(match layout.time {
                TimeColumn::EpochMs(i) | TimeColumn::Text(i) | TimeColumn::HistData(i) => [i, i],
                TimeColumn::DateAndTime(d, t) => [d, t],
            })
            .max()
            .unwrap_or(0);
        if fields.len() <= needed {
            return Err(format!("expected at least {} fields, found {}", needed + 1, fields.len()));
        }
        let time_msc = match layout.time {
            TimeColumn::EpochMs(i) => fields[i]
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("time {} is not epoch milliseconds", quote(fields[i])))?,
            // A `time` column may hold epoch milliseconds too.
            TimeColumn::Text(i) if is_epoch_ms(fields[i].trim()) => fields[i].trim().parse::<i64>().map_err(|e| e.to_string())?,
            TimeColumn::Text(i) => parse_timestamp_ms(fields[i])?,
            TimeColumn::HistData(i) => histdata_time_ms(fields[i].trim())?,
            TimeColumn::DateAndTime(d, t) => {
                parse_timestamp_ms(&format!("{} {}", fields[d].trim(), fields[t].trim()))?
            }
        };
        let bid = price(fields[layout.bid], "bid", layout.carry_forward, self.last_bid)?;
        let ask = price(fields[layout.ask], "ask", layout.carry_forward, self.last_ask)?;
        self.last_bid = Some(bid);
        self.last_ask = Some(ask);
        let symbol = layout.symbol.map(|i| fields[i].trim().to_owned());
        if symbol.as_deref() == Some("") {
            return Err("symbol is empty".into());
        }
        Ok(FileTick { line: self.line, symbol, time_msc, bid, ask })
    }
}

fn price(text: &str, side: &str, carry_forward: bool, last: Option<f64>) -> Result<f64, String> {
    let text = text.trim();
    if text.is_empty() {
        return match (carry_forward, last) {
            (true, Some(last)) => Ok(last),
            (true, None) => Err(format!("{side} is empty and there is no earlier {side} to carry")),
            (false, _) => Err(format!("{side} is empty")),
        };
    }
    text.parse::<f64>().map_err(|_| format!("{side} {} is not a number", quote(text)))
}

impl Iterator for TickFileReader {
    type Item = Result<FileTick, TickFileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            self.buffer.clear();
            self.line += 1;
            let read = match self.first_row.take() {
                Some(row) => {
                    self.buffer = row;
                    Ok(self.buffer.len())
                }
                None => read_line(&mut self.lines, &mut self.buffer),
            };
            match read {
                Ok(0) => return None,
                Ok(_) if self.buffer.trim().is_empty() => continue,
                Ok(_) => {
                    return Some(self.parse_row().map_err(|reason| {
                        self.failed = true;
                        TickFileError::Row { path: self.path.clone(), line: self.line, reason }
                    }));
                }
                Err(error) => {
                    self.failed = true;
                    return Some(Err(TickFileError::Row { path: self.path.clone(), line: self.line, reason: unreadable(&error) }));
                }
            }
        }
    }
}

/// UTF-16 text (MetaTrader's exports, with their byte order mark) read as UTF-8.
struct Utf16Reader<R> {
    inner: R,
    big_endian: bool,
    /// Decoded UTF-8 not yet handed out, from `start`.
    decoded: Vec<u8>,
    start: usize,
    /// A byte of a code unit split across reads, and a high surrogate waiting for its pair.
    odd_byte: Option<u8>,
    high: Option<u16>,
}

impl<R: Read> Utf16Reader<R> {
    fn new(inner: R, big_endian: bool) -> Self {
        Self { inner, big_endian, decoded: Vec::new(), start: 0, odd_byte: None, high: None }
    }

    /// Decodes the next chunk; false at the end of the input.
    fn fill(&mut self) -> std::io::Result<bool> {
        let mut raw = [0u8; 8192];
        let n = self.inner.read(&mut raw)?;
        if n == 0 {
            if self.odd_byte.is_some() || self.high.is_some() {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the UTF-16 text ends mid-character"));
            }
            return Ok(false);
        }
        let mut bytes: Vec<u8> = self.odd_byte.take().into_iter().chain(raw[..n].iter().copied()).collect();
        if bytes.len() % 2 == 1 {
            self.odd_byte = bytes.pop();
        }
        let units = bytes.chunks_exact(2).map(|pair| {
            let pair = [pair[0], pair[1]];
            if self.big_endian { u16::from_be_bytes(pair) } else { u16::from_le_bytes(pair) }
        });
        let mut units: Vec<u16> = self.high.take().into_iter().chain(units).collect();
        if units.last().is_some_and(|u| (0xd800..0xdc00).contains(u)) {
            self.high = units.pop();
        }
        self.decoded.clear();
        self.start = 0;
        for c in char::decode_utf16(units) {
            let c = c.map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-16 text"))?;
            let mut buffer = [0u8; 4];
            self.decoded.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
        }
        Ok(true)
    }
}

impl<R: Read> Read for Utf16Reader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.start == self.decoded.len() {
            if !self.fill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.decoded.len() - self.start);
        out[..n].copy_from_slice(&self.decoded[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

/// Why a line could not be read, in the user's terms.
/// The longest line read: far beyond any tick row, it keeps a file without line breaks from
/// being read into memory whole.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One line into `buffer`, at most [`MAX_LINE_BYTES`].
fn read_line(lines: &mut Box<dyn BufRead + Send>, buffer: &mut String) -> std::io::Result<usize> {
    let read = lines.as_mut().take(MAX_LINE_BYTES as u64 + 1).read_line(buffer)?;
    if read > MAX_LINE_BYTES {
        return Err(std::io::Error::other(format!("line longer than {MAX_LINE_BYTES} bytes: not a tick row")));
    }
    Ok(read)
}

fn unreadable(error: &std::io::Error) -> String {
    let text = error.to_string();
    if error.kind() == std::io::ErrorKind::UnexpectedEof || text.contains("deflate") || text.contains("gzip") {
        format!("the file is truncated or damaged here ({text}); the lines before it were read")
    } else if error.kind() == std::io::ErrorKind::InvalidData {
        "this line is not text in UTF-8 (or UTF-16 with its byte order mark, as MetaTrader writes it)".to_owned()
    } else {
        text
    }
}

const BAR_FILE: &str = "this is a bar file (open, high, low, close columns), not ticks: mtml replays ticks with bid and ask; \
     export ticks instead (MetaTrader: View > Symbols > Ticks > Export Ticks)";

fn detect_layout(header: &str) -> Result<Layout, String> {
    if header.contains("<DATE>") {
        if header.contains("<OPEN>") && !header.contains("<BID>") {
            return Err(BAR_FILE.to_owned());
        }
        let columns: Vec<&str> = header.split('\t').map(str::trim).collect();
        let find = |name: &str| {
            columns
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| format!("MetaTrader export header has no {name} column"))
        };
        return Ok(Layout {
            separator: '\t',
            time: TimeColumn::DateAndTime(find("<DATE>")?, find("<TIME>")?),
            bid: find("<BID>")?,
            ask: find("<ASK>")?,
            symbol: None,
            carry_forward: true,
            headerless: false,
        });
    }
    let separator = if header.contains(',') { ',' } else if header.contains('\t') { '\t' } else { ';' };
    if is_histdata_time(header.split(separator).next().unwrap_or("")) {
        // HistData.com ticks: `YYYYMMDD HHMMSSmmm,bid,ask,volume`, no header.
        return Ok(Layout { separator, time: TimeColumn::HistData(0), bid: 1, ask: 2, symbol: None, carry_forward: false, headerless: true });
    }
    let columns: Vec<String> =
        header.split(separator).map(|c| c.trim().trim_matches(['"', '<', '>']).to_ascii_lowercase()).collect();
    let find = |name: &str| columns.iter().position(|c| c == name);
    let bar_columns = ["open", "high", "low", "close"];
    let is_bar = |c: &String| bar_columns.iter().any(|b| c == b || c.ends_with(&format!("_{b}")));
    if find("bid").is_none() && find("ask").is_none() && columns.iter().filter(|c| is_bar(c)).count() >= 4 {
        return Err(BAR_FILE.to_owned());
    }
    let time = if let Some(i) = find("time_utc_ms").or_else(|| find("time_msc")) {
        TimeColumn::EpochMs(i)
    } else if let (Some(d), Some(t)) = (find("date"), find("time")) {
        TimeColumn::DateAndTime(d, t)
    } else if let Some(i) = find("timestamp").or_else(|| find("time")) {
        TimeColumn::Text(i)
    } else {
        return Err(format!(
            "header {} has no time column (time_utc_ms, time_msc, timestamp or time)", quote(header)
        ));
    };
    let bid = find("bid").ok_or_else(|| format!("header {} has no bid column", quote(header)))?;
    let ask = find("ask").ok_or_else(|| format!("header {} has no ask column", quote(header)))?;
    Ok(Layout { separator, time, bid, ask, symbol: find("symbol"), carry_forward: false, headerless: false })
}

/// Epoch milliseconds written as a number (2001 onwards: 12 or 13 digits).
fn is_epoch_ms(text: &str) -> bool {
    (12..=13).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYYMMDD HHMMSSmmm`, HistData.com's tick time.
fn is_histdata_time(text: &str) -> bool {
    let bytes = text.trim().as_bytes();
    bytes.len() == 18 && bytes[8] == b' ' && bytes.iter().enumerate().all(|(i, b)| i == 8 || b.is_ascii_digit())
}

/// HistData.com's `YYYYMMDD HHMMSSmmm`, in EST (UTC-5 all year, no daylight saving), as UTC
/// epoch milliseconds.
fn histdata_time_ms(text: &str) -> Result<i64, String> {
    if !is_histdata_time(text) {
        return Err(format!("time {} is not YYYYMMDD HHMMSSmmm", quote(text)));
    }
    let iso = format!("{}-{}-{} {}:{}:{}.{}-05:00", &text[..4], &text[4..6], &text[6..8], &text[9..11], &text[11..13], &text[13..15], &text[15..18]);
    parse_timestamp_ms(&iso)
}

const CURRENCIES: [&str; 20] = [
    "USD", "EUR", "JPY", "GBP", "CHF", "AUD", "NZD", "CAD", "SEK", "NOK", "DKK", "PLN", "HUF", "CZK", "TRY",
    "ZAR", "MXN", "SGD", "XAU", "XAG",
];
const CRYPTO_BASES: [&str; 10] = ["BTC", "ETH", "SOL", "XRP", "LTC", "BNB", "ADA", "DOGE", "DOT", "AVAX"];
const CRYPTO_QUOTES: [&str; 5] = ["USDT", "USDC", "USD", "EUR", "BTC"];

/// The instrument at the start of `text` (upper case): two currency codes (`EURUSD`), or a
/// crypto base and quote (`BTCUSDT`); `None` if it starts with neither.
fn instrument_prefix(text: &str) -> Option<String> {
    let upper = text.to_ascii_uppercase();
    if upper.len() >= 6 && upper.as_bytes()[..6].is_ascii() && CURRENCIES.contains(&&upper[..3]) && CURRENCIES.contains(&&upper[3..6]) {
        return Some(upper[..6].to_owned());
    }
    let base = CRYPTO_BASES.iter().find(|b| upper.starts_with(*b))?;
    let quote = CRYPTO_QUOTES.iter().find(|q| upper[base.len()..].starts_with(*q))?;
    Some(format!("{base}{quote}"))
}

/// The canonical name of a symbol as a user or a file gives it: `eurusd`, `EURUSDm` and
/// `EURUSD.r` are `EURUSD`, `btcusdt` is `BTCUSDT`; anything else is upper-cased (`GER40`).
pub fn normalize_symbol(given: &str) -> String {
    let given = given.trim();
    match instrument_prefix(given) {
        // Keep a name that only continues with letters of a longer instrument (EURUSDCHF).
        Some(instrument) if given[instrument.len()..].chars().all(|c| !c.is_ascii_uppercase()) => instrument,
        _ => given.to_ascii_uppercase(),
    }
}

/// Guesses the symbol from a file name such as `eurusd_fxcm_ticks.csv.gz`: the run of letters
/// that is an instrument (two currency codes, or a crypto pair such as `btcusdt`). `Ok(None)`
/// when the name has none; an error when it names several, which one is meant being a guess.
pub fn symbol_from_path(path: &Path) -> Result<Option<String>, String> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return Ok(None) };
    let mut found: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter_map(|part| instrument_prefix(part).filter(|i| i.len() == part.len()))
        .collect();
    found.dedup();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        several => Err(format!("the file name {name:?} names several symbols ({}); pass --symbol", several.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<FileTick>, TickFileError> {
        let reader = TickFileReader::from_reader(
            PathBuf::from("test.csv"),
            Box::new(std::io::Cursor::new(text.to_owned().into_bytes())),
        )?;
        reader.collect()
    }

    #[test]
    fn reads_epoch_ms_csv_and_ignores_other_columns() {
        let ticks = read("time_utc_ms,time_utc,bid,ask\n1399230051815,x,1.38700,1.38790\n").unwrap();
        assert_eq!(ticks[0].time_msc, 1_399_230_051_815);
        assert_eq!((ticks[0].bid, ticks[0].ask), (1.387, 1.3879));
        assert_eq!(ticks[0].line, 2);
    }

    #[test]
    fn a_truncated_gzip_and_a_line_that_is_not_utf8_are_named_with_their_line_once() {
        use std::io::Write as _;
        let mut text = String::from("time_utc_ms,bid,ask\n");
        for i in 0..20_000 {
            text.push_str(&format!("{},1.{:05},1.{:05}\n", 1_399_230_051_815_i64 + i, 10_000 + i % 977, 10_010 + i % 977));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let truncated = dir.path().join("ticks.csv.gz");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let error = TickFileReader::open(&truncated).unwrap().find_map(Result::err).expect("an error").to_string();
        assert!(error.contains("truncated"), "{error}");
        let line: u64 = error.split(':').nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no line in {error}"));
        assert!(line > 2, "{error}");
        assert_eq!(error.matches("incomplete deflate stream").count(), 1, "the cause once: {error}");

        let mut bytes = b"time_utc_ms,bid,ask\n1399230051815,1.1,1.2\n".to_vec();
        bytes.extend_from_slice(b"1399230051816,1.1\xff\xfe,1.2\n");
        let error = TickFileReader::from_reader(PathBuf::from("t.csv"), Box::new(std::io::Cursor::new(bytes)))
            .unwrap()
            .find_map(Result::err)
            .expect("an error")
            .to_string();
        assert_eq!(error, "t.csv:3: this line is not text in UTF-8 (or UTF-16 with its byte order mark, as MetaTrader writes it)");
    }

    #[test]
    fn utf16_exports_with_their_byte_order_mark_read_like_utf8() {
        let text = "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\n\
                    2024.01.02\t00:00:00.123\t1.10000\t1.10010\t\t\t6\n\
                    2024.01.02\t00:00:01.000\t1.09999\t\t\t\t2\n";
        let dir = tempfile::tempdir().unwrap();
        let expected = read(text).unwrap();
        for big_endian in [false, true] {
            let mut bytes: Vec<u8> = if big_endian { vec![0xfe, 0xff] } else { vec![0xff, 0xfe] };
            for unit in text.encode_utf16() {
                bytes.extend_from_slice(&if big_endian { unit.to_be_bytes() } else { unit.to_le_bytes() });
            }
            let path = dir.path().join("export.csv");
            std::fs::write(&path, &bytes).unwrap();
            let ticks: Vec<FileTick> = TickFileReader::open(&path).unwrap().collect::<Result<_, _>>().unwrap();
            assert_eq!(ticks, expected, "big endian: {big_endian}");
        }
    }

    #[test]
    fn symbols_with_characters_of_several_bytes_are_kept_whole() {
        // Found by fuzzing: a three-byte character across the currency codes' edge.
        assert_eq!(normalize_symbol("a\u{20ac}bbxyz"), "A\u{20ac}BBXYZ");
        assert_eq!(normalize_symbol("eurusd\u{e9}"), "EURUSD", "a suffix that is not an upper-case letter is a broker suffix");
    }

    #[test]
    fn a_long_bad_field_is_quoted_short_and_a_huge_line_is_not_read_whole() {
        let long = "9x".repeat(20_000);
        let huge = "9x".repeat(5 << 20);
        for (text, expected) in [
            (format!("time_utc_ms,bid,ask\n1399230051815,{long},1.1\n"), "(40000 bytes)"),
            (format!("time_utc_ms,bid,ask\n{long},1.1,1.2\n"), "(40000 bytes)"),
            (format!("timestamp,bid,ask\n2014-05-05 06:00:00{long},1.1,1.2\n"), "bytes)"),
            (format!("{long},bid,ask\n1,1.1,1.2\n"), "(40008 bytes)"),
            (format!("time_utc_ms,bid,ask\n1399230051815,{huge},1.1\n"), "test.csv:2: line longer than 65536 bytes"),
            (format!("{huge},bid,ask\n1,1.1,1.2\n"), "test.csv:1: line longer than 65536 bytes"),
        ] {
            let error = read(&text).unwrap_err().to_string();
            assert!(error.len() < 300, "{} bytes of error", error.len());
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn reads_histdata_headerless_ticks_in_est() {
        let ticks = read("20200101 170000065,1.121200,1.121720,0\n20200101 170010447,1.121200,1.121920,0\n").unwrap();
        assert_eq!(ticks.len(), 2, "the first line is a tick, not a header");
        // 2020-01-01 17:00:00.065 EST is 22:00:00.065 UTC.
        assert_eq!(ticks[0].time_msc, 1_577_916_000_065);
        assert_eq!((ticks[0].bid, ticks[0].ask, ticks[0].line), (1.1212, 1.12172, 1));
        assert_eq!(ticks[1].line, 2);
    }

    #[test]
    fn reads_date_and_time_columns_and_epoch_ms_in_a_time_column() {
        let ticks = read("Date,Time,Bid,Ask\n2024.01.02,00:00:00.123,1.1,1.2\n").unwrap();
        assert_eq!(ticks[0].time_msc, 1_704_153_600_123);
        let ticks = read("time,bid,ask\n1704153600123,1.1,1.2\n").unwrap();
        assert_eq!(ticks[0].time_msc, 1_704_153_600_123);
    }

    #[test]
    fn bar_files_are_refused_as_bar_files() {
        for header in ["timestamp,open,high,low,close", "time_utc_ms,time_utc,bid_open,bid_high,bid_low,bid_close,ask_open,ask_high,ask_low,ask_close", "<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<TICKVOL>"] {
            let error = read(&format!("{header}\n1,1,1,1,1,1,1,1,1,1\n")).unwrap_err().to_string();
            assert!(error.contains("this is a bar file"), "{header}: {error}");
        }
    }

    #[test]
    fn reads_text_timestamps_with_offsets() {
        let ticks = read("timestamp,bid,ask\n2013-01-01 22:00:00.295000+00:00,86.655,86.728\n").unwrap();
        assert_eq!(ticks[0].time_msc, 1_357_077_600_295);
    }

    #[test]
    fn reads_a_symbol_column() {
        let ticks = read("time,symbol,bid,ask\n2014-05-04 19:00:00,GBPUSD,1.5,1.6\n").unwrap();
        assert_eq!(ticks[0].symbol.as_deref(), Some("GBPUSD"));
    }

    #[test]
    fn reads_metatrader_export_carrying_unchanged_sides_forward() {
        let text = "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\n\
                    2024.01.02\t00:00:00.123\t1.10000\t1.10010\t\t\t6\n\
                    2024.01.02\t00:00:00.123\t\t1.10012\t\t\t4\n\
                    2024.01.02\t00:00:01.000\t1.09999\t\t\t\t2\n";
        let ticks = read(text).unwrap();
        let quotes: Vec<_> = ticks.iter().map(|t| (t.time_msc % 10_000, t.bid, t.ask)).collect();
        assert_eq!(quotes, [(123, 1.1, 1.1001), (123, 1.1, 1.10012), (1000, 1.09999, 1.10012)]);
    }

    #[test]
    fn metatrader_export_starting_with_an_empty_side_is_an_error() {
        let text = "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\n2024.01.02\t00:00:00.123\t\t1.1\t\t\t4\n";
        let error = read(text).unwrap_err().to_string();
        assert_eq!(error, "test.csv:2: bid is empty and there is no earlier bid to carry");
    }

    #[test]
    fn a_malformed_row_names_file_line_and_reason_and_ends_reading() {
        let text = "time_utc_ms,bid,ask\n1,1.1,1.2\n2,1.1,oops\n3,1.1,1.2\n";
        let reader = TickFileReader::from_reader(
            PathBuf::from("ticks.csv"),
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
        )
        .unwrap();
        let rows: Vec<_> = reader.collect();
        assert_eq!(rows.len(), 2, "reading stops at the bad row");
        let error = rows[1].as_ref().unwrap_err().to_string();
        assert_eq!(error, "ticks.csv:3: ask \"oops\" is not a number");
    }

    #[test]
    fn short_rows_and_bad_times_are_errors() {
        let error = read("time_utc_ms,bid,ask\n1,1.1\n").unwrap_err().to_string();
        assert_eq!(error, "test.csv:2: expected at least 3 fields, found 2");
        let error = read("timestamp,bid,ask\n2014-02-30 00:00:00,1,2\n").unwrap_err().to_string();
        assert!(error.contains("impossible date"), "{error}");
    }

    #[test]
    fn a_header_without_prices_is_refused() {
        let error = read("time,price\n").unwrap_err().to_string();
        assert!(error.starts_with("test.csv:1: header \"time,price\" has no bid column"), "{error}");
    }

    #[test]
    fn garbage_is_refused_at_the_header() {
        let error = read("\u{0}\u{1}garbage\n").unwrap_err().to_string();
        assert!(error.contains("has no time column"), "{error}");
    }

    #[test]
    fn nan_prices_parse_and_are_left_to_validation() {
        let ticks = read("time_utc_ms,bid,ask\n1,NaN,1.2\n").unwrap();
        assert!(ticks[0].bid.is_nan());
    }

    #[test]
    fn guesses_symbols_from_file_names() {
        let guess = |name: &str| symbol_from_path(Path::new(name));
        assert_eq!(guess("eurusd_fxcm_ticks_2014-05-04_07.csv.gz").unwrap().as_deref(), Some("EURUSD"));
        assert_eq!(guess("/x/truefx_usdjpy_ticks_2013-01.csv").unwrap().as_deref(), Some("USDJPY"));
        assert_eq!(guess("binance_btcusdt_2024.csv").unwrap().as_deref(), Some("BTCUSDT"));
        assert_eq!(guess("ticks.csv").unwrap(), None);
        let error = guess("my_eurusd_and_gbpusd.csv").unwrap_err();
        assert!(error.contains("names several symbols (EURUSD, GBPUSD); pass --symbol"), "{error}");
    }

    #[test]
    fn symbols_are_normalised_as_users_and_brokers_write_them() {
        for (given, canonical) in [
            ("eurusd", "EURUSD"),
            ("EURUSDm", "EURUSD"),
            ("EURUSD.r", "EURUSD"),
            ("btcusdt", "BTCUSDT"),
            ("ger40", "GER40"),
            ("EURUSDCHF", "EURUSDCHF"),
        ] {
            assert_eq!(normalize_symbol(given), canonical, "{given}");
        }
    }
}
