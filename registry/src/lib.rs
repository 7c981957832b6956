//! The model registry: every model version uploaded, with what it takes and gives.
//!
//! PostgreSQL in production, SQLite as the embedded default, through one sqlx `Any` pool and one
//! portable migration, like the journal. A version records its name, number (1, 2, ... per
//! name), sha256 and size, input and output signature, the feature set it expects, its training
//! metrics (JSON), who uploaded it and when, its state, and the ONNX bytes themselves, checked
//! against the sha256 whenever they are read back.
//!
//! - [`Registry`]: open (migrating), register, list, show, read the bytes.
//! - [`rollout`]: champion, challenger (shadow or canary), promote and rollback, with history.
//! - [`conformance`]: the suite every backend passes, one check per behaviour, stamped out per
//!   backend by [`registry_conformance!`] (behind the `conformance` feature).

pub mod rollout;


use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

pub use rollout::{Challenger, RollbackOutcome, RolloutEvent, RolloutState, Route};

/// Why the registry refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The database refused or is unreachable.
    #[error("registry database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database could not be reached, its schema brought up to date, or (for a reader)
    /// there is none.
    #[error("{0}")]
    Open(mtml_database::OpenError),
    /// The same bytes are already registered under this name.
    #[error("model {name} already has these bytes as version {version} (sha256 {sha256})")]
    Duplicate {
        /// Model name.
        name: String,
        /// The version holding them.
        version: i64,
        /// Their checksum.
        sha256: String,
    },
    /// No such model or version.
    #[error("no model {0} in the registry")]
    NotFound(String),
    /// The change makes no sense in the model's current state; the message says why.
    #[error("{0}")]
    Refused(String),
    /// Someone else changed the model's rollout at the same moment; look again and retry.
    #[error("the rollout of {0} was changed by someone else at the same moment; look at it again and retry")]
    Conflict(String),
    /// Stored bytes no longer match their checksum.
    #[error("model {name}:{version} is corrupt: sha256 {found}, recorded {recorded}")]
    Corrupt {
        /// Model name.
        name: String,
        /// Version.
        version: i64,
        /// Checksum of the bytes read.
        found: String,
        /// Checksum recorded at upload.
        recorded: String,
    },
}

/// Splits a version spec `NAME[:VERSION | :champion | :challenger]` into the name and what
/// follows the last colon, as [`Registry::resolve`] takes it.
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.rsplit_once(':') {
        Some((name, version)) => (name, Some(version)),
        None => (spec, None),
    }
}

/// The sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A version to register; the registry numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    /// Model name.
    pub name: String,
    /// Name of the model's input tensor.
    pub input_name: String,
    /// Features the input takes.
    pub features: i64,
    /// Name of the probability output tensor.
    pub output_name: String,
    /// Feature set the model expects (e.g. `fx@2`).
    pub feature_set: String,
    /// Training metrics, a JSON object (`{}` when none were given).
    pub metrics: String,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When, UTC epoch ms.
    pub uploaded_ms: i64,
    /// The ONNX file.
    pub onnx: Vec<u8>,
}

/// A registered version, without its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRow {
    /// Model name.
    pub name: String,
    /// 1, 2, ... per name.
    pub version: i64,
    /// sha256 of the ONNX bytes.
    pub sha256: String,
    /// Size of the ONNX bytes.
    pub size_bytes: i64,
    /// Input tensor.
    pub input_name: String,
    /// Features the input takes.
    pub features: i64,
    /// Probability output tensor.
    pub output_name: String,
    /// Feature set expected.
    pub feature_set: String,
    /// Training metrics (JSON).
    pub metrics: String,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When, UTC epoch ms.
    pub uploaded_ms: i64,
    /// `registered` until a rollout gives it another state.
    pub state: String,
}


const COLUMNS: &str = "name, version, sha256, size_bytes, input_name, features, output_name, feature_set, metrics, uploaded_by, uploaded_ms, state";

/// A registry database.
#[derive(Debug, Clone)]
pub struct Registry {
    pool: AnyPool,
    /// Where rollouts, promotions and rollbacks made through this handle are told.
    notices: mtml_core::Notices,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl From<mtml_database::OpenError> for RegistryError {
    fn from(error: mtml_database::OpenError) -> Self {
        match error {
            mtml_database::OpenError::Database(e) => Self::Database(e),
            other => Self::Open(other),
        }
    }
}

impl Registry {
    /// The same registry, telling `notices` of every rollout, promotion and rollback made
    /// through it (by an operator's command, Telegram or the gate).
    #[must_use]
    pub fn with_notices(mut self, notices: mtml_core::Notices) -> Self {
        self.notices = notices;
        self
    }

