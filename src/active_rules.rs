//! The active rule set: one loader, one cache, one policy.
//!
//! The newest stored version is the active one. Every stored version passed
//! validation when it was saved, but the validator can get stricter in a later
//! release; a stored set that no longer validates is never used. Instead qunyun
//! keeps running the last good set (the cached one, or after a restart the
//! newest older version that still validates, else the built-in defaults) and
//! reports the problem through [`ActiveRules::problem`], which the analytics
//! job raises as a red alert (`AlertKind::RulesInvalid`) on the dashboard and
//! to the admins until a valid set is saved.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use sqlx::SqliteConnection;

use crate::rules::RuleSet;
use crate::store::{redemptions, rule_sets};

/// How many older versions are tried when the newest one no longer validates.
const FALLBACK_DEPTH: i64 = 50;

/// A stored rule set that is active by number but not in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesProblem {
    /// The newest stored version, which failed validation.
    pub version: i64,
    /// Why it failed (field paths and reasons).
    pub error: String,
    /// The version in force instead (`None`: the built-in defaults).
    pub running: Option<i64>,
}

#[derive(Default)]
struct Cached {
    /// The newest stored version when this was loaded (0: none stored).
    newest: i64,
    /// The version in force (`None`: built-in defaults).
    running: Option<i64>,
    rules: Option<Arc<RuleSet>>,
    problem: Option<RulesProblem>,
}

/// Shared by the pipeline, the jobs, the console and the CLI (clone freely).
#[derive(Clone, Default)]
pub struct ActiveRules {
    cached: Arc<Mutex<Cached>>,
}

/// The rule set in force and its stored version (`None`: the built-in defaults).
#[derive(Clone)]
pub struct InForce {
    pub version: Option<i64>,
    pub rules: Arc<RuleSet>,
}

impl ActiveRules {
    pub fn new() -> ActiveRules {
        ActiveRules::default()
    }

    /// The rule set in force. Cheap when nothing changed (one `max(version)`
    /// query); re-parses only when a new version was stored.
    pub async fn get(&self, conn: &mut SqliteConnection) -> anyhow::Result<Arc<RuleSet>> {
        Ok(self.in_force(conn).await?.rules)
    }

    /// Like [`get`](Self::get), with the version number in force.
    pub async fn in_force(&self, conn: &mut SqliteConnection) -> anyhow::Result<InForce> {
        let newest = rule_sets::active_version(conn)
            .await
            .context("reading the active rule-set version")?
            .unwrap_or(0);
        let previous = {
            let cached = self.lock();
            if let (true, Some(rules)) = (cached.newest == newest, &cached.rules) {
                return Ok(InForce {
                    version: cached.running,
                    rules: rules.clone(),
                });
            }
            cached.rules.clone().map(|rules| (cached.running, rules))
        };
        let (running, rules, problem) = load(conn, newest, previous).await?;
        // Stock follows the catalog: new items are stocked, changed figures restock.
        let items: Vec<(String, i64)> = rules
            .doc
            .catalog
            .iter()
            .map(|item| (item.item.clone(), item.stock))
            .collect();
        redemptions::sync_catalog(
            conn,
            &items,
            &running.map_or("built-in rules".to_string(), |v| {
                format!("rule-set version {v}")
            }),
            chrono::Utc::now(),
        )
        .await
        .context("syncing catalog stock")?;
        if let Some(problem) = &problem {
            tracing::error!(
                version = problem.version,
                running = ?problem.running,
                error = %problem.error,
                "stored rule set no longer validates; running the last good one"
            );
        }
        let mut cached = self.lock();
        *cached = Cached {
            newest,
            running,
            rules: Some(rules.clone()),
            problem,
        };
        Ok(InForce {
            version: running,
            rules,
        })
    }

    /// The newest stored set fails validation (and what runs instead), if so.
    pub fn problem(&self) -> Option<RulesProblem> {
        self.lock().problem.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Loads version `newest` (0: none stored → built-in). When it does not
/// validate: the previously cached set, else the newest older valid version,
/// else the built-in defaults.
async fn load(
    conn: &mut SqliteConnection,
    newest: i64,
    previous: Option<(Option<i64>, Arc<RuleSet>)>,
) -> anyhow::Result<(Option<i64>, Arc<RuleSet>, Option<RulesProblem>)> {
    let Some(stored) = rule_sets::active(conn)
        .await
        .context("reading the active rule set")?
    else {
        return Ok((None, Arc::new(RuleSet::builtin()), None));
    };
    let error = match RuleSet::from_toml(&stored.body) {
        Ok(rules) => return Ok((Some(stored.version), Arc::new(rules), None)),
        Err(error) => error.to_string(),
    };
    let (running, rules) = match previous {
        Some(previous) => previous,
        None => {
            let older = rule_sets::older_than(conn, newest, FALLBACK_DEPTH)
                .await
                .context("reading older rule sets")?;
            older
                .into_iter()
                .find_map(|old| {
                    RuleSet::from_toml(&old.body)
                        .ok()
                        .map(|rules| (Some(old.version), Arc::new(rules)))
                })
                .unwrap_or_else(|| (None, Arc::new(RuleSet::builtin())))
        }
    };
    let problem = RulesProblem {
        version: stored.version,
        error,
        running,
    };
    Ok((running, rules, Some(problem)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    async fn conn() -> (tempfile::TempDir, sqlx::pool::PoolConnection<sqlx::Sqlite>) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("t.db")).await.unwrap();
        let conn = pool.acquire().await.unwrap();
        (dir, conn)
    }

    fn at() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap()
    }

    #[tokio::test]
    async fn nothing_stored_runs_the_builtin_set() {
        let (_dir, mut conn) = conn().await;
        let active = ActiveRules::new();
        let in_force = active.in_force(&mut conn).await.unwrap();
        assert_eq!(in_force.version, None);
        assert!(active.problem().is_none());
    }

    #[tokio::test]
    async fn a_new_version_is_picked_up_and_an_invalid_one_keeps_the_last_good() {
        let (_dir, mut conn) = conn().await;
        let good = RuleSet::builtin().to_toml();
        let v1 = rule_sets::save(&mut conn, &good, at()).await.unwrap();
        let active = ActiveRules::new();
        assert_eq!(active.in_force(&mut conn).await.unwrap().version, Some(v1));

        let v2 = rule_sets::save(&mut conn, "community = 3", at())
            .await
            .unwrap();
        assert_eq!(active.in_force(&mut conn).await.unwrap().version, Some(v1));
        let problem = active.problem().expect("the invalid version is reported");
        assert_eq!((problem.version, problem.running), (v2, Some(v1)));

        // After a restart (empty cache) the walk back finds the same good version.
        let restarted = ActiveRules::new();
        assert_eq!(
            restarted.in_force(&mut conn).await.unwrap().version,
            Some(v1)
        );
        assert_eq!(restarted.problem().map(|p| p.version), Some(v2));

        let v3 = rule_sets::save(&mut conn, &good, at()).await.unwrap();
        assert_eq!(active.in_force(&mut conn).await.unwrap().version, Some(v3));
        assert!(active.problem().is_none());
    }
}
