//! The service configuration: defaults, then a TOML file, then `QUNYUN_`-prefixed
//! environment variables (`__` separates nested keys, a number indexes an array:
//! `QUNYUN_WECOM__APPS__0__SECRET`). Read once at start-up and validated, with
//! errors that name the field; nothing below `main` reads the environment.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::wecom::crypto;

pub const ENV_PREFIX: &str = "QUNYUN_";

/// A secret value (corp secret, token, AES key). Never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub community: CommunityConfig,
    #[serde(default)]
    pub wecom: WeComConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub admin: AdminConfig,
}

/// The manager's web console at `/admin`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Mark session cookies `Secure`: turn on when the console is served over TLS.
    #[serde(default)]
    pub secure_cookies: bool,
    /// How long a login lasts, in hours.
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
    /// Failed sign-ins allowed from one client address (any username) per 15 minutes.
    #[serde(default = "default_login_failures_per_ip")]
    pub login_failures_per_ip: u32,
    /// Count sign-ins by the right-most `X-Forwarded-For` entry instead of the
    /// TCP peer: only behind a reverse proxy that appends it.
    #[serde(default)]
    pub trust_forwarded_for: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            session_hours: default_session_hours(),
            login_failures_per_ip: default_login_failures_per_ip(),
            trust_forwarded_for: false,
        }
    }
}

fn default_session_hours() -> u32 {
    8
}

fn default_login_failures_per_ip() -> u32 {
    20
}

/// `POST /ingest/messages`: normalized message batches from a message-archive puller.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// HMAC-SHA256 key the puller signs each batch with; the endpoint is off without it.
    #[serde(default)]
    pub secret: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the callback server listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Refuse deliveries whose timestamp is further than this from now (seconds);
    /// 0 turns the check off (the default, as WeCom retries late deliveries).
    #[serde(default)]
    pub timestamp_window_secs: u64,
    /// `/readyz` answers 503 while the oldest pending inbox event is older
    /// than this (seconds): callbacks are stored, but nothing processes them.
    #[serde(default = "default_ready_max_inbox_age_secs")]
    pub ready_max_inbox_age_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            timestamp_window_secs: 0,
            ready_max_inbox_age_secs: default_ready_max_inbox_age_secs(),
        }
    }
}

