//! The service configuration: defaults, then a TOML file, then `QUNYUN_`-prefixed
//! environment variables (`__` separates nested keys, a number indexes an array:
//! `QUNYUN_WECOM__APPS__0__SECRET`). Read once at start-up and validated, with
//! errors that name the field; nothing below `main` reads the environment.
//!
//! Every `QUNYUN_` variable is a config key except the few in [`NON_CONFIG_VARS`],
//! which the command line reads itself. A variable that is neither is refused,
//! naming the key it tried to set: a typo must not be silently ignored.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::rules::ruleset::RuleSetDoc;
use crate::wecom::crypto;

pub const ENV_PREFIX: &str = "QUNYUN_";

/// The app secret `qunyun sim` accepts (never a command-line argument).
pub const SIM_SECRET_VAR: &str = "QUNYUN_SIM_SECRET";

/// `QUNYUN_` variables that are not config keys: the log format (read before the
/// config is), the password `admin create-user` reads, the app secret `qunyun
/// sim` accepts, and the benchmarks' sizes.
pub const NON_CONFIG_VARS: &[&str] = &[
    "QUNYUN_LOG_FORMAT",
    "QUNYUN_ADMIN_PASSWORD",
    SIM_SECRET_VAR,
    "QUNYUN_BENCH_EVENTS",
    "QUNYUN_BENCH_CONCURRENCY",
];

/// A secret value (corp secret, token, AES key). Never printed.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
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
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub archive: ArchiveConfig,
}

/// `GET /metrics` (Prometheus text exposition).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Bearer token a scraper must send; set it from the environment
    /// (`QUNYUN_METRICS__TOKEN`). Without it, only loopback clients may scrape,
    /// unless `public` is true.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Serve `/metrics` to anyone when no token is set (e.g. a private network).
    #[serde(default)]
    pub public: bool,
}

/// How long `serve` keeps rows that only record the past (0 keeps them forever).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Handled inbox events, counted from their arrival; at least
    /// [`MIN_INBOX_RETENTION_DAYS`]: a pruned row's dedupe key no longer stops a
    /// redelivery. Pending and parked events are never pruned.
    #[serde(default = "default_inbox_days")]
    pub inbox_days: u32,
    /// The console's audit log.
    #[serde(default = "default_audit_days")]
    pub audit_days: u32,
    /// Recorded console sign-in failures (the throttle looks back 15 minutes).
    #[serde(default = "default_login_failures_days")]
    pub login_failures_days: u32,
}

/// WeCom redelivers a callback within seconds, but the message archive keeps
/// five days that a puller may post again (docs/wecom.md#delivery-and-retries):
/// dedupe keys must outlive both.
pub const MIN_INBOX_RETENTION_DAYS: u32 = 7;

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            inbox_days: default_inbox_days(),
            audit_days: default_audit_days(),
            login_failures_days: default_login_failures_days(),
        }
    }
}

fn default_inbox_days() -> u32 {
    30
}

fn default_audit_days() -> u32 {
    365
}

fn default_login_failures_days() -> u32 {
    30
}

/// The manager's web console at `/admin`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Mark session cookies `Secure` (sent over HTTPS only). Unset: on, unless
    /// `server.listen` is a loopback address (a local rehearsal over plain HTTP).
    #[serde(default)]
    pub secure_cookies: Option<bool>,
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
    /// Serve the console on its own address (host:port) instead of
    /// `server.listen`, with its own connection and request limits, so console
    /// traffic never competes with WeCom's callbacks.
    #[serde(default)]
    pub listen: Option<String>,
    /// The largest manual points adjustment (either sign) the console and CLI
    /// accept: a typo must not mint millions, nor overflow a balance.
    #[serde(default = "default_max_point_adjustment")]
    pub max_point_adjustment: i64,
}

impl AdminConfig {
    /// Whether session cookies get `Secure`, given where the server listens.
    pub fn secure_cookies_for(&self, listen: &SocketAddr) -> bool {
        self.secure_cookies
            .unwrap_or_else(|| !listen.ip().is_loopback())
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            secure_cookies: None,
            session_hours: default_session_hours(),
            login_failures_per_ip: default_login_failures_per_ip(),
            trust_forwarded_for: false,
            max_point_adjustment: default_max_point_adjustment(),
            listen: None,
        }
    }
}

