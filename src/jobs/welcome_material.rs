//! Keeps the rule set's customer-group welcome material (入群欢迎语素材) in
//! WeCom: `group_welcome_template/add` the first time, `/edit` of the same
//! template after the rule set's text changed, nothing otherwise
//! (docs/wecom.md#group-welcome-templates). This job is the one place that
//! syncs it, so applying a rule set (console, API or CLI) is all a manager does.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::active_rules::ActiveRules;
use crate::config::Secret;
use crate::jobs::Job;
use crate::rules::welcome::{material_sync, MaterialSync};
use crate::store::welcome as store;
use crate::wecom::api::{ApiClient, GroupWelcomeTemplate, GroupWelcomeTemplateEdit, TextContent};

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaterialOutcome {
    UpToDate,
    Added { template_id: String },
    Edited { template_id: String },
}

pub struct WelcomeMaterialSync {
    pool: SqlitePool,
    api: ApiClient,
    /// Secret of the app allowed to call the customer-contact APIs.
    secret: Secret,
    rules: ActiveRules,
}

impl WelcomeMaterialSync {
    pub fn new(pool: SqlitePool, api: ApiClient, secret: Secret) -> Self {
        Self {
            pool,
            api,
            secret,
            rules: ActiveRules::new(),
        }
    }

    /// Shares the service's active-rules cache (`new` starts a private one).
    pub fn with_rules(mut self, rules: ActiveRules) -> Self {
        self.rules = rules;
        self
    }

    pub async fn sync(&self, now: DateTime<Utc>) -> anyhow::Result<MaterialOutcome> {
        let (rules, synced) = {
            let mut conn = self.pool.acquire().await?;
            let rules = self.rules.get(&mut conn).await?;
            (rules, store::synced_material(&mut conn).await?)
        };
        let held = synced
            .as_ref()
            .map(|s| (s.template_id.as_str(), s.material.as_str()));
        let (template_id, text, outcome) = match material_sync(&rules, held) {
            MaterialSync::UpToDate => return Ok(MaterialOutcome::UpToDate),
            MaterialSync::Add { text } => {
                let id = self
                    .api
                    .group_welcome_template_add(&self.secret, &template(&text))
                    .await?;
                tracing::info!(template_id = %id, "group welcome material added");
                let outcome = MaterialOutcome::Added {
                    template_id: id.clone(),
                };
                (id, text, outcome)
            }
            MaterialSync::Edit { template_id, text } => {
                let edit = GroupWelcomeTemplateEdit {
                    template_id: template_id.clone(),
                    template: template(&text),
                };
                self.api
                    .group_welcome_template_edit(&self.secret, &edit)
                    .await?;
                tracing::info!(template_id = %template_id, "group welcome material edited");
                let outcome = MaterialOutcome::Edited {
                    template_id: template_id.clone(),
                };
                (template_id, text, outcome)
            }
        };
        let mut conn = self.pool.acquire().await?;
        store::save_synced_material(&mut conn, &template_id, &text, now).await?;
        Ok(outcome)
    }
}

fn template(text: &str) -> GroupWelcomeTemplate {
    GroupWelcomeTemplate {
        text: Some(TextContent::new(text)),
        ..GroupWelcomeTemplate::default()
    }
}

impl Job for WelcomeMaterialSync {
    type Outcome = MaterialOutcome;

    fn name(&self) -> &'static str {
        "welcome_material"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<MaterialOutcome> {
        self.sync(now).await
    }
}