fn default_ready_max_inbox_age_secs() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(default = "default_db_path")]
    pub path: PathBuf,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            path: default_db_path(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunityConfig {
    /// IANA timezone that decides the community's day boundaries.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

impl Default for CommunityConfig {
    fn default() -> Self {
        Self {
            timezone: default_timezone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComConfig {
    #[serde(default)]
    pub corp_id: String,
    /// Base of WeCom's server API, ending in `cgi-bin/`; point it at `qunyun sim` to rehearse.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// The app listed under 客户联系 → 可调用接口的应用, whose secret calls the
    /// customer-contact APIs (mass messages, welcome codes). Default: the first app.
    #[serde(default)]
    pub contacts_app: Option<String>,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    #[serde(default)]
    pub bots: Vec<BotConfig>,
}

impl Default for WeComConfig {
    fn default() -> Self {
        Self {
            corp_id: String::new(),
            api_base: default_api_base(),
            contacts_app: None,
            apps: Vec::new(),
            bots: Vec::new(),
        }
    }
}

impl WeComConfig {
    /// The app whose secret calls the customer-contact APIs.
    pub fn contacts_app(&self) -> Option<&AppConfig> {
        match &self.contacts_app {
            Some(name) => self.apps.iter().find(|app| &app.name == name),
            None => self.apps.first(),
        }
    }
}

/// A self-built app (自建应用): its callback URL is `/wecom/apps/{name}/callback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub name: String,
    pub agent_id: i64,
    pub secret: Secret,
    pub token: Secret,
    pub encoding_aes_key: Secret,
}

/// A smart bot (智能机器人) in API mode: its callback URL is `/wecom/bots/{name}/callback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    pub name: String,
    pub token: Secret,
    pub encoding_aes_key: Secret,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

fn default_db_path() -> PathBuf {
    PathBuf::from("qunyun.db")
}

fn default_timezone() -> String {
    "Asia/Shanghai".to_owned()
}

fn default_api_base() -> String {
    "https://qyapi.weixin.qq.com/cgi-bin/".to_owned()
}

impl Config {
    /// Reads `path` (if given), applies `QUNYUN_` overrides from `env`, validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut document = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in env {
            if let Some(rest) = key.strip_prefix(ENV_PREFIX) {
                apply_env_override(&mut document, rest, &value)
                    .with_context(|| format!("applying environment variable {key}"))?;
            }
        }
        Self::from_table(document)
    }

    pub fn from_toml_str(text: &str) -> anyhow::Result<Config> {
        let table = text.parse::<toml::Table>().context("parsing config")?;
        Self::from_table(table)
    }

    fn from_table(table: toml::Table) -> anyhow::Result<Config> {
        // The path names the field of a type error (`admin.trust_forwarded_for: …`).
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                anyhow::anyhow!("invalid config: {}: {}", e.path(), e.inner().message())
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field that could make the service misbehave later.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        self.timezone()?;
        if self.database.path.as_os_str().is_empty() {
            bail!("database.path: must not be empty");
        }
        let base = &self.wecom.api_base;
        let url = reqwest::Url::parse(base)
            .map_err(|e| anyhow::anyhow!("wecom.api_base: not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("wecom.api_base: must be an http or https URL");
        }
        if !base.ends_with('/') {
            bail!("wecom.api_base: must end with '/' (e.g. .../cgi-bin/)");
        }
        if !self.wecom.apps.is_empty() && self.wecom.corp_id.trim().is_empty() {
            bail!("wecom.corp_id: required when apps are configured");
        }
        let mut names = HashSet::new();
        for (i, app) in self.wecom.apps.iter().enumerate() {
            let field = |f: &str| format!("wecom.apps[{i}].{f}");
            check_callback_endpoint(&field, &app.name, &app.token, &app.encoding_aes_key)?;
            if !names.insert(format!("app:{}", app.name)) {
                bail!("{}: duplicate app name {:?}", field("name"), app.name);
            }
            if app.agent_id <= 0 {
                bail!("{}: must be a positive number", field("agent_id"));
            }
            if app.secret.expose().is_empty() {
                bail!("{}: must not be empty", field("secret"));
            }
        }
        if let Some(name) = &self.wecom.contacts_app {
            if !self.wecom.apps.iter().any(|app| &app.name == name) {
                bail!("wecom.contacts_app: no app named {name:?} in wecom.apps");
            }
        }
        if !(1..=24 * 30).contains(&self.admin.session_hours) {
            bail!("admin.session_hours: must be between 1 and 720");
        }
        if !(1..=100_000).contains(&self.admin.login_failures_per_ip) {
            bail!("admin.login_failures_per_ip: must be between 1 and 100000");
        }
        if let Some(secret) = &self.ingest.secret {
            if secret.expose().len() < 16 {
                bail!("ingest.secret: must be at least 16 characters");
            }
        }
        for (i, bot) in self.wecom.bots.iter().enumerate() {
            let field = |f: &str| format!("wecom.bots[{i}].{f}");
            check_callback_endpoint(&field, &bot.name, &bot.token, &bot.encoding_aes_key)?;
            if !names.insert(format!("bot:{}", bot.name)) {
                bail!("{}: duplicate bot name {:?}", field("name"), bot.name);
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.listen.parse().map_err(|_| {
            anyhow::anyhow!("server.listen: expected host:port such as 127.0.0.1:8080")
        })
    }

    pub fn timezone(&self) -> anyhow::Result<chrono_tz::Tz> {
        self.community.timezone.parse().map_err(|_| {
            anyhow::anyhow!(
                "community.timezone: unknown IANA timezone {:?}",
                self.community.timezone
            )
        })
    }
}

/// The settings every callback endpoint (app or bot) shares: a URL-safe name,
/// the console's Token and EncodingAESKey.
fn check_callback_endpoint(
    field: &dyn Fn(&str) -> String,
    name: &str,
    token: &Secret,
    encoding_aes_key: &Secret,
) -> anyhow::Result<()> {
    check_name(name).map_err(|r| anyhow::anyhow!("{}: {r}", field("name")))?;
    check_token(token.expose()).map_err(|r| anyhow::anyhow!("{}: {r}", field("token")))?;
    crypto::decode_aes_key(encoding_aes_key.expose()).map_err(|_| {
        anyhow::anyhow!(
            "{}: must be the 43-character EncodingAESKey from the WeCom console",
            field("encoding_aes_key")
        )
    })?;
    Ok(())
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(
            "may contain only letters, digits, '-' and '_' (it is part of the callback URL)",
        );
    }
    Ok(())
}

fn check_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() || token.len() > 32 || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err("must be 1 to 32 letters or digits, as set in the WeCom console");
    }
    Ok(())
}

/// Sets `a__b__0__c` (lower-cased) inside the document to `value`.
fn apply_env_override(document: &mut toml::Table, path: &str, value: &str) -> anyhow::Result<()> {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(String::is_empty) {
        bail!("empty key segment");
    }
    let parsed = parse_env_value(keys.last().map(String::as_str).unwrap_or(""), value);
    let mut slot: &mut toml::Value = document_entry(document, &keys[0]);
    for key in &keys[1..] {
        slot = match key.parse::<usize>() {
            Ok(index) => {
                if !slot.is_array() {
                    *slot = toml::Value::Array(Vec::new());
                }
                let array = slot.as_array_mut().expect("just made an array");
                while array.len() <= index {
                    array.push(toml::Value::Table(toml::Table::new()));
                }
                &mut array[index]
            }
            Err(_) => {
                if !slot.is_table() {
                    *slot = toml::Value::Table(toml::Table::new());
                }
                let table = slot.as_table_mut().expect("just made a table");
                table
                    .entry(key.clone())
                    .or_insert(toml::Value::Table(toml::Table::new()))
            }
        };
    }
    *slot = parsed;
    Ok(())
}

fn document_entry<'a>(document: &'a mut toml::Table, key: &str) -> &'a mut toml::Value {
    document
        .entry(key.to_owned())
        .or_insert(toml::Value::Table(toml::Table::new()))
}

