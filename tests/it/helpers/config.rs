//! The one place test configuration is written: a valid qunyun config for a
//! test corp, plus the knobs a test may turn on the harness around it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use qunyun::config::{Config, Secret};
use qunyun::jobs::outbox::SenderSettings;
use qunyun::pipeline::PipelineSettings;

pub const CORP_ID: &str = "wwTESTCORP0000000001";
pub const APP: &str = "ops";
pub const AGENT_ID: i64 = 1_000_002;
pub const APP_SECRET: &str = "app-secret";
pub const BOT: &str = "helper";
pub const APP_TOKEN: &str = "QunyunAppToken";
pub const BOT_TOKEN: &str = "QunyunBotToken";
// Test-only keys (43 characters; the last one has surplus low bits set, as real keys do).
pub const APP_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
pub const BOT_KEY: &str = "aesKeyForTheSmartBotInTestsOnly0123456789AB";
/// The separate customer-contact app of [`TestConfig::with_contacts_app`].
pub const CONTACTS_APP: &str = "contacts";
pub const CONTACTS_SECRET: &str = "contacts-secret";

type Adjust = Box<dyn FnOnce(&mut Config)>;
type AdjustSender = Box<dyn FnOnce(&mut SenderSettings)>;
type AdjustPipeline = Box<dyn FnOnce(&mut PipelineSettings)>;

/// `TestConfig::new().with_…()`: the config file a test's qunyun reads, the
/// simulated corp that matches it, the clock's start and the sender's pace.
pub struct TestConfig {
    pub(super) start: DateTime<Utc>,
    pub(super) token_ttl_secs: Option<i64>,
    pub(super) auto_confirm_mass: bool,
    pub(super) api_timeout: Option<Duration>,
    pub(super) system_clock: bool,
    /// WeCom's corp id and first app secret, when they differ from what the
    /// config file says (an operator's mistake).
    pub(super) sim_corp: Option<(String, String)>,
    /// A rule set (TOML) in force before a [`Service`](super::Service)'s
    /// workers start, so none of them acts under the built-in rules first.
    pub(super) rules: Option<String>,
    file: ConfigFile,
    sender: Vec<AdjustSender>,
    pipeline: Vec<AdjustPipeline>,
    adjust: Vec<Adjust>,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TestConfig {
    /// One app ([`APP`], also the customer-contact app), one smart bot
    /// ([`BOT`]), the console's defaults; the clock starts 2026-11-22 02:00 UTC.
    pub fn new() -> Self {
        Self {
            start: Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap(),
            token_ttl_secs: None,
            auto_confirm_mass: false,
            api_timeout: None,
            system_clock: false,
            sim_corp: None,
            rules: None,
            file: ConfigFile::default(),
            sender: Vec::new(),
            pipeline: Vec::new(),
            adjust: Vec::new(),
        }
    }

    /// Where the manual clock (shared by qunyun and the simulator) starts.
    pub fn starting_at(mut self, start: DateTime<Utc>) -> Self {
        self.start = start;
        self
    }

    /// Run a [`Service`](super::Service) on the system clock (its workers'
    /// own pacing decides when things happen) instead of the manual clock.
    pub fn on_system_clock(mut self) -> Self {
        self.system_clock = true;
        self
    }

    /// Any change to the parsed config (e.g. `c.admin.login_failures_per_ip = 2`).
    pub fn with(mut self, adjust: impl FnOnce(&mut Config) + 'static) -> Self {
        self.adjust.push(Box::new(adjust));
        self
    }

    /// A second app, [`CONTACTS_APP`], named as `wecom.contacts_app`: its
    /// secret calls the customer-contact APIs and the simulator refuses it
    /// for app messages, as WeCom does for the contacts secret.
    pub fn with_contacts_app(mut self) -> Self {
        self.file.contacts_app = true;
        self
    }

    /// The config file as an operator wrote it (app name, corp id, secret…).
    pub fn with_file(mut self, file: ConfigFile) -> Self {
        self.file = file;
        self
    }

    /// The simulated corp's own corp id and app secret, whatever the config
    /// says: a config that disagrees with WeCom, as `qunyun doctor` finds it.
    pub fn with_sim_corp(mut self, corp_id: &str, secret: &str) -> Self {
        self.sim_corp = Some((corp_id.to_owned(), secret.to_owned()));
        self
    }

    /// `[ingest] secret`, which mounts the archive ingest endpoint.
    pub fn with_ingest_secret(self, secret: &'static str) -> Self {
        self.with(move |c| {
            c.ingest.secret = Some(Secret::new(secret));
        })
    }

    /// `expires_in` of the simulator's tokens (WeCom: 7200 s).
    pub fn with_token_ttl(mut self, secs: i64) -> Self {
        self.token_ttl_secs = Some(secs);
        self
    }

    /// A smart bot `name` (WeCom's `bot_id`) on the long connection; a
    /// [`Service`](super::Service) points it at the simulator's `/ws`.
    pub fn with_websocket_bot(self, name: &str, bot_id: &str) -> Self {
        let (name, bot_id) = (name.to_owned(), bot_id.to_owned());
        self.with(move |config| {
            config.wecom.bots.push(qunyun::config::BotConfig {
                name,
                mode: qunyun::config::BotMode::Websocket,
                token: Secret::default(),
                encoding_aes_key: Secret::default(),
                bot_id,
                secret: Secret::new("long-connection-secret"),
                // Replaced by the simulator's address once it listens.
                ws_url: "ws://127.0.0.1:1/ws".into(),
            })
        })
    }

    /// Put `rules` (TOML) in force before the service starts.
    pub fn with_rule_set(mut self, rules: &str) -> Self {
        self.rules = Some(rules.to_owned());
        self
    }

    /// The simulated owners confirm customer-group mass messages at once.
    pub fn with_auto_confirm_mass(mut self) -> Self {
        self.auto_confirm_mass = true;
        self
    }

    /// Per-call timeout of the WeCom client (a `Hang` fault costs this much).
    pub fn with_api_timeout(mut self, timeout: Duration) -> Self {
        self.api_timeout = Some(timeout);
        self
    }

    /// A sender that gives up soon and retries fast (4 attempts, backoff
    /// 2 s to 60 s, a two-minute lease, 50 rows a pass) and a WeCom client
    /// that gives up on a call after 500 ms, for tests of failure handling.
    pub fn with_brisk_sender(self) -> Self {
        self.with_api_timeout(Duration::from_millis(500))
            .with_sender(|s| {
                s.max_attempts = 4;
                s.backoff_base = Duration::from_secs(2);
                s.backoff_cap = Duration::from_secs(60);
                s.lease = Duration::from_secs(120);
                s.batch_size = 50;
            })
    }

    /// Sender pacing beyond what the config file sets (attempts, backoff,
    /// lease, batch size): applied to every sender the harness builds.
    pub fn with_sender(mut self, adjust: impl FnOnce(&mut SenderSettings) + 'static) -> Self {
        self.sender.push(Box::new(adjust));
        self
    }

    /// Pipeline settings beyond the service's defaults (attempts before an
    /// event is parked, batch size).
    pub fn with_pipeline(mut self, adjust: impl FnOnce(&mut PipelineSettings) + 'static) -> Self {
        self.pipeline.push(Box::new(adjust));
        self
    }

    /// The qunyun config for a database at `db_path`; WeCom's API base is a
    /// closed port until the harness points it at its simulator.
    pub fn build(&mut self, db_path: &Path) -> Config {
        let mut config =
            Config::from_toml_str(&self.file.toml(db_path)).expect("test config is valid");
        for adjust in self.adjust.drain(..) {
            adjust(&mut config);
        }
        config.validate().expect("adjusted test config is valid");
        config
    }

    pub(super) fn adjust_sender(&mut self, settings: &mut SenderSettings) {
        for adjust in self.sender.drain(..) {
            adjust(settings);
        }
    }

    pub(super) fn adjust_pipeline(&mut self, settings: &mut PipelineSettings) {
        for adjust in self.pipeline.drain(..) {
            adjust(settings);
        }
    }
}

/// The config file itself, for tests that hand a file to the real binary:
/// the one template every test config comes from.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub app: String,
    pub corp_id: String,
    pub secret: String,
    pub app_token: String,
    /// Nothing listens on port 1: a WeCom call made by mistake fails at once.
    pub api_base: String,
    pub listen: String,
    /// A second app, [`CONTACTS_APP`], named as `wecom.contacts_app`.
    pub contacts_app: bool,
}

