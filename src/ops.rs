//! Every manager action, once: `ops::<area>::<verb>(&ops, &actor, now, input)`.
//!
//! Each mutation checks the actor's role, opens one `BEGIN IMMEDIATE`
//! transaction, makes the change, appends the audit row naming the actor, and
//! commits: a change is never stored without its audit row, nor the other way
//! round. The CLI (`cli.rs`), the console pages (`admin::pages` and friends)
//! and the JSON API (`admin::api`) only turn their input into these calls and
//! their results into output.
//!
//! Reads the console needs live here too, so `admin` does not reach into the
//! store or the jobs.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::active_rules::{ActiveRules, InForce};
use crate::jobs::scheduler::SchedulerSettings;
use crate::store;

pub mod accounts;
pub mod audit;
pub mod broadcast;
pub mod chats;
pub mod dashboard;
pub mod honour;
pub mod lottery;
pub mod member_tags;
pub mod members;
pub mod moderation;
pub mod orders;
pub mod points;
pub mod polls;
pub mod queues;
pub mod redemptions;
pub mod review;
pub mod rules;
pub mod schedules;
pub mod segments;
pub mod welcome;

/// What a manager may do. Ordered: each role can do everything the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Works the queues, edits rules, adjusts points.
    Operator,
    /// Also manages accounts and API tokens.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> anyhow::Result<Role> {
        Role::parse(text).ok_or_else(|| anyhow::anyhow!("role must be owner, operator or viewer"))
    }
}

/// Who acts, as the audit log names them, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The console username, `api:<label>` for a bearer token, `cli:<os user>`
    /// for the command line.
    pub name: String,
    pub role: Role,
}

impl Actor {
    pub fn new(name: impl Into<String>, role: Role) -> Actor {
        Actor {
            name: name.into(),
            role,
        }
    }

    /// The command line, named after the OS user running it (`cli:unknown`
    /// when not known). It acts as owner: whoever runs it already holds the
    /// database file.
    pub fn cli(os_user: Option<&str>) -> Actor {
        let user = os_user
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or("unknown");
        Actor::new(format!("cli:{user}"), Role::Owner)
    }

    /// Refuses unless the role is at least `need`.
    pub fn require(&self, need: Role) -> Result<(), OpsError> {
        if self.role >= need {
            Ok(())
        } else {
            Err(OpsError::Forbidden)
        }
    }
}

/// Why an operation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The actor's role does not allow this.
    #[error("your role does not allow this")]
    Forbidden,
    /// The thing acted on does not exist (the message says which).
    #[error("{0} not found")]
    NotFound(String),
    /// The caller's mistake; `field` names the input to fix.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Ours (the database, a bug): logged, never shown in detail.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl OpsError {
    pub fn not_found(what: impl Into<String>) -> OpsError {
        OpsError::NotFound(what.into())
    }

    pub fn invalid(field: &'static str, reason: impl Into<String>) -> OpsError {
        OpsError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<sqlx::Error> for OpsError {
    fn from(error: sqlx::Error) -> Self {
        OpsError::Internal(error.into())
    }
}

pub type OpsResult<T> = Result<T, OpsError>;

/// What every operation needs: the database, the active rule set and how
/// manual schedule runs address chats. Clone freely.
#[derive(Clone)]
pub struct Ops {
    pub pool: SqlitePool,
    pub rules: ActiveRules,
    pub scheduler: SchedulerSettings,
    /// The app names `wecom.apps` configures: a rule set naming another
    /// `community.app` is refused. Empty when unknown (tests, the demo).
    pub configured_apps: Vec<String>,
    /// The largest manual points adjustment, either sign (`admin.max_point_adjustment`).
    pub max_point_adjustment: i64,
}

impl Ops {
    pub fn new(pool: SqlitePool, rules: ActiveRules, scheduler: SchedulerSettings) -> Ops {
        Ops {
            pool,
            rules,
            scheduler,
            configured_apps: Vec::new(),
            max_point_adjustment: crate::config::DEFAULT_MAX_POINT_ADJUSTMENT,
        }
    }

    /// Refuse rule sets whose `community.app` is none of `apps`.
    pub fn with_configured_apps(mut self, apps: Vec<String>) -> Ops {
        self.configured_apps = apps;
        self
    }

    /// With the configured bound on manual points adjustments.
    pub fn with_max_point_adjustment(mut self, max: i64) -> Ops {
        self.max_point_adjustment = max;
        self
    }

    /// Over `pool` with a cache of its own and default scheduler settings
    /// (the demo and tests; the app shares one [`ActiveRules`]).
    pub fn over(pool: SqlitePool) -> Ops {
        Ops::new(pool, ActiveRules::new(), SchedulerSettings::default())
    }

    /// A write transaction that holds SQLite's write lock from the start, so
    /// what it reads cannot change before it writes.
    pub(crate) async fn begin(&self) -> OpsResult<Transaction<'static, Sqlite>> {
        Ok(self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("starting a write transaction")?)
    }

    /// The rule set in force (see [`ActiveRules`]).
    pub async fn in_force(&self) -> OpsResult<InForce> {
        let mut conn = self.pool.acquire().await?;
        Ok(self.rules.in_force(&mut conn).await?)
    }
}

/// Appends the audit row of a change, inside the change's transaction.
pub(crate) async fn audit(
    tx: &mut Transaction<'static, Sqlite>,
    actor: &Actor,
    now: DateTime<Utc>,
    action: &str,
    target: &str,
    detail: &str,
) -> OpsResult<()> {
    store::admin::append_audit(tx, now.timestamp(), &actor.name, action, target, detail)
        .await
        .with_context(|| format!("writing the audit row of {action}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_viewer_operator_owner() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Owner);
        for role in [Role::Viewer, Role::Operator, Role::Owner] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn the_cli_acts_as_owner_named_after_the_os_user() {
        assert_eq!(Actor::cli(Some("mei")), Actor::new("cli:mei", Role::Owner));
        assert_eq!(Actor::cli(Some(" ")).name, "cli:unknown");
        assert_eq!(Actor::cli(None).name, "cli:unknown");
    }

    #[test]
    fn require_refuses_a_lower_role() {
        let viewer = Actor::new("v", Role::Viewer);
        assert!(matches!(
            viewer.require(Role::Operator),
            Err(OpsError::Forbidden)
        ));
        assert!(Actor::new("o", Role::Owner).require(Role::Operator).is_ok());
    }

    #[test]
    fn invalid_input_names_its_field() {
        let error = OpsError::invalid("reason", "a reason is required");
        assert_eq!(error.to_string(), "reason: a reason is required");
    }
}