/// Fields whose environment value is a number. Everything else stays a string, so a
/// token or secret made only of digits is not turned into a number by accident.
const NUMERIC_FIELDS: &[&str] = &[
    "agent_id",
    "timestamp_window_secs",
    "ready_max_inbox_age_secs",
    "session_hours",
    "login_failures_per_ip",
];

/// Fields whose environment value is `true` or `false`.
const BOOLEAN_FIELDS: &[&str] = &["secure_cookies", "trust_forwarded_for"];

fn parse_env_value(field: &str, value: &str) -> toml::Value {
    if BOOLEAN_FIELDS.contains(&field) {
        if let Ok(b) = value.parse::<bool>() {
            return toml::Value::Boolean(b);
        }
    }
    if NUMERIC_FIELDS.contains(&field) {
        if let Ok(n) = value.parse::<i64>() {
            return toml::Value::Integer(n);
        }
    }
    toml::Value::String(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_without_a_file() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.community.timezone, "Asia/Shanghai");
        assert_eq!(config.server.timestamp_window_secs, 0);
        assert_eq!(config.server.ready_max_inbox_age_secs, 300);
    }

    #[test]
    fn env_overrides_nest_and_index_arrays() {
        let config = Config::load(
            None,
            env(&[
                ("QUNYUN_WECOM__CORP_ID", "ww123"),
                ("QUNYUN_WECOM__APPS__0__NAME", "ops"),
                ("QUNYUN_WECOM__APPS__0__AGENT_ID", "1000002"),
                ("QUNYUN_WECOM__APPS__0__SECRET", "123456"),
                ("QUNYUN_WECOM__APPS__0__TOKEN", "0123"),
                ("QUNYUN_WECOM__APPS__0__ENCODING_AES_KEY", KEY),
                ("OTHER_VAR", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(config.wecom.apps[0].agent_id, 1000002);
        assert_eq!(config.wecom.apps[0].secret.expose(), "123456");
        assert_eq!(config.wecom.apps[0].token.expose(), "0123");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("[server]\nlisten = \"nope\"", "server.listen"),
            ("[community]\ntimezone = \"Mars/Olympus\"", "community.timezone"),
            ("[wecom]\napi_base = \"ftp://x/\"", "wecom.api_base"),
            ("[server]\nlisten2 = \"x\"", "listen2"),
            (
                "[wecom]\ncorp_id = \"ww1\"\n[[wecom.apps]]\nname = \"a\"\nagent_id = 1\nsecret = \"s\"\ntoken = \"t\"\nencoding_aes_key = \"short\"",
                "wecom.apps[0].encoding_aes_key",
            ),
            (
                "[[wecom.bots]]\nname = \"a b\"\ntoken = \"t\"\nencoding_aes_key = \"x\"",
                "wecom.bots[0].name",
            ),
            (
                "[admin]\nlogin_failures_per_ip = 0",
                "admin.login_failures_per_ip",
            ),
            (
                "[admin]\ntrust_forwarded_for = \"yes\"",
                "trust_forwarded_for",
            ),
        ];
        for (text, field) in cases {
            let err = format!("{:#}", Config::from_toml_str(text).unwrap_err());
            assert!(
                err.contains(field),
                "{text:?} gave {err:?}, expected it to name {field}"
            );
        }
    }

    #[test]
    fn admin_throttling_settings_come_from_env_with_defaults() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.admin.login_failures_per_ip, 20);
        assert!(!config.admin.trust_forwarded_for);
        let config = Config::load(
            None,
            env(&[
                ("QUNYUN_ADMIN__LOGIN_FAILURES_PER_IP", "50"),
                ("QUNYUN_ADMIN__TRUST_FORWARDED_FOR", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(config.admin.login_failures_per_ip, 50);
        assert!(config.admin.trust_forwarded_for);
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config = Config::load(
            None,
            env(&[
                ("QUNYUN_WECOM__CORP_ID", "ww123"),
                ("QUNYUN_WECOM__APPS__0__NAME", "ops"),
                ("QUNYUN_WECOM__APPS__0__AGENT_ID", "1000002"),
                ("QUNYUN_WECOM__APPS__0__SECRET", "TOPSECRETVALUE"),
                ("QUNYUN_WECOM__APPS__0__TOKEN", "tokenvalue"),
                ("QUNYUN_WECOM__APPS__0__ENCODING_AES_KEY", KEY),
            ]),
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("TOPSECRETVALUE"));
        assert!(!debug.contains("tokenvalue"));
        assert!(!debug.contains(KEY));
    }
}
