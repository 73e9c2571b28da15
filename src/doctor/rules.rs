//! The rule set in force, as `serve` would run it, checked against the config:
//! `check-config`, `serve` at start and `doctor` all refuse a rule set that
//! names an app the config does not have.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::active_rules::ActiveRules;
use crate::config::Config;
use crate::rules::RuleSet;

/// A rule set and where it came from, for the summary line.
pub struct RulesInForce {
    pub rules: Arc<RuleSet>,
    /// `rules.toml`, `stored version 3`, `built-in defaults (…)`.
    pub source: String,
}

/// `file` if given (validated like `rules validate`), else the set in force in
/// the configured database, else, when that database does not exist yet, the
/// built-in defaults. An existing database is opened (and migrated) as `serve`
/// would open it; a missing one is not created.
pub async fn rules_in_force(config: &Config, file: Option<&Path>) -> anyhow::Result<RulesInForce> {
    if let Some(file) = file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let base = file.parent().unwrap_or_else(|| Path::new("."));
        let text = crate::ops::rules::inline_term_files(&text, base)?;
        let rules =
            RuleSet::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        return Ok(RulesInForce {
            rules: Arc::new(rules),
            source: file.display().to_string(),
        });
    }
    let path = &config.database.path;
    if !path.exists() {
        return Ok(RulesInForce {
            rules: Arc::new(RuleSet::builtin()),
            source: format!(
                "built-in defaults (database {} does not exist yet)",
                path.display()
            ),
        });
    }
    let pool = crate::store::open(path).await?;
    let in_force = {
        let mut conn = pool.acquire().await.context("opening the database")?;
        ActiveRules::new().in_force(&mut conn).await?
    };
    pool.close().await;
    let source = match in_force.version {
        Some(version) => format!("stored version {version}"),
        None => "built-in defaults (no rule set stored)".to_owned(),
    };
    Ok(RulesInForce {
        rules: in_force.rules,
        source,
    })
}

/// The rule set in force (or `file`) names only configured apps; the error
/// names both sides and where the rules came from.
pub async fn check_rules(config: &Config, file: Option<&Path>) -> anyhow::Result<RulesInForce> {
    let in_force = rules_in_force(config, file).await?;
    config
        .check_rule_names(&in_force.rules.doc)
        .with_context(|| format!("rule set ({}) does not fit the config", in_force.source))?;
    Ok(in_force)
}