fn default_session_hours() -> u32 {
    8
}

fn default_login_failures_per_ip() -> u32 {
    20
}

pub const DEFAULT_MAX_POINT_ADJUSTMENT: i64 = 100_000;

fn default_max_point_adjustment() -> i64 {
    DEFAULT_MAX_POINT_ADJUSTMENT
}

/// The message archive (会话内容存档) pulled by `serve` itself through Tencent's
/// SDK library (docs/wecom.md#message-archive). Off unless `enabled`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Path of the vendor library `libWeWorkFinanceSdk_C.so`, opened at run time.
    #[serde(default)]
    pub library: PathBuf,
    /// The archive's own Secret (管理工具 → 会话内容存档); set it from the
    /// environment (`QUNYUN_ARCHIVE__SECRET`).
    #[serde(default)]
    pub secret: Secret,
    /// One RSA private key per public-key version registered in the console:
    /// records name the version their key was encrypted for, so old keys stay.
    #[serde(default)]
    pub private_keys: Vec<ArchiveKeyConfig>,
    /// Seconds between pulls once caught up.
    #[serde(default = "default_archive_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// Alert when the archive has not been read up to its end for this many
    /// hours: WeCom keeps only 5 days.
    #[serde(default = "default_archive_max_lag_hours")]
    pub max_lag_hours: u64,
    /// Records per `GetChatData` call (1 to 1000).
    #[serde(default = "default_archive_page_size")]
    pub page_size: u32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            library: PathBuf::new(),
            secret: Secret::default(),
            private_keys: Vec::new(),
            poll_interval_secs: default_archive_poll_interval_secs(),
            max_lag_hours: default_archive_max_lag_hours(),
            page_size: default_archive_page_size(),
        }
    }
}

/// A private key of one version: a PEM file (`path`) or the PEM itself
/// (`pem`, from the environment: `QUNYUN_ARCHIVE__PRIVATE_KEYS__0__PEM`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveKeyConfig {
    pub version: u32,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub pem: Option<Secret>,
}

/// WeCom keeps archived messages 5 days; a pull fails for good after that.
pub const ARCHIVE_RETENTION_HOURS: u64 = 5 * 24;

fn default_archive_poll_interval_secs() -> u64 {
    10
}

fn default_archive_max_lag_hours() -> u64 {
    24
}

fn default_archive_page_size() -> u32 {
    1000
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
    /// Refuse deliveries whose timestamp is further than this from now (seconds).
    /// WeCom retries an unanswered delivery within seconds and re-sends the same
    /// signed query, so the window only has to cover those retries plus the
    /// clock skew between WeCom and this host; [`DEFAULT_TIMESTAMP_WINDOW_SECS`]
    /// leaves minutes of room for both. 0 turns the check off (not recommended:
    /// then only the inbox's dedupe key stops a replayed delivery).
    #[serde(default = "default_timestamp_window_secs")]
    pub timestamp_window_secs: u64,
    /// `/readyz` answers 503 while the oldest pending inbox event is older
    /// than this (seconds): callbacks are stored, but nothing processes them.
    #[serde(default = "default_ready_max_inbox_age_secs")]
    pub ready_max_inbox_age_secs: u64,
    /// Seconds a client has to send a request's headers; a connection that
    /// sends nothing for this long (idle keep-alive included) is closed.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take in all (waiting for a slot, reading the
    /// body, answering); answered 408 after that.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Requests handled at once per listener; more wait for a slot.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Open connections per listener; more wait in the kernel's accept queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request body in bytes, refused with 413 before it is read
    /// (the ingest endpoint's batches are the largest legitimate bodies).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            timestamp_window_secs: default_timestamp_window_secs(),
            ready_max_inbox_age_secs: default_ready_max_inbox_age_secs(),
            header_read_timeout_secs: default_header_read_timeout_secs(),
            request_timeout_secs: default_request_timeout_secs(),
            max_concurrent_requests: default_max_concurrent_requests(),
            max_connections: default_max_connections(),
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

/// Ten minutes: WeCom's three retries of one delivery arrive within about 20
/// seconds of the first, and a host clock a few minutes off still passes, while a
/// captured delivery can be replayed only briefly.
pub const DEFAULT_TIMESTAMP_WINDOW_SECS: u64 = 600;

fn default_timestamp_window_secs() -> u64 {
    DEFAULT_TIMESTAMP_WINDOW_SECS
}

fn default_header_read_timeout_secs() -> u64 {
    10
}

fn default_request_timeout_secs() -> u64 {
    30
}

fn default_max_concurrent_requests() -> usize {
    1024
}

fn default_max_connections() -> usize {
    4096
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
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
    /// Base of WeCom's server API, ending in `cgi-bin/`; point it at `qunyun sim` to
    /// rehearse. Written with or without the final `/`; a bare host means its `/cgi-bin/`.
    #[serde(
        default = "default_api_base",
        deserialize_with = "deserialize_api_base"
    )]
    pub api_base: String,
    /// The app listed under 客户联系 → 可调用接口的应用, whose secret calls the
    /// customer-contact APIs (mass messages, welcome codes). Default: the first app.
    #[serde(default)]
    pub contacts_app: Option<String>,
    /// The WeCom customer-tag group (企业客户标签组) member tags of external
    /// contacts are synced into; created with the first tag when missing.
    #[serde(default = "default_customer_tag_group")]
    pub customer_tag_group: String,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    #[serde(default)]
    pub bots: Vec<BotConfig>,
}

