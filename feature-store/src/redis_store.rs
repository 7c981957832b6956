//! The Redis online store: one key per symbol and feature set, a compact binary value, a TTL.
//!
//! Key: `{prefix}:{feature set id}:{symbol}`, e.g. `mtml:features:fx@2:EURUSD`. Value, little
//! endian: layout version (u8, 1), time (i64 ms), tick sequence (u64), chain id (16 bytes), mid
//! (f64), value count (u16), values (f64 each): 155 bytes for `fx@2`, no JSON, no per-feature
//! round trips. A batch of writes is one pipelined round trip; a read is one `GET`.

use std::time::Duration;

use mtml_core::{ChainId, Symbol};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::definitions::{FEATURE_SET, FEATURE_COUNT};
use crate::engine::FeatureVector;
use crate::store::{LatestFeatures, OnlineStore, StoreError, latest_at};

const LAYOUT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 8 + 8 + 16 + 8 + 2;

/// Settings of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db`.
    pub url: String,
    /// Key prefix.
    pub prefix: String,
    /// Keys expire this long after their last write, so a symbol no longer traded disappears.
    pub ttl: Duration,
    /// Vectors older than this are read as stale.
    pub stale_after_ms: i64,
    /// Connecting and each command give up after this long (a slow Redis is a down Redis).
    pub timeout: Duration,
}

impl RedisSettings {
    /// Defaults for `url`: prefix `mtml:features`, TTL one hour, stale after 5 s, 2 s timeout.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: "mtml:features".into(),
            ttl: Duration::from_secs(3600),
            stale_after_ms: 5_000,
            timeout: Duration::from_secs(2),
        }
    }
}

/// The latest vectors in Redis. Connects on first use and reconnects by itself, so a Redis that
/// is down at start or goes away later is an error per call, never a crash.
pub struct RedisStore {
    settings: RedisSettings,
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("settings", &self.settings).field("connected", &self.connection.initialized()).finish()
    }
}

impl RedisStore {
    /// A store for `settings`; fails only on a malformed URL.
    pub fn new(settings: RedisSettings) -> Result<Self, StoreError> {
        let client = redis::Client::open(settings.url.as_str()).map_err(|e| StoreError::Refused {
            store: format!("redis at {}", mtml_core::text::redact_url(&settings.url)),
            detail: format!("not a Redis URL: {e}"),
        })?;
        Ok(Self { settings, client, connection: OnceCell::new() })
    }

    /// The key of a symbol's latest vector.
    pub fn key(&self, symbol: &Symbol) -> String {
        format!("{}:{}:{}", self.settings.prefix, FEATURE_SET.id(), symbol)
    }

    fn unavailable(&self, error: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable { store: self.describe(), detail: error.to_string() }
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.settings.timeout)
            .set_response_timeout(self.settings.timeout)
            .set_number_of_retries(1);
        let connection = self
            .connection
            .get_or_try_init(|| async {
                tokio::time::timeout(
                    self.settings.timeout,
                    self.client.get_connection_manager_with_config(config),
                )
                .await
                .map_err(|_| self.unavailable("connect timed out"))?
                .map_err(|e| self.unavailable(e))
            })
            .await?;
        Ok(connection.clone())
    }
}

