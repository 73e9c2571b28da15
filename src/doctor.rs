//! `qunyun doctor`: checks a deployment online, one line per check, `ok` or
//! `FAIL` with the fix. Against `wecom.api_base` (WeCom, or `qunyun sim` in a
//! rehearsal): a token for every app secret, the trusted-IP list, the
//! customer-contact permission of the contacts app, each app's visible range
//! (app groups need the root department); against a running `qunyun serve`:
//! WeCom's URL verification of every callback URL. Plus, offline, the rule
//! set in force against the config. Secrets are never printed.

pub mod callback;
pub mod diagnose;
pub mod rules;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::clock;
use crate::config::{AppConfig, Config};
use crate::wecom::api::{ApiClient, ApiConfig, GroupChatListRequest, Secret};

use diagnose::{explain, Probe};

pub use rules::{check_rules, rules_in_force, RulesInForce};

/// What `doctor` was asked to do besides the config.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// Base URL of the running `qunyun serve` (default: from `server.listen`).
    pub url: Option<String>,
    /// Check this rule-set file instead of the set in force.
    pub rules_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    /// Not run because an earlier check it needs failed (no token).
    Skip,
}

/// One printed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    /// What was checked: `gettoken app "main"`.
    pub name: String,
    /// What was found, or the problem and its fix.
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        write!(f, "{status:<4}  {}: {}", self.name, self.detail)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// No check failed (skipped ones follow from a failed one).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.status != Status::Fail)
    }

    fn push(&mut self, status: Status, name: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            status,
            name: name.into(),
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(f, "{check}")?;
        }
        Ok(())
    }
}

/// Each WeCom call gets this long; a doctor that hangs helps nobody.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs every check; failures are lines of the report, not errors. Only a
/// client that cannot be built at all is an error.
pub async fn run(config: &Config, options: &DoctorOptions) -> anyhow::Result<Report> {
    let mut report = Report::default();
    check_rule_set(config, options, &mut report).await;

    let wecom = &config.wecom;
    let api = ApiClient::new(
        ApiConfig::new(wecom.api_base.clone(), wecom.corp_id.clone()).with_timeout(CALL_TIMEOUT),
        clock::system(),
    )
    .map_err(|e| anyhow::anyhow!("building the WeCom API client: {e}"))?;
    if wecom.apps.is_empty() {
        report.push(
            Status::Fail,
            "wecom.apps",
            "no app configured: qunyun needs a self-built app (应用管理 → 自建) to send",
        );
    }
    let mut with_token = Vec::new();
    for (index, app) in wecom.apps.iter().enumerate() {
        if check_token(&api, wecom.api_base.as_str(), index, app, &mut report).await {
            with_token.push(app);
        }
    }
    for app in &wecom.apps {
        let name = format!("app-group permission app {:?}", app.name);
        if !with_token.iter().any(|ok| ok.name == app.name) {
            report.push(Status::Skip, name, "no token (see gettoken above)");
            continue;
        }
        let probe = Probe::AppGroup { app: &app.name };
        match api.agent_get(&app.secret, app.agent_id).await {
            Ok(agent) if agent.visible_to_root_department() => {
                report.push(Status::Ok, name, "visible range is the root department")
            }
            Ok(agent) => report.push(
                Status::Fail,
                name,
                format!(
                    "visible range is departments {:?}, not the root department, so \
                     appchat/* is refused. Set 应用管理 → {} → 可见范围 to the whole company",
                    agent.allow_partys.partyid, app.name
                ),
            ),
            Err(error) => report.push(Status::Fail, name, explain(&error, probe, &wecom.api_base)),
        }
    }
    if let Some(app) = wecom.contacts_app() {
        let name = format!("customer-contact permission app {:?}", app.name);
        if !with_token.iter().any(|ok| ok.name == app.name) {
            report.push(Status::Skip, name, "no token (see gettoken above)");
        } else {
            check_contacts(&api, &wecom.api_base, app, name, &mut report).await;
        }
    }
    check_callbacks(config, options, &mut report).await;
    Ok(report)
}