/// The tag group member tags go into unless `[wecom] customer_tag_group` says otherwise.
pub const DEFAULT_CUSTOMER_TAG_GROUP: &str = "qunyun";

fn default_customer_tag_group() -> String {
    DEFAULT_CUSTOMER_TAG_GROUP.to_owned()
}

impl Default for WeComConfig {
    fn default() -> Self {
        Self {
            corp_id: String::new(),
            api_base: default_api_base(),
            contacts_app: None,
            customer_tag_group: default_customer_tag_group(),
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

/// A smart bot (智能机器人) in API mode. In `callback` mode WeCom posts to
/// `/wecom/bots/{name}/callback` (needs `token` and `encoding_aes_key`); in
/// `websocket` mode qunyun dials out to `ws_url` with `bot_id` and `secret`
/// and needs no public URL (docs/wecom.md#smart-bot-long-connection).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    pub name: String,
    #[serde(default)]
    pub mode: BotMode,
    #[serde(default)]
    pub token: Secret,
    #[serde(default)]
    pub encoding_aes_key: Secret,
    /// Long connection: the BotID shown in the console.
    #[serde(default)]
    pub bot_id: String,
    /// Long connection: the Secret issued for long-connection mode; set it
    /// from the environment (`QUNYUN_WECOM__BOTS__0__SECRET`).
    #[serde(default)]
    pub secret: Secret,
    /// Long connection: WeCom's endpoint; point it at `qunyun sim` to rehearse.
    #[serde(default = "default_ws_url")]
    pub ws_url: String,
}

/// How a smart bot receives messages: WeCom calls our URL, or we hold a
/// WebSocket open to WeCom. A bot is in one mode or the other, never both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotMode {
    #[default]
    Callback,
    Websocket,
}

fn default_ws_url() -> String {
    crate::wecom::longconn::DEFAULT_WS_URL.to_owned()
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

fn deserialize_api_base<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|base| normalize_api_base(&base))
}

