//! Community rule sets: validate, apply (the CLI's `rules import`), roll back,
//! export, preview a template, and the version history.

use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::rules::{self, RuleSet};
use crate::store::{self, rule_sets::StoredRuleSet};

pub mod problems;

pub use problems::{annotate, check, describe, AnnotatedLine, FieldProblem};

/// The rule set in force: its stored version (`None`: the built-in
/// defaults), its TOML text and its parsed form.
#[derive(Clone)]
pub struct Active {
    pub version: Option<i64>,
    pub body: String,
    pub rules: Arc<RuleSet>,
}

/// Outcome of applying a rule set.
#[derive(Debug)]
pub enum Applied {
    /// Stored as this version, now active.
    Version(i64),
    /// Nothing stored: every problem, placed at its line.
    Invalid(Vec<FieldProblem>),
}

/// The parsed set, or every problem with its field.
pub fn validate(text: &str) -> Result<RuleSet, rules::RuleSetError> {
    RuleSet::from_toml(text)
}

pub async fn active(ops: &Ops) -> OpsResult<Active> {
    let in_force = ops.in_force().await?;
    let body = match in_force.version {
        Some(version) => {
            let mut conn = ops.pool.acquire().await?;
            store::admin::rule_set_version(&mut conn, version)
                .await?
                .map(|stored| stored.body)
                .with_context(|| format!("rule-set version {version} vanished"))?
        }
        None => in_force.rules.to_toml(),
    };
    Ok(Active {
        version: in_force.version,
        body,
        rules: in_force.rules,
    })
}

/// Validates `body` and stores it as the new active version (applied without
/// restart). An invalid set is never stored.
pub async fn apply(ops: &Ops, actor: &Actor, now: DateTime<Utc>, body: &str) -> OpsResult<Applied> {
    actor.require(Role::Operator)?;
    let mut problems = check(body);
    if problems.is_empty() {
        problems.extend(unconfigured_app(ops, body));
    }
    if !problems.is_empty() {
        return Ok(Applied::Invalid(problems));
    }
    let mut tx = ops.begin().await?;
    let version = store::rule_sets::save(&mut tx, body, now).await?;
    audit(
        &mut tx,
        actor,
        now,
        "rules.apply",
        &format!("v{version}"),
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(Applied::Version(version))
}

/// Makes an earlier version active again by saving its text as a new version
/// (history is never rewritten). Returns the new version.
pub async fn rollback(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    version: i64,
) -> OpsResult<i64> {
    actor.require(Role::Operator)?;
    let mut tx = ops.begin().await?;
    let old = store::admin::rule_set_version(&mut tx, version)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("rule-set version {version}")))?;
    if !check(&old.body).is_empty() {
        return Err(OpsError::invalid(
            "version",
            "that version no longer passes validation",
        ));
    }
    if let Some(problem) = unconfigured_app(ops, &old.body) {
        return Err(OpsError::invalid("version", problem.reason));
    }
    let new_version = store::rule_sets::save(&mut tx, &old.body, now).await?;
    audit(
        &mut tx,
        actor,
        now,
        "rules.rollback",
        &format!("v{new_version}"),
        &format!("from v{version}"),
    )
    .await?;
    tx.commit().await?;
    Ok(new_version)
}

/// A valid rule set whose `community.app` is not one of the configured apps
/// (answers, digests, notices and app-group posts would all fail later with
/// "no app named"), as a problem on that field; `None` when it matches or the
/// configured apps are unknown.
fn unconfigured_app(ops: &Ops, body: &str) -> Option<FieldProblem> {
    if ops.configured_apps.is_empty() {
        return None;
    }
    let rules = RuleSet::from_toml(body).ok()?;
    let app = &rules.doc.community.app;
    if ops.configured_apps.contains(app) {
        return None;
    }
    let reason = format!(
        "names app {app:?} but the config has apps: {} (wecom.apps)",
        ops.configured_apps.join(", ")
    );
    Some(FieldProblem {
        line: problems::line_of_path(body, "community.app"),
        path: "community.app".to_owned(),
        reason,
    })
}

/// Every stored version as (version, created_at), oldest first.
pub async fn versions(ops: &Ops) -> OpsResult<Vec<(i64, i64)>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(store::rule_sets::list_versions(&mut conn).await?)
}

pub async fn version(ops: &Ops, version: i64) -> OpsResult<StoredRuleSet> {
    let mut conn = ops.pool.acquire().await?;
    store::admin::rule_set_version(&mut conn, version)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("rule-set version {version}")))
}

/// One of the rule set's templates rendered with its kind's sample values
/// (the contract's samples). None when no template has that name or nothing
/// uses it.
pub fn preview_template(rules: &RuleSet, template: &str) -> Option<String> {
    rules.render_sample(template)
}

/// Inlines `[moderation] terms_file` / `allow_file` (paths relative to `base`)
/// into `terms` / `allow`, so a stored version is complete on its own. Text
/// without those keys is returned unchanged; with them, the document is
/// re-serialised (comments are lost). The CLI calls it before validating or
/// applying a file.
pub fn inline_term_files(text: &str, base: &std::path::Path) -> anyhow::Result<String> {
    let mut doc: toml::Table = text.parse().context("rule set is not TOML")?;
    let Some(toml::Value::Table(moderation)) = doc.get_mut("moderation") else {
        return Ok(text.to_string());
    };
    let mut changed = false;
    for (file_key, inline_key) in [("terms_file", "terms"), ("allow_file", "allow")] {
        let Some(path) = moderation.remove(file_key) else {
            continue;
        };
        let Some(path) = path.as_str() else {
            bail!("moderation.{file_key}: expected a path");
        };
        let full = base.join(path);
        let contents = std::fs::read_to_string(&full)
            .with_context(|| format!("moderation.{file_key}: reading {}", full.display()))?;
        let inline = moderation
            .get(inline_key)
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_string();
        let joined = if inline.trim().is_empty() {
            contents
        } else {
            format!("{inline}\n{contents}")
        };
        moderation.insert(inline_key.to_string(), toml::Value::String(joined));
        changed = true;
    }
    if !changed {
        return Ok(text.to_string());
    }
    Ok(toml::to_string(&doc)?)
}