/// The binary value of a vector.
pub fn encode(vector: &FeatureVector) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 8 * FEATURE_COUNT);
    out.push(LAYOUT_VERSION);
    out.extend_from_slice(&vector.time_msc.to_le_bytes());
    out.extend_from_slice(&vector.seq.to_le_bytes());
    out.extend_from_slice(&vector.chain_id.to_bytes());
    out.extend_from_slice(&vector.mid.to_le_bytes());
    out.extend_from_slice(&(FEATURE_COUNT as u16).to_le_bytes());
    for value in vector.values {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Reads a value written by [`encode`]; says what is wrong with anything else.
pub fn decode(symbol: &Symbol, bytes: &[u8]) -> Result<FeatureVector, String> {
    let take = |at: usize, n: usize| -> Result<&[u8], String> {
        bytes.get(at..at + n).ok_or_else(|| format!("value is {} bytes, too short", bytes.len()))
    };
    let u64_at = |at| -> Result<[u8; 8], String> { take(at, 8).map(|b| b.try_into().unwrap_or([0; 8])) };
    let version = *bytes.first().ok_or("value is empty")?;
    if version != LAYOUT_VERSION {
        return Err(format!("layout version {version}, this build reads {LAYOUT_VERSION}"));
    }
    let time_msc = i64::from_le_bytes(u64_at(1)?);
    let seq = u64::from_le_bytes(u64_at(9)?);
    let chain_id = ChainId::from_slice(take(17, 16)?).ok_or("chain id is all zero")?;
    let mid = f64::from_le_bytes(u64_at(33)?);
    let count = usize::from(u16::from_le_bytes([take(41, 2)?[0], take(41, 2)?[1]]));
    if count != FEATURE_COUNT {
        return Err(format!("{count} values, {} has {FEATURE_COUNT}", FEATURE_SET.id()));
    }
    if bytes.len() != HEADER_LEN + 8 * count {
        return Err(format!("value is {} bytes, expected {}", bytes.len(), HEADER_LEN + 8 * count));
    }
    let mut values = [0.0; FEATURE_COUNT];
    for (i, value) in values.iter_mut().enumerate() {
        *value = f64::from_le_bytes(u64_at(HEADER_LEN + 8 * i)?);
    }
    Ok(FeatureVector { symbol: symbol.clone(), chain_id, time_msc, seq, mid, values })
}

#[async_trait::async_trait]
impl OnlineStore for RedisStore {
    fn describe(&self) -> String {
        format!("redis at {}", mtml_core::text::redact_url(&self.settings.url))
    }

    async fn put_many(&self, vectors: &[FeatureVector]) -> Result<(), StoreError> {
        if vectors.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let ttl_ms = u64::try_from(self.settings.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        for vector in vectors {
            pipe.cmd("SET").arg(self.key(&vector.symbol)).arg(encode(vector)).arg("PX").arg(ttl_ms).ignore();
        }
        pipe.query_async::<()>(&mut connection).await.map_err(|e| self.unavailable(e))
    }

    async fn latest(&self, symbol: &Symbol, now_ms: i64) -> Result<Option<LatestFeatures>, StoreError> {
        let mut connection = self.connection().await?;
        let key = self.key(symbol);
        let bytes: Option<Vec<u8>> =
            redis::cmd("GET").arg(&key).query_async(&mut connection).await.map_err(|e| self.unavailable(e))?;
        let Some(bytes) = bytes else { return Ok(None) };
        let vector = decode(symbol, &bytes)
            .map_err(|detail| StoreError::Corrupt { store: self.describe(), detail: format!("key {key}: {detail}") })?;
        Ok(Some(latest_at(vector, now_ms, self.settings.stale_after_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[test]
    fn values_round_trip_and_damage_is_named() {
        let vector = conformance::vector("EURUSD", 1_399_300_000_123, 4.25);
        let bytes = encode(&vector);
        assert_eq!(bytes.len(), 155);
        assert_eq!(decode(&vector.symbol, &bytes), Ok(vector.clone()));
        assert!(decode(&vector.symbol, &bytes[..100]).unwrap_err().contains("100 bytes, expected 155"));
        assert!(decode(&vector.symbol, &bytes[..20]).unwrap_err().contains("too short"));
        let mut wrong = bytes.clone();
        wrong[0] = 7;
        assert!(decode(&vector.symbol, &wrong).unwrap_err().contains("layout version 7"));
        let mut fewer = bytes;
        fewer[41] = 12;
        assert!(decode(&vector.symbol, &fewer).unwrap_err().contains("12 values, fx@2 has 14"));
    }
}