/// `…/cgi-bin` and `…/cgi-bin/` are the same base, and a bare host
/// (`http://127.0.0.1:9000`) means its `/cgi-bin/`: every WeCom API lives there,
/// in the simulator too. People paste all three forms.
pub fn normalize_api_base(base: &str) -> String {
    let base = base.trim();
    let bare_host = reqwest::Url::parse(base)
        .is_ok_and(|url| url.path() == "/" && url.query().is_none() && !url.cannot_be_a_base());
    let mut base = base.trim_end_matches('/').to_owned();
    if bare_host {
        base.push_str("/cgi-bin");
    }
    base.push('/');
    base
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
        let mut from_env = Vec::new();
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if NON_CONFIG_VARS.contains(&key.as_str()) {
                continue;
            }
            let field = apply_env_override(&mut document, rest, &value)
                .with_context(|| format!("applying environment variable {key}"))?;
            from_env.push(EnvField { var: key, field });
        }
        Self::from_table(document, &from_env)
    }

    pub fn from_toml_str(text: &str) -> anyhow::Result<Config> {
        let table = text.parse::<toml::Table>().context("parsing config")?;
        Self::from_table(table, &[])
    }

    fn from_table(table: toml::Table, from_env: &[EnvField]) -> anyhow::Result<Config> {
        // The path names the field of a type error (`admin.trust_forwarded_for: …`).
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let field = e.path().to_string();
                let message = e.inner().message();
                match from_env.iter().find(|env| env.field == field) {
                    Some(env) if message.starts_with("unknown field") => anyhow::anyhow!(
                        "invalid config: environment variable {}: {field} is not a config key \
                         (config variables are {ENV_PREFIX} + the key path in upper case with \
                         `__` between levels, e.g. QUNYUN_SERVER__LISTEN; the others are {})",
                        env.var,
                        NON_CONFIG_VARS.join(", ")
                    ),
                    Some(env) => anyhow::anyhow!(
                        "invalid config: {field} (from environment variable {}): {message}",
                        env.var
                    ),
                    None => anyhow::anyhow!("invalid config: {field}: {message}"),
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field that could make the service misbehave later.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        self.admin_listen_addr()?;
        let server = &self.server;
        for (name, value) in [
            (
                "header_read_timeout_secs",
                server.header_read_timeout_secs as usize,
            ),
            ("request_timeout_secs", server.request_timeout_secs as usize),
            ("max_concurrent_requests", server.max_concurrent_requests),
            ("max_connections", server.max_connections),
            ("max_body_bytes", server.max_body_bytes),
        ] {
            if value == 0 {
                bail!("server.{name}: must be at least 1");
            }
        }
        self.timezone()?;
        if self.database.path.as_os_str().is_empty() {
            bail!("database.path: must not be empty");
        }
        let base = &self.wecom.api_base;
        let url = reqwest::Url::parse(base)
            .map_err(|e| anyhow::anyhow!("wecom.api_base: not a valid URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(&url) => {}
            "http" => bail!(
                "wecom.api_base: http:// is allowed only for a loopback address such as \
                 127.0.0.1 (a local simulator); anything else must be https://, since the \
                 corp secret and access tokens travel in it"
            ),
            _ => bail!("wecom.api_base: must be an http or https URL"),
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
            if is_placeholder(app.secret.expose()) {
                bail!(
                    "{}: is a placeholder; set the app's Secret from the WeCom console \
                     (应用管理 → the app → Secret), e.g. through {ENV_PREFIX}WECOM__APPS__{i}__SECRET",
                    field("secret")
                );
            }
        }
        let group = self.wecom.customer_tag_group.trim();
        if group.is_empty() || group.chars().count() > 30 {
            bail!("wecom.customer_tag_group: must be 1 to 30 characters");
        }
        if let Some(name) = &self.wecom.contacts_app {
            if !self.wecom.apps.iter().any(|app| &app.name == name) {
                bail!("wecom.contacts_app: no app named {name:?} in wecom.apps");
            }
        }
        if !(1..=24 * 30).contains(&self.admin.session_hours) {
            bail!("admin.session_hours: must be between 1 and 720");
        }
        if !(1..=1_000_000_000_000).contains(&self.admin.max_point_adjustment) {
            bail!("admin.max_point_adjustment: must be between 1 and 1000000000000");
        }
        if !(1..=100_000).contains(&self.admin.login_failures_per_ip) {
            bail!("admin.login_failures_per_ip: must be between 1 and 100000");
        }
        if let Some(secret) = &self.ingest.secret {
            if secret.expose().len() < 16 {
                bail!("ingest.secret: must be at least 16 characters");
            }
            if is_placeholder(secret.expose()) {
                bail!(
                    "ingest.secret: is a placeholder; generate one with \
                     `openssl rand -hex 32` and give the same value to the puller"
                );
            }
        }
        if let Some(token) = &self.metrics.token {
            if token.expose().len() < 16 {
                bail!("metrics.token: must be at least 16 characters");
            }
        }
        let inbox_days = self.retention.inbox_days;
        if inbox_days != 0 && inbox_days < MIN_INBOX_RETENTION_DAYS {
            bail!(
                "retention.inbox_days: must be 0 (keep forever) or at least {MIN_INBOX_RETENTION_DAYS}: \
                 a pruned event's dedupe key no longer stops a redelivery, and the message \
                 archive can be posted again for 5 days"
            );
        }
        self.validate_archive()?;
        for (i, bot) in self.wecom.bots.iter().enumerate() {
            let field = |f: &str| format!("wecom.bots[{i}].{f}");
            match bot.mode {
                BotMode::Callback => {
                    check_callback_endpoint(&field, &bot.name, &bot.token, &bot.encoding_aes_key)?
                }
                BotMode::Websocket => check_long_connection(&field, bot)?,
            }
            if !names.insert(format!("bot:{}", bot.name)) {
                bail!("{}: duplicate bot name {:?}", field("name"), bot.name);
            }
        }
        Ok(())
    }

    /// `[archive]`: checked only when enabled (qunyun runs without the library).
    fn validate_archive(&self) -> anyhow::Result<()> {
        let archive = &self.archive;
        if !archive.enabled {
            return Ok(());
        }
        if self.wecom.corp_id.trim().is_empty() {
            bail!("wecom.corp_id: required when archive.enabled");
        }
        if archive.library.as_os_str().is_empty() {
            bail!(
                "archive.library: required when archive.enabled (path of libWeWorkFinanceSdk_C.so)"
            );
        }
        if archive.secret.expose().is_empty() || is_placeholder(archive.secret.expose()) {
            bail!(
                "archive.secret: required when archive.enabled; set the archive's Secret \
                 (管理工具 → 会话内容存档) through {ENV_PREFIX}ARCHIVE__SECRET"
            );
        }
        if archive.private_keys.is_empty() {
            bail!("archive.private_keys: at least one key (version and path or pem) is required");
        }
        let mut versions = HashSet::new();
        for (i, key) in archive.private_keys.iter().enumerate() {
            let field = format!("archive.private_keys[{i}]");
            if !versions.insert(key.version) {
                bail!("{field}.version: duplicate version {}", key.version);
            }
            match (&key.path, &key.pem) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => bail!("{field}: give exactly one of path (a PEM file) or pem"),
            }
        }
        if !(1..=1000).contains(&archive.page_size) {
            bail!("archive.page_size: must be between 1 and 1000");
        }
        if archive.poll_interval_secs == 0 {
            bail!("archive.poll_interval_secs: must be at least 1");
        }
        if !(1..ARCHIVE_RETENTION_HOURS).contains(&archive.max_lag_hours) {
            bail!(
                "archive.max_lag_hours: must be between 1 and {} (WeCom keeps 5 days)",
                ARCHIVE_RETENTION_HOURS - 1
            );
        }
        Ok(())
    }

    /// Refuses a rule set that names an app this config does not have
    /// (`community.app`, the app that answers 1:1 messages and sends digests,
    /// notices, nudges, alerts and app-group posts): otherwise each of those
    /// fails later with "no app named". The message names both sides.
    pub fn check_rule_names(&self, rules: &RuleSetDoc) -> anyhow::Result<()> {
        let app = &rules.community.app;
        if self
            .wecom
            .apps
            .iter()
            .any(|configured| &configured.name == app)
        {
            return Ok(());
        }
        let configured: Vec<&str> = self.wecom.apps.iter().map(|a| a.name.as_str()).collect();
        if configured.is_empty() {
            bail!("rules community.app = {app:?} but config has no apps (wecom.apps)");
        }
        bail!(
            "rules community.app = {app:?} but config has apps: {} \
             (rename the app in wecom.apps or set community.app in the rule set)",
            configured.join(", ")
        )
    }

    /// The names of the configured apps (`wecom.apps`), in order.
    pub fn app_names(&self) -> Vec<String> {
        self.wecom.apps.iter().map(|app| app.name.clone()).collect()
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.listen.parse().map_err(|_| {
            anyhow::anyhow!("server.listen: expected host:port such as 127.0.0.1:8080")
        })
    }

    /// The console's own address, when `admin.listen` is set.
    pub fn admin_listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        self.admin
            .listen
            .as_deref()
            .map(|listen| {
                listen.parse().map_err(|_| {
                    anyhow::anyhow!("admin.listen: expected host:port such as 127.0.0.1:8081")
                })
            })
            .transpose()
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
    if is_placeholder(token.expose()) || PUBLISHED_SAMPLE_TOKENS.contains(&token.expose()) {
        bail!(
            "{}: is a placeholder or WeCom's published sample Token, which anyone can \
             sign callbacks with; use the console's 随机获取 (random) Token or generate one \
             with `{TOKEN_RECIPE}`, and enter the same value in the WeCom console",
            field("token")
        );
    }
    check_token(token.expose()).map_err(|r| anyhow::anyhow!("{}: {r}", field("token")))?;
    if is_placeholder(encoding_aes_key.expose())
        || PUBLISHED_SAMPLE_AES_KEYS.contains(&encoding_aes_key.expose())
    {
        bail!(
            "{}: is a placeholder or WeCom's published sample EncodingAESKey, which anyone \
             can forge callbacks with; use the console's 随机获取 (random) key or generate \
             one with `{AES_KEY_RECIPE}`, and enter the same value in the WeCom console",
            field("encoding_aes_key")
        );
    }
    crypto::decode_aes_key(encoding_aes_key.expose()).map_err(|_| {
        anyhow::anyhow!(
            "{}: must be the 43-character EncodingAESKey from the WeCom console",
            field("encoding_aes_key")
        )
    })?;
    Ok(())
}