async fn check_rule_set(config: &Config, options: &DoctorOptions, report: &mut Report) {
    match check_rules(config, options.rules_file.as_deref()).await {
        Ok(in_force) => report.push(
            Status::Ok,
            "rules",
            format!(
                "{}: community.app = {:?} is configured",
                in_force.source, in_force.rules.doc.community.app
            ),
        ),
        Err(error) => report.push(Status::Fail, "rules", format!("{error:#}")),
    }
}

/// True when the app's secret got a token.
async fn check_token(
    api: &ApiClient,
    api_base: &str,
    index: usize,
    app: &AppConfig,
    report: &mut Report,
) -> bool {
    let name = format!("gettoken app {:?}", app.name);
    // Through the cache, so the checks after this one reuse the token.
    match api.access_token(&app.secret).await {
        Ok(_) => {
            report.push(Status::Ok, name, "the secret and corp id are accepted");
            true
        }
        Err(error) => {
            let probe = Probe::Token {
                index,
                app: &app.name,
            };
            report.push(Status::Fail, name, explain(&error, probe, api_base));
            false
        }
    }
}

/// The cheapest customer-contact read: one customer group.
async fn check_contacts(
    api: &ApiClient,
    api_base: &str,
    app: &AppConfig,
    name: String,
    report: &mut Report,
) {
    let request = GroupChatListRequest {
        status_filter: 0,
        owner_filter: None,
        cursor: String::new(),
        limit: 1,
    };
    let secret: &Secret = &app.secret;
    match api.groupchat_list(secret, &request).await {
        Ok(_) => report.push(Status::Ok, name, "externalcontact/groupchat/list answers"),
        Err(error) => report.push(
            Status::Fail,
            name,
            explain(&error, Probe::Contacts { app: &app.name }, api_base),
        ),
    }
}

async fn check_callbacks(config: &Config, options: &DoctorOptions, report: &mut Report) {
    let base = options
        .url
        .as_deref()
        .map(|url| url.trim_end_matches('/').to_owned())
        .or_else(|| callback::base_url_for_listen(&config.server.listen));
    let Some(base) = base else {
        report.push(
            Status::Fail,
            "callback URLs",
            format!(
                "server.listen = {:?} gives no address to reach; pass --url http://HOST:PORT",
                config.server.listen
            ),
        );
        return;
    };
    let http = reqwest::Client::new();
    let wecom = &config.wecom;
    let apps = wecom.apps.iter().map(|app| callback::Endpoint {
        url: format!("{base}/wecom/apps/{}/callback", app.name),
        token: app.token.expose(),
        encoding_aes_key: app.encoding_aes_key.expose(),
        receive_id: &wecom.corp_id,
    });
    let bots = wecom.bots.iter().map(|bot| callback::Endpoint {
        url: format!("{base}/wecom/bots/{}/callback", bot.name),
        token: bot.token.expose(),
        encoding_aes_key: bot.encoding_aes_key.expose(),
        receive_id: "",
    });
    for endpoint in apps.chain(bots) {
        let name = format!("callback {}", endpoint.url);
        match callback::verify(&http, &endpoint).await {
            Ok(ms) => report.push(
                Status::Ok,
                name,
                format!("URL verification answered in {ms} ms"),
            ),
            Err(problem) => report.push(Status::Fail, name, problem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_fails_only_on_a_failed_check_and_prints_one_line_each() {
        let mut report = Report::default();
        report.push(Status::Ok, "gettoken app \"main\"", "accepted");
        report.push(Status::Skip, "app-group permission app \"x\"", "no token");
        assert!(report.passed());
        report.push(Status::Fail, "rules", "mismatch");
        assert!(!report.passed());
        assert_eq!(
            report.to_string(),
            "ok    gettoken app \"main\": accepted\n\
             skip  app-group permission app \"x\": no token\n\
             FAIL  rules: mismatch\n"
        );
    }
}