    /// Connects to `url` (`postgres://...`, `sqlite://path?mode=rwc`, `sqlite::memory:`) and
    /// brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self, RegistryError> {
        Ok(Self { pool: mtml_database::open(url, "registry", &MIGRATOR).await?, notices: mtml_core::Notices::default() })
    }

    /// Opens an existing registry for reading: where there is none, a [`RegistryError::Open`] error
    /// saying so ([`mtml_database::OpenError::Missing`]), and nothing is created.
    pub async fn open_existing(url: &str) -> Result<Self, RegistryError> {
        Ok(Self { pool: mtml_database::open_existing(url, "registry", &MIGRATOR).await?, notices: mtml_core::Notices::default() })
    }

    /// Registers a new version of `new.name`, numbered one past the last; refuses bytes the
    /// name already has.
    pub async fn register(&self, new: &NewVersion) -> Result<VersionRow, RegistryError> {
        check_name(&new.name)?;
        let sha256 = sha256_hex(&new.onnx);
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query("SELECT version FROM model_versions WHERE name = $1 AND sha256 = $2")
            .bind(&new.name)
            .bind(&sha256)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            return Err(RegistryError::Duplicate { name: new.name.clone(), version: row.try_get(0)?, sha256 });
        }
        let last: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE name = $1")
            .bind(&new.name)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let size = i64::try_from(new.onnx.len()).unwrap_or(i64::MAX);
        sqlx::query("INSERT INTO model_versions (name, version, sha256, size_bytes, input_name, features, output_name, feature_set, metrics, uploaded_by, uploaded_ms, state, onnx) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'registered', $12)")
            .bind(&new.name).bind(last + 1).bind(&sha256).bind(size).bind(&new.input_name).bind(new.features)
            .bind(&new.output_name).bind(&new.feature_set).bind(&new.metrics).bind(&new.uploaded_by).bind(new.uploaded_ms)
            .bind(&new.onnx)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.show(&new.name, Some(last + 1)).await
    }

    /// Every version, by name then version.
    pub async fn list(&self) -> Result<Vec<VersionRow>, RegistryError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM model_versions ORDER BY name, version"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(version_row).collect()
    }

    /// One version, or the latest of `name` when `version` is `None`.
    pub async fn show(&self, name: &str, version: Option<i64>) -> Result<VersionRow, RegistryError> {
        let row = match version {
            Some(v) => sqlx::query(&format!("SELECT {COLUMNS} FROM model_versions WHERE name = $1 AND version = $2"))
                .bind(name)
                .bind(v)
                .fetch_optional(&self.pool)
                .await?,
            None => sqlx::query(&format!("SELECT {COLUMNS} FROM model_versions WHERE name = $1 ORDER BY version DESC LIMIT 1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        };
        let label = version.map_or_else(|| name.to_owned(), |v| format!("{name}:{v}"));
        row.as_ref().map(version_row).transpose()?.ok_or(RegistryError::NotFound(label))
    }

    /// The ONNX bytes of a version, checked against the sha256 recorded at upload.
    pub async fn onnx(&self, name: &str, version: i64) -> Result<Vec<u8>, RegistryError> {
        let row = sqlx::query("SELECT onnx, sha256 FROM model_versions WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("{name}:{version}")))?;
        let bytes: Vec<u8> = row.try_get(0)?;
        let recorded: String = row.try_get(1)?;
        let found = sha256_hex(&bytes);
        if found != recorded {
            return Err(RegistryError::Corrupt { name: name.to_owned(), version, found, recorded });
        }
        Ok(bytes)
    }

    /// Overwrites a version's stored bytes without updating its checksum, as disk corruption
    /// would; for the conformance suite's corruption check only.
    #[doc(hidden)]
    pub async fn corrupt_for_test(&self, name: &str, version: i64) -> Result<(), RegistryError> {
        sqlx::query("UPDATE model_versions SET onnx = $1 WHERE name = $2 AND version = $3")
            .bind(b"garbage".to_vec())
            .bind(name)
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn version_row(r: &sqlx::any::AnyRow) -> Result<VersionRow, RegistryError> {
    Ok(VersionRow {
        name: r.try_get(0)?,
        version: r.try_get(1)?,
        sha256: r.try_get(2)?,
        size_bytes: r.try_get(3)?,
        input_name: r.try_get(4)?,
        features: r.try_get(5)?,
        output_name: r.try_get(6)?,
        feature_set: r.try_get(7)?,
        metrics: r.try_get(8)?,
        uploaded_by: r.try_get(9)?,
        uploaded_ms: r.try_get(10)?,
        state: r.try_get(11)?,
    })
}

/// Model names are 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit:
/// they appear in `NAME:VERSION` specs, file names and URLs.
pub fn check_name(name: &str) -> Result<(), RegistryError> {
    let fits = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fits {
        Ok(())
    } else {
        Err(RegistryError::Refused(format!(
            "model name {} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            mtml_core::text::quote(name)
        )))
    }
}

/// The suite every registry backend passes.
#[cfg(any(test, feature = "conformance"))]
pub mod conformance {
    use super::*;

    fn version(name: &str, bytes: &[u8]) -> NewVersion {
        NewVersion {
            name: name.into(),
            input_name: "features".into(),
            features: 13,
            output_name: "probabilities".into(),
            feature_set: "fx@1".into(),
            metrics: r#"{"accuracy":0.531}"#.into(),
            uploaded_by: "ci".into(),
            uploaded_ms: 1_700_000_000_000,
            onnx: bytes.to_vec(),
        }
    }

    /// Versions are numbered per name; the same bytes under a name are refused; a listing is
    /// ordered by name and version.
    pub async fn versions_are_numbered_per_name_and_duplicates_refused(registry: &Registry) {
        assert!(registry.list().await.expect("list").is_empty(), "starts empty");
        let first = registry.register(&version("fx", b"model one")).await.expect("register");
        assert_eq!((first.version, first.size_bytes, first.state.as_str()), (1, 9, "registered"));
        assert_eq!(first.sha256, sha256_hex(b"model one"));
        let second = registry.register(&version("fx", b"model two")).await.expect("register");
        assert_eq!(second.version, 2, "numbered per name");
        let other = registry.register(&version("other", b"model one")).await.expect("register");
        assert_eq!(other.version, 1, "another name starts at 1, same bytes allowed");
        let duplicate = registry.register(&version("fx", b"model one")).await.expect_err("duplicate bytes refused");
        assert!(matches!(duplicate, RegistryError::Duplicate { version: 1, .. }), "{duplicate}");
        let names: Vec<(String, i64)> = registry.list().await.expect("list").into_iter().map(|v| (v.name, v.version)).collect();
        assert_eq!(names, [("fx".to_owned(), 1), ("fx".to_owned(), 2), ("other".to_owned(), 1)]);
    }

    /// A name that would not survive a `NAME:VERSION` spec, a path or a URL is refused.
    pub async fn names_are_checked(registry: &Registry) {
        for bad in ["", "bad name/../x", ":1", "a:b", "-x", &"x".repeat(65)] {
            let refused = registry.register(&version(bad, b"bytes")).await.expect_err("refused");
            assert!(matches!(refused, RegistryError::Refused(_)) && refused.to_string().contains("is not allowed"), "{bad:?}: {refused}");
        }
        registry.register(&version("fx-direction_v2.1", b"bytes")).await.expect("a fine name");
        assert_eq!(registry.list().await.expect("list").len(), 1, "nothing of the refused was stored");
    }

    /// `show` gives the latest version by default, or the one asked for, and names a missing one.
    pub async fn show_finds_the_latest_or_the_version_asked_for(registry: &Registry) {
        registry.register(&version("fx", b"model one")).await.expect("register");
        registry.register(&version("fx", b"model two")).await.expect("register");
        assert_eq!(registry.show("fx", None).await.expect("latest").version, 2, "latest by default");
        assert_eq!(registry.show("fx", Some(1)).await.expect("v1").metrics, r#"{"accuracy":0.531}"#);
        assert!(matches!(registry.show("fx", Some(9)).await, Err(RegistryError::NotFound(label)) if label == "fx:9"));
    }

    /// The bytes come back as stored, and damaged bytes are detected by their hash.
    pub async fn bytes_round_trip_and_corruption_is_detected(registry: &Registry) {
        registry.register(&version("fx", b"model one")).await.expect("register");
        registry.register(&version("fx", b"model two")).await.expect("register");
        assert_eq!(registry.onnx("fx", 2).await.expect("bytes"), b"model two", "bytes round trip");
        registry.corrupt_for_test("fx", 2).await.expect("corrupt");
        let corrupt = registry.onnx("fx", 2).await.expect_err("corruption detected");
        assert!(matches!(corrupt, RegistryError::Corrupt { version: 2, .. }), "{corrupt}");
    }

    /// The model the rollout checks use.
    const N: &str = "rollout-fx";

    /// Registers v1 to v3 of [`N`]; nothing is promoted yet, so a rollout, the champion alias
    /// and a rollback are refused.
    pub async fn nothing_is_promoted_at_first(registry: &Registry) {
        for bytes in [b"v1".as_slice(), b"v2", b"v3"] {
            registry.register(&version(N, bytes)).await.expect("register");
        }
        let empty = registry.rollout_state(N).await.expect("state");
        assert_eq!((empty.champion, empty.challenger.is_none(), empty.revision), (None, true, 0), "nothing promoted yet");
        let refused = registry.start_rollout(N, 2, Route::Shadow, "ci", 1).await.expect_err("no champion");
        assert!(refused.to_string().contains("no champion"), "{refused}");
        assert!(registry.resolve(N, Some("champion")).await.is_err(), "no champion alias yet");
        let no_rollback = registry.rollback(N, "ci", 1).await.expect_err("nothing to roll back");
        assert!(no_rollback.to_string().contains("nothing to roll back"), "{no_rollback}");
    }

    /// The first promote makes a champion; what makes no sense is refused by name.
    pub async fn a_promote_makes_a_champion_and_nonsense_is_refused(registry: &Registry) {
        nothing_is_promoted_at_first(registry).await;
        let s = registry.promote(N, 1, "ci", 10).await.expect("first promote");
        assert_eq!((s.champion, s.revision, s.updated_ms), (Some(1), 1, 10));
        assert_eq!(registry.resolve(N, Some("champion")).await.expect("alias"), 1);
        assert_eq!(registry.show(N, Some(1)).await.expect("v1").state, "champion");
        let first = registry.rollback(N, "ci", 11).await.expect_err("first champion cannot roll back");
        assert!(first.to_string().contains("first champion"), "{first}");
        assert!(matches!(registry.promote(N, 1, "ci", 12).await, Err(RegistryError::Refused(_))), "already champion");
        assert!(matches!(registry.start_rollout(N, 1, Route::Shadow, "ci", 12).await, Err(RegistryError::Refused(_))), "champion as its own challenger");
        assert!(matches!(registry.start_rollout(N, 9, Route::Shadow, "ci", 12).await, Err(RegistryError::NotFound(_))), "unknown version");
        let bad = Route::Canary { percent: 0, symbols: vec![] };
        assert!(matches!(registry.start_rollout(N, 2, bad, "ci", 12).await, Err(RegistryError::Refused(_))), "0 percent");
    }

    /// A challenger in shadow, moved to canary with its route and symbols, then replaced.
    pub async fn a_challenger_goes_from_shadow_to_canary_and_can_be_replaced(registry: &Registry) {
        a_promote_makes_a_champion_and_nonsense_is_refused(registry).await;
        let s = registry.start_rollout(N, 2, Route::Shadow, "ci", 20).await.expect("shadow");
        assert_eq!(s.challenger, Some(Challenger { version: 2, route: Route::Shadow }));
        assert_eq!(registry.resolve(N, Some("challenger")).await.expect("alias"), 2);
        assert_eq!(registry.show(N, Some(2)).await.expect("v2").state, "shadow");
        let canary = Route::Canary { percent: 25, symbols: vec!["EURUSD".into(), "GBPUSD".into()] };
        let s = registry.start_rollout(N, 2, canary.clone(), "ci", 30).await.expect("shadow to canary");
        assert_eq!(s.challenger, Some(Challenger { version: 2, route: canary }), "route and symbols round trip");
        assert_eq!(registry.show(N, Some(2)).await.expect("v2").state, "canary");
        let s = registry.start_rollout(N, 3, Route::Shadow, "ci", 31).await.expect("replace the challenger");
        assert_eq!(s.challenger.map(|c| c.version), Some(3));
        assert_eq!(registry.show(N, Some(2)).await.expect("v2").state, "registered", "a replaced challenger is back to registered");
    }

    /// A rollback withdraws a challenger, or else undoes the last promote, one at a time.
    pub async fn a_rollback_withdraws_the_challenger_or_restores_the_previous_champion(registry: &Registry) {
        a_challenger_goes_from_shadow_to_canary_and_can_be_replaced(registry).await;
        let (outcome, s) = registry.rollback(N, "ci", 40).await.expect("withdraw the challenger");
        assert_eq!(outcome, RollbackOutcome::ChallengerWithdrawn { version: 3 });
        assert_eq!((s.champion, s.challenger.is_none()), (Some(1), true));
        assert_eq!(registry.show(N, Some(3)).await.expect("v3").state, "rolled_back");

        registry.start_rollout(N, 2, Route::Canary { percent: 10, symbols: vec![] }, "ci", 50).await.expect("canary");
        let s = registry.promote(N, 2, "ana", 60).await.expect("promote the challenger");
        assert_eq!((s.champion, s.challenger.is_none()), (Some(2), true), "promoting the challenger ends its trial");
        assert_eq!(registry.show(N, Some(1)).await.expect("v1").state, "retired");
        registry.promote(N, 3, "ana", 70).await.expect("promote v3 directly");
        let (outcome, s) = registry.rollback(N, "bo", 80).await.expect("undo the v3 promote");
        assert_eq!(outcome, RollbackOutcome::ChampionRestored { from: 3, to: 2 });
        assert_eq!(s.champion, Some(2));
        let (outcome, _) = registry.rollback(N, "bo", 90).await.expect("undo the v2 promote too");
        assert_eq!(outcome, RollbackOutcome::ChampionRestored { from: 2, to: 1 });
        assert_eq!(registry.show(N, Some(1)).await.expect("v1").state, "champion");
        assert_eq!(registry.show(N, Some(2)).await.expect("v2").state, "rolled_back");
    }

    /// Every change is an event with its own revision, actor and time; undone promotes are marked.
    pub async fn every_change_is_an_event_with_a_revision(registry: &Registry) {
        a_rollback_withdraws_the_challenger_or_restores_the_previous_champion(registry).await;
        let events = registry.rollout_events(N).await.expect("events");
        let actions: Vec<(&str, i64)> = events.iter().map(|e| (e.action.as_str(), e.version)).collect();
        assert_eq!(
            actions,
            [("promote", 1), ("rollout", 2), ("rollout", 2), ("rollout", 3), ("rollback", 3), ("rollout", 2), ("promote", 2), ("promote", 3), ("rollback", 2), ("rollback", 1)]
        );
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>(), "one revision per change");
        assert!(events[6].undone && events[7].undone && !events[0].undone, "the undone promotes are marked");
        assert_eq!((events[7].actor.as_str(), events[7].at_ms, events[7].previous), ("ana", 70, Some(2)));
        assert_eq!(registry.rollout_state(N).await.expect("state").revision, 10);
    }

    /// Two operators acting on the same revision: the second is refused, not lost silently.
    pub async fn a_change_on_a_stale_revision_is_refused(registry: &Registry) {
        a_rollback_withdraws_the_challenger_or_restores_the_previous_champion(registry).await;
        let seen = registry.rollout_state(N).await.expect("state");
        registry.promote(N, 3, "ana", 100).await.expect("first operator");
        let late = registry.promote_from(&seen, 2, "bo", 101).await.expect_err("second operator on a stale revision");
        assert!(matches!(late, RegistryError::Conflict(_)), "{late}");
        assert_eq!(registry.rollout_state(N).await.expect("state").champion, Some(3), "the first change stands");
        assert_eq!(registry.rollout_state("fx").await.expect("state").revision, 0, "per model");
    }
}

/// Stamps out the registry conformance suite for one backend: a `#[tokio::test]` per check, each
/// on a registry of its own (see `mtml_test_support::conformance_tests!`).
#[cfg(any(test, feature = "conformance"))]
#[macro_export]
macro_rules! registry_conformance {
    ($open:path, $close:path) => {
        mtml_test_support::conformance_tests!(mtml_registry::conformance => $open, $close;
            versions_are_numbered_per_name_and_duplicates_refused,
            names_are_checked,
            show_finds_the_latest_or_the_version_asked_for,
            bytes_round_trip_and_corruption_is_detected,
            nothing_is_promoted_at_first,
            a_promote_makes_a_champion_and_nonsense_is_refused,
            a_challenger_goes_from_shadow_to_canary_and_can_be_replaced,
            a_rollback_withdraws_the_challenger_or_restores_the_previous_champion,
            every_change_is_an_event_with_a_revision,
            a_change_on_a_stale_revision_is_refused);
    };
}