/// EncodingAESKeys printed in WeCom's documentation and Tencent's sample programs
/// (docs/wecom.md): public, so a service using one accepts anyone's callbacks.
const PUBLISHED_SAMPLE_AES_KEYS: &[&str] = &[
    "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
    "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
];

/// Tokens of the same samples.
const PUBLISHED_SAMPLE_TOKENS: &[&str] = &["QDG6eK", "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"];

/// How to make a 43-character EncodingAESKey (base64 alphabet minus `+`, `/`).
pub const AES_KEY_RECIPE: &str = "openssl rand -base64 32 | tr -d '=+/' | cut -c1-43";
/// How to make a 32-character Token (letters and digits only).
pub const TOKEN_RECIPE: &str = "openssl rand -base64 32 | tr -d '=+/' | cut -c1-32";

/// Values people leave in from an example file: `ChangeMeToken`,
/// `set-me-through-…`, `your-secret`.
fn is_placeholder(value: &str) -> bool {
    let folded: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    [
        "changeme",
        "setme",
        "yoursecret",
        "yourtoken",
        "placeholder",
    ]
    .iter()
    .any(|marker| folded.contains(marker))
}

/// `localhost` or a loopback IP: the only hosts plain `http://` may reach.
fn is_loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A long-connection bot: a name, its BotID and Secret, a ws:// or wss:// URL.
fn check_long_connection(field: &dyn Fn(&str) -> String, bot: &BotConfig) -> anyhow::Result<()> {
    check_name(&bot.name).map_err(|r| anyhow::anyhow!("{}: {r}", field("name")))?;
    if bot.bot_id.trim().is_empty() {
        bail!("{}: required when mode = \"websocket\"", field("bot_id"));
    }
    if bot.secret.expose().is_empty() {
        bail!(
            "{}: required when mode = \"websocket\" (set it from the environment)",
            field("secret")
        );
    }
    if is_placeholder(bot.secret.expose()) {
        bail!(
            "{}: still the example's placeholder; use the bot's long-connection Secret",
            field("secret")
        );
    }
    let url = reqwest::Url::parse(&bot.ws_url)
        .map_err(|e| anyhow::anyhow!("{}: not a valid URL ({e})", field("ws_url")))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        bail!("{}: must be a ws:// or wss:// URL", field("ws_url"));
    }
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