impl Default for ConfigFile {
    fn default() -> Self {
        Self {
            app: APP.into(),
            corp_id: CORP_ID.into(),
            secret: APP_SECRET.into(),
            app_token: APP_TOKEN.into(),
            api_base: "http://127.0.0.1:1/cgi-bin/".into(),
            listen: "127.0.0.1:0".into(),
            contacts_app: false,
        }
    }
}

impl ConfigFile {
    /// The TOML text, with the database at `db_path`.
    pub fn toml(&self, db_path: &Path) -> String {
        let ConfigFile {
            app,
            corp_id,
            secret,
            app_token,
            api_base,
            listen,
            contacts_app,
        } = self;
        let (contacts_key, contacts) = if *contacts_app {
            (
                format!("contacts_app = \"{CONTACTS_APP}\""),
                format!(
                    r#"
[[wecom.apps]]
name = "{CONTACTS_APP}"
agent_id = 1000003
secret = "{CONTACTS_SECRET}"
token = "ContactsAppToken"
encoding_aes_key = "{APP_KEY}"
"#
                ),
            )
        } else {
            (String::new(), String::new())
        };
        format!(
            r#"
[server]
listen = "{listen}"
[database]
path = "{db}"
[wecom]
corp_id = "{corp_id}"
api_base = "{api_base}"
{contacts_key}
[[wecom.apps]]
name = "{app}"
agent_id = {AGENT_ID}
secret = "{secret}"
token = "{app_token}"
encoding_aes_key = "{APP_KEY}"
{contacts}
[[wecom.bots]]
name = "{BOT}"
token = "{BOT_TOKEN}"
encoding_aes_key = "{BOT_KEY}"
"#,
            db = db_path.display()
        )
    }

    /// Writes `config.toml` (database beside it) into `dir`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, self.toml(&dir.join("qunyun.db"))).unwrap();
        path
    }
}
