//! Rollout state in the registry: the champion, the challenger and how it takes traffic, and
//! the history of changes that `rollback` walks back.
//!
//! Every change is one transaction that bumps the model's `revision` and appends an event with
//! that revision as its key, so two operators changing one model at once cannot both win: the
//! second is refused with [`RegistryError::Conflict`] and can look again.

use sqlx::Row;

use crate::{Registry, RegistryError};

/// How a challenger takes traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Runs beside the champion on the same inputs; its outputs are recorded, never acted on.
    Shadow,
    /// Acted on for `percent` of chains (by the chain id's stable bucket, so a replay splits
    /// the same way), on `symbols` only if any are given; the champion acts on the rest.
    Canary {
        /// 1 to 100.
        percent: u8,
        /// Canonical symbols, or empty for all.
        symbols: Vec<String>,
    },
}

impl Route {
    /// `shadow` or `canary`, as stored and shown.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Shadow => "shadow",
            Self::Canary { .. } => "canary",
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shadow => write!(f, "shadow"),
            Self::Canary { percent, symbols } if symbols.is_empty() => write!(f, "canary {percent}%"),
            Self::Canary { percent, symbols } => write!(f, "canary {percent}% of {}", symbols.join(",")),
        }
    }
}

/// The challenger of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenger {
    /// Its version.
    pub version: i64,
    /// How it takes traffic.
    pub route: Route,
}

/// Who serves a model now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutState {
    /// Model name.
    pub name: String,
    /// The version acted on (alias `champion`), if one was promoted.
    pub champion: Option<i64>,
    /// The version on trial (alias `challenger`), if any.
    pub challenger: Option<Challenger>,
    /// Changes so far; 0 before the first. Pollers reload when it moves.
    pub revision: i64,
    /// When it last changed, UTC epoch ms.
    pub updated_ms: i64,
}

/// One change to a model's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutEvent {
    /// The revision it made.
    pub seq: i64,
    /// `rollout`, `promote` or `rollback`.
    pub action: String,
    /// The version it concerned.
    pub version: i64,
    /// For a promote: the champion before it (what a rollback restores).
    pub previous: Option<i64>,
    /// In words.
    pub detail: String,
    /// When, UTC epoch ms.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// A promote a rollback has since undone.
    pub undone: bool,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// The challenger was withdrawn; the champion is unchanged.
    ChallengerWithdrawn {
        /// The withdrawn version.
        version: i64,
    },
    /// The last promote was undone.
    ChampionRestored {
        /// The version demoted.
        from: i64,
        /// The version champion again.
        to: i64,
    },
}

impl std::fmt::Display for RollbackOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ChallengerWithdrawn { version } => write!(f, "challenger {version} withdrawn; the champion serves alone"),
            Self::ChampionRestored { from, to } => write!(f, "champion {from} rolled back to {to}"),
        }
    }
}