/// A config key set from the environment, to name the variable in errors.
struct EnvField {
    var: String,
    /// The key as errors print it: `wecom.apps[0].secret`.
    field: String,
}

/// Sets `a__b__0__c` (lower-cased) inside the document to `value`; returns the
/// key as errors print it (`a.b[0].c`).
fn apply_env_override(
    document: &mut toml::Table,
    path: &str,
    value: &str,
) -> anyhow::Result<String> {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(String::is_empty) {
        bail!("empty key segment");
    }
    let mut field = String::new();
    for key in &keys {
        match key.parse::<usize>() {
            Ok(index) if !field.is_empty() => field.push_str(&format!("[{index}]")),
            _ if field.is_empty() => field.push_str(key),
            _ => {
                field.push('.');
                field.push_str(key);
            }
        }
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
    Ok(field)
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
    "max_point_adjustment",
    "inbox_days",
    "audit_days",
    "login_failures_days",
    "poll_interval_secs",
    "max_lag_hours",
    "page_size",
    "version",
];

/// Fields whose environment value is `true` or `false`.
const BOOLEAN_FIELDS: &[&str] = &["secure_cookies", "trust_forwarded_for", "public", "enabled"];

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

    const KEY: &str = "Zr8Qf1sV0cLmN3pT6wXyB2dG5hJ9kA4eU7iO1qS3tV5";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The environment of a corp with one app, `ops` (agent 1000002), plus `extra`.
    fn one_app_env(secret: &str, token: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let app = [
            ("QUNYUN_WECOM__CORP_ID", "ww123"),
            ("QUNYUN_WECOM__APPS__0__NAME", "ops"),
            ("QUNYUN_WECOM__APPS__0__AGENT_ID", "1000002"),
            ("QUNYUN_WECOM__APPS__0__SECRET", secret),
            ("QUNYUN_WECOM__APPS__0__TOKEN", token),
            ("QUNYUN_WECOM__APPS__0__ENCODING_AES_KEY", KEY),
        ];
        env(&[&app[..], extra].concat())
    }

    #[test]
    fn defaults_are_valid_without_a_file() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.community.timezone, "Asia/Shanghai");
        assert_eq!(config.server.timestamp_window_secs, 600);
        assert_eq!(config.server.ready_max_inbox_age_secs, 300);
    }

    #[test]
    fn env_overrides_nest_and_index_arrays() {
        let config = Config::load(
            None,
            one_app_env("123456", "0123", &[("OTHER_VAR", "ignored")]),
        )
        .unwrap();
        assert_eq!(config.wecom.apps[0].agent_id, 1000002);
        assert_eq!(config.wecom.apps[0].secret.expose(), "123456");
        assert_eq!(config.wecom.apps[0].token.expose(), "0123");
    }

    #[test]
    fn a_websocket_bot_needs_its_bot_id_secret_and_a_ws_url_but_no_callback_keys() {
        let bot =
            |extra: &str| format!("[[wecom.bots]]\nname = \"ws\"\nmode = \"websocket\"\n{extra}");
        let load = |text: &str, vars: Vec<(String, String)>| {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), text).unwrap();
            Config::load(Some(file.path()), vars)
        };
        let config = load(
            &bot("bot_id = \"aib1\""),
            env(&[("QUNYUN_WECOM__BOTS__0__SECRET", "s3cret")]),
        )
        .unwrap();
        let loaded = &config.wecom.bots[0];
        assert_eq!(loaded.mode, BotMode::Websocket);
        assert_eq!(loaded.secret.expose(), "s3cret");
        assert_eq!(loaded.ws_url, crate::wecom::longconn::DEFAULT_WS_URL);
        for (extra, field) in [
            ("secret = \"s\"", "wecom.bots[0].bot_id"),
            ("bot_id = \"aib1\"", "wecom.bots[0].secret"),
            (
                "bot_id = \"aib1\"\nsecret = \"s\"\nws_url = \"https://x\"",
                "wecom.bots[0].ws_url",
            ),
        ] {
            let error = load(&bot(extra), Vec::new()).unwrap_err();
            assert!(format!("{error:#}").contains(field), "{field}: {error:#}");
        }
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
        assert_refused_naming(&cases);
    }

    /// Each `(config text, field)`: the text is refused with an error naming the field.
    fn assert_refused_naming(cases: &[(&str, &str)]) {
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
        let config = Config::load(None, one_app_env("TOPSECRETVALUE", "tokenvalue", &[])).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("TOPSECRETVALUE"));
        assert!(!debug.contains("tokenvalue"));
        assert!(!debug.contains(KEY));
    }

    #[test]
    fn documented_non_config_variables_are_not_config_keys() {
        let config = Config::load(
            None,
            env(&[
                ("QUNYUN_LOG_FORMAT", "json"),
                ("QUNYUN_ADMIN_PASSWORD", "hunter2hunter2"),
                ("QUNYUN_SERVER__LISTEN", "127.0.0.1:9999"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:9999");
    }

    #[test]
    fn a_variable_naming_no_key_is_refused_with_the_variable_and_key() {
        let cases = [
            ("QUNYUN_LOG_FROMAT", "log_fromat"),
            ("QUNYUN_SERVER__LISTNE", "server.listne"),
            ("QUNYUN_WECOM__APPS__0__SECRETT", "wecom.apps[0].secrett"),
        ];
        for (var, field) in cases {
            let err = format!("{:#}", Config::load(None, env(&[(var, "x")])).unwrap_err());
            assert!(
                err.contains(var) && err.contains(field) && err.contains("not a config key"),
                "{var} gave {err:?}"
            );
        }
    }

    #[test]
    fn api_base_is_accepted_with_or_without_the_final_slash() {
        let cases = [
            (
                "http://127.0.0.1:9000/cgi-bin/",
                "http://127.0.0.1:9000/cgi-bin/",
            ),
            (
                "http://127.0.0.1:9000/cgi-bin",
                "http://127.0.0.1:9000/cgi-bin/",
            ),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000/cgi-bin/"),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/cgi-bin/"),
            (
                "https://proxy.example/wecom/cgi-bin",
                "https://proxy.example/wecom/cgi-bin/",
            ),
        ];
        for (written, used) in cases {
            let config = Config::from_toml_str(&format!("[wecom]\napi_base = \"{written}\""))
                .unwrap_or_else(|e| panic!("{written}: {e:#}"));
            assert_eq!(config.wecom.api_base, used, "{written}");
        }
        let from_env = Config::load(
            None,
            env(&[("QUNYUN_WECOM__API_BASE", "https://10.0.0.1:9000/cgi-bin")]),
        )
        .unwrap();
        assert_eq!(from_env.wecom.api_base, "https://10.0.0.1:9000/cgi-bin/");
    }

    #[test]
    fn rule_names_must_name_a_configured_app() {
        let config = Config::load(None, one_app_env("s", "t", &[])).unwrap();
        let mut rules = RuleSetDoc::default();
        rules.community.app = "main".into();
        let err = config.check_rule_names(&rules).unwrap_err().to_string();
        assert!(
            err.contains(r#"rules community.app = "main" but config has apps: ops"#),
            "{err}"
        );
        rules.community.app = "ops".into();
        config.check_rule_names(&rules).unwrap();

        let no_apps = Config::load(None, Vec::new()).unwrap();
        let err = no_apps.check_rule_names(&rules).unwrap_err().to_string();
        assert!(err.contains("config has no apps"), "{err}");
    }

    #[test]
    fn the_archive_is_checked_only_when_enabled_and_errors_name_the_field() {
        // Off by default: no library, no keys needed.
        let config = Config::from_toml_str("[archive]\npage_size = 5000").unwrap();
        assert!(!config.archive.enabled);
        let base =
            "[wecom]\ncorp_id = \"ww1\"\n[archive]\nenabled = true\nlibrary = \"/opt/sdk.so\"\n";
        let key = "[[archive.private_keys]]\nversion = 1\npath = \"/etc/k1.pem\"\n";
        let cases = [
            (
                "[archive]\nenabled = true\nlibrary = \"x\"",
                "wecom.corp_id",
            ),
            (
                "[wecom]\ncorp_id = \"ww1\"\n[archive]\nenabled = true",
                "archive.library",
            ),
            (base, "archive.secret"),
            (&format!("{base}secret = \"s\""), "archive.private_keys"),
            (
                &format!("{base}secret = \"s\"\npage_size = 1001\n{key}"),
                "archive.page_size",
            ),
            (
                &format!("{base}secret = \"s\"\nmax_lag_hours = 200\n{key}"),
                "archive.max_lag_hours",
            ),
            (
                &format!("{base}secret = \"s\"\n{key}{key}"),
                "archive.private_keys[1].version",
            ),
            (
                &format!("{base}secret = \"s\"\n[[archive.private_keys]]\nversion = 2"),
                "archive.private_keys[0]",
            ),
        ];
        assert_refused_naming(&cases);
        // The secret and a key's PEM come from the environment, never shown.
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), base).unwrap();
        let config = Config::load(
            Some(file.path()),
            env(&[
                ("QUNYUN_ARCHIVE__SECRET", "ArchiveSecretValue"),
                ("QUNYUN_ARCHIVE__PAGE_SIZE", "200"),
                ("QUNYUN_ARCHIVE__PRIVATE_KEYS__0__VERSION", "3"),
                (
                    "QUNYUN_ARCHIVE__PRIVATE_KEYS__0__PEM",
                    "-----BEGIN PRIVATE KEY-----",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(config.archive.page_size, 200);
        assert_eq!(config.archive.private_keys[0].version, 3);
        let debug = format!("{config:?}");
        assert!(!debug.contains("ArchiveSecretValue") && !debug.contains("BEGIN"));
    }
}