/// A change to make, in one transaction.
struct Change {
    champion: Option<i64>,
    challenger: Option<Challenger>,
    event: (&'static str, i64, Option<i64>, String),
    /// Version states to set.
    states: Vec<(i64, &'static str)>,
    /// A promote event to mark undone.
    undo: Option<i64>,
}

impl Registry {
    /// Who serves `name` now (no champion and no challenger before the first promote).
    pub async fn rollout_state(&self, name: &str) -> Result<RolloutState, RegistryError> {
        let row = sqlx::query("SELECT champion, challenger, route, percent, symbols, revision, updated_ms FROM model_rollouts WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(RolloutState { name: name.to_owned(), champion: None, challenger: None, revision: 0, updated_ms: 0 });
        };
        let challenger: Option<i64> = row.try_get(1)?;
        let route: String = row.try_get(2)?;
        let percent: i64 = row.try_get(3)?;
        let symbols: String = row.try_get(4)?;
        let challenger = challenger.map(|version| Challenger {
            version,
            route: if route == "canary" {
                Route::Canary {
                    percent: u8::try_from(percent).unwrap_or(100),
                    symbols: symbols.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                }
            } else {
                Route::Shadow
            },
        });
        Ok(RolloutState {
            name: name.to_owned(),
            champion: row.try_get(0)?,
            challenger,
            revision: row.try_get(5)?,
            updated_ms: row.try_get(6)?,
        })
    }

    /// Every change to `name`'s rollout, oldest first.
    pub async fn rollout_events(&self, name: &str) -> Result<Vec<RolloutEvent>, RegistryError> {
        let rows = sqlx::query("SELECT seq, action, version, previous, detail, at_ms, actor, undone FROM model_events WHERE name = $1 ORDER BY seq")
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RolloutEvent {
                    seq: r.try_get(0)?,
                    action: r.try_get(1)?,
                    version: r.try_get(2)?,
                    previous: r.try_get(3)?,
                    detail: r.try_get(4)?,
                    at_ms: r.try_get(5)?,
                    actor: r.try_get(6)?,
                    undone: r.try_get::<i64, _>(7)? != 0,
                })
            })
            .collect()
    }

    /// A version number from `NAME:SPEC`'s spec: a number, `champion`, `challenger`, or `None`
    /// for the latest.
    pub async fn resolve(&self, name: &str, spec: Option<&str>) -> Result<i64, RegistryError> {
        let state = || async { self.rollout_state(name).await };
        match spec {
            None => Ok(self.show(name, None).await?.version),
            Some("champion") => state().await?.champion.ok_or_else(|| RegistryError::NotFound(format!("{name}:champion (nothing promoted yet)"))),
            Some("challenger") => state()
                .await?
                .challenger
                .map(|c| c.version)
                .ok_or_else(|| RegistryError::NotFound(format!("{name}:challenger (no rollout under way)"))),
            Some(number) => {
                let version = number.parse::<i64>().map_err(|_| RegistryError::NotFound(format!("{name}:{number} (a version is a number, champion or challenger)")))?;
                Ok(self.show(name, Some(version)).await?.version)
            }
        }
    }

    /// Puts `version` on trial beside the champion, replacing any other challenger.
    pub async fn start_rollout(&self, name: &str, version: i64, route: Route, actor: &str, now_ms: i64) -> Result<RolloutState, RegistryError> {
        if let Route::Canary { percent, .. } = &route
            && !(1..=100).contains(percent)
        {
            return Err(RegistryError::Refused(format!("a canary takes 1 to 100 percent of chains, not {percent}")));
        }
        self.show(name, Some(version)).await?;
        let state = self.rollout_state(name).await?;
        let Some(champion) = state.champion else {
            return Err(RegistryError::Refused(format!(
                "{name} has no champion to try {name}:{version} against: promote a version first"
            )));
        };
        if champion == version {
            return Err(RegistryError::Refused(format!("{name}:{version} is the champion already")));
        }
        let mut states = vec![(version, if route == Route::Shadow { "shadow" } else { "canary" })];
        if let Some(old) = &state.challenger
            && old.version != version
        {
            states.push((old.version, "registered"));
        }
        let detail = format!("{name}:{version} on {route} beside champion {champion}");
        let change = Change {
            champion: Some(champion),
            challenger: Some(Challenger { version, route }),
            event: ("rollout", version, None, detail),
            states,
            undo: None,
        };
        self.apply(name, &state, change, actor, now_ms).await
    }

    /// Makes `version` the champion; the one before is kept for [`Registry::rollback`].
    pub async fn promote(&self, name: &str, version: i64, actor: &str, now_ms: i64) -> Result<RolloutState, RegistryError> {
        let state = self.rollout_state(name).await?;
        self.promote_from(&state, version, actor, now_ms).await
    }

    /// [`Registry::promote`] as decided from `state`, which may since have changed (then
    /// [`RegistryError::Conflict`]); public for the conformance suite's concurrency check.
    #[doc(hidden)]
    pub async fn promote_from(&self, state: &RolloutState, version: i64, actor: &str, now_ms: i64) -> Result<RolloutState, RegistryError> {
        let name = state.name.as_str();
        self.show(name, Some(version)).await?;
        if state.champion == Some(version) {
            return Err(RegistryError::Refused(format!("{name}:{version} is the champion already")));
        }
        let mut states = vec![(version, "champion")];
        if let Some(previous) = state.champion {
            states.push((previous, "retired"));
        }
        // A challenger other than the promoted version stays on trial against the new champion.
        let challenger = state.challenger.clone().filter(|c| c.version != version);
        let detail = match state.champion {
            Some(previous) => format!("{name}:{version} champion in place of {previous}"),
            None => format!("{name}:{version} first champion"),
        };
        let change = Change { champion: Some(version), challenger, event: ("promote", version, state.champion, detail), states, undo: None };
        self.apply(name, state, change, actor, now_ms).await
    }

    /// Undoes the latest step: withdraws the challenger if there is one, otherwise restores the
    /// champion before the last promote still in force.
    pub async fn rollback(&self, name: &str, actor: &str, now_ms: i64) -> Result<(RollbackOutcome, RolloutState), RegistryError> {
        let state = self.rollout_state(name).await?;
        if let Some(challenger) = &state.challenger {
            let version = challenger.version;
            let change = Change {
                champion: state.champion,
                challenger: None,
                event: ("rollback", version, None, format!("challenger {name}:{version} withdrawn")),
                states: vec![(version, "rolled_back")],
                undo: None,
            };
            let after = self.apply(name, &state, change, actor, now_ms).await?;
            return Ok((RollbackOutcome::ChallengerWithdrawn { version }, after));
        }
        let last_promote = self
            .rollout_events(name)
            .await?
            .into_iter()
            .rev()
            .find(|e| e.action == "promote" && !e.undone)
            .ok_or_else(|| RegistryError::Refused(format!("{name} has nothing to roll back: no challenger and no promote")))?;
        let Some(to) = last_promote.previous else {
            return Err(RegistryError::Refused(format!(
                "{name}:{} is the first champion; there is no earlier one to roll back to",
                last_promote.version
            )));
        };
        let from = last_promote.version;
        let change = Change {
            champion: Some(to),
            challenger: None,
            event: ("rollback", to, Some(from), format!("champion {name}:{from} rolled back to {to}")),
            states: vec![(from, "rolled_back"), (to, "champion")],
            undo: Some(last_promote.seq),
        };
        let after = self.apply(name, &state, change, actor, now_ms).await?;
        Ok((RollbackOutcome::ChampionRestored { from, to }, after))
    }

    async fn apply(&self, name: &str, before: &RolloutState, change: Change, actor: &str, now_ms: i64) -> Result<RolloutState, RegistryError> {
        let revision = before.revision + 1;
        let (route, percent, symbols) = match change.challenger.as_ref().map(|c| &c.route) {
            Some(Route::Canary { percent, symbols }) => ("canary", i64::from(*percent), symbols.join(",")),
            Some(Route::Shadow) => ("shadow", 0, String::new()),
            None => ("none", 0, String::new()),
        };
        let conflict = || RegistryError::Conflict(name.to_owned());
        let mut tx = self.pool.begin().await?;
        let (action, version, previous, detail) = change.event;
        // The event key (name, revision) is unique: a concurrent change on the same revision
        // fails here, or in the guarded update below.
        sqlx::query("INSERT INTO model_events (name, seq, action, version, previous, detail, at_ms, actor, undone) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)")
            .bind(name).bind(revision).bind(action).bind(version).bind(previous).bind(&detail).bind(now_ms).bind(actor)
            .execute(&mut *tx)
            .await
            .map_err(|e| if is_unique_violation(&e) { conflict() } else { e.into() })?;
        let updated = if before.revision == 0 {
            sqlx::query("INSERT INTO model_rollouts (name, champion, challenger, route, percent, symbols, revision, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(name).bind(change.champion).bind(change.challenger.as_ref().map(|c| c.version)).bind(route).bind(percent).bind(&symbols).bind(revision).bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(|e| if is_unique_violation(&e) { conflict() } else { e.into() })?
                .rows_affected()
        } else {
            sqlx::query("UPDATE model_rollouts SET champion = $1, challenger = $2, route = $3, percent = $4, symbols = $5, revision = $6, updated_ms = $7 WHERE name = $8 AND revision = $9")
                .bind(change.champion).bind(change.challenger.as_ref().map(|c| c.version)).bind(route).bind(percent).bind(&symbols).bind(revision).bind(now_ms)
                .bind(name).bind(before.revision)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        };
        if updated != 1 {
            return Err(conflict());
        }
        for (v, state) in change.states {
            sqlx::query("UPDATE model_versions SET state = $1 WHERE name = $2 AND version = $3")
                .bind(state).bind(name).bind(v)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(seq) = change.undo {
            sqlx::query("UPDATE model_events SET undone = 1 WHERE name = $1 AND seq = $2").bind(name).bind(seq).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let described = if detail.is_empty() { format!("{name}:{version}") } else { detail };
        self.notices.emit(|| mtml_core::Notice::Model { action: action.to_owned(), detail: described, by: actor.to_owned() });
        self.rollout_state(name).await
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
