//! The message-archive puller (会话内容存档, docs/wecom.md#message-archive):
//! pages of records from the stored cursor through the vendor SDK, each
//! record's random key decrypted with our RSA key of its version, the message
//! decrypted by the SDK, and every group text turned into the same inbox event
//! `POST /ingest/messages` stores (deduplicated by msgid).
//!
//! A page's records, their inbox events and the new cursor are committed in
//! one transaction: a crash before the commit re-pulls the page, after it
//! nothing is pulled twice. A record that does not decrypt is kept with its
//! ciphertext and the reason; a key version we lack is alerted once per
//! version. The SDK's retryable codes (10001–10003) back off; an archive not
//! read to its end for `max_lag_hours` is alerted once per episode (WeCom
//! keeps 5 days). A `msgaudit_notify` callback starts a pull early.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};
use tokio_util::sync::CancellationToken;

use crate::active_rules::ActiveRules;
use crate::clock::SharedClock;
use crate::config::{ArchiveConfig, Config};
use crate::ingest::{ingest_messages, IngestMessage};
use crate::jobs::Job;
use crate::rules::route::route_to_members;
use crate::rules::{Content, Outbound};
use crate::store::{archive as store, outbox};
use crate::wecom::archive::ffi::{FinanceSdk, SdkError};
use crate::wecom::archive::keys::{KeyError, KeyRing};
use crate::wecom::archive::records::{self, Body, EncryptedRecord};

/// Pages one pass takes at most before letting the loop breathe.
const PAGES_PER_PASS: usize = 50;
/// Back-off after failed pulls: 1 s doubling to 5 minutes.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often an idle wait looks for a `msgaudit_notify` callback.
const NOTIFY_CHECK: Duration = Duration::from_secs(1);
const NO_ADMINS: &str = "[alerts] admins 未配置（no admins configured）";

#[derive(Debug, Clone)]
pub struct ArchiveSettings {
    pub page_size: u32,
    pub poll_interval: Duration,
    /// Seconds without reaching the archive's end before the lag alert.
    pub max_lag_secs: i64,
}

impl ArchiveSettings {
    pub fn from_config(config: &ArchiveConfig) -> ArchiveSettings {
        ArchiveSettings {
            page_size: config.page_size,
            poll_interval: Duration::from_secs(config.poll_interval_secs),
            max_lag_secs: i64::try_from(config.max_lag_hours * 3600).unwrap_or(i64::MAX),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullOutcome {
    pub pages: usize,
    /// Records the SDK returned.
    pub pulled: usize,
    /// Records new to us (the rest were stored before).
    pub stored: usize,
    pub decrypted: usize,
    pub failed: usize,
    /// New inbox events (group texts).
    pub events: usize,
    pub caught_up: bool,
    /// Why the pass stopped early (an SDK error), to be retried after a back-off.
    pub error: Option<String>,
}

pub struct ArchivePuller {
    pool: SqlitePool,
    clock: SharedClock,
    rules: ActiveRules,
    sdk: Arc<Mutex<FinanceSdk>>,
    keys: Arc<KeyRing>,
    settings: ArchiveSettings,
    /// Failed passes in a row (the back-off's exponent).
    failures: AtomicU32,
    /// Pull at once: the first pass, or the last one stopped with records left.
    pull_now: AtomicBool,
    /// The newest inbox row already looked at for `msgaudit_notify` (-1: not yet).
    notify_seen: AtomicI64,
    stop: CancellationToken,
}

impl ArchivePuller {
    /// Opens the vendor library, `Init`s one handle and reads the private
    /// keys: a wrong path or key stops `serve` at start, not hours later.
    pub fn open(
        config: &Config,
        pool: SqlitePool,
        clock: SharedClock,
        rules: ActiveRules,
    ) -> anyhow::Result<ArchivePuller> {
        let archive = &config.archive;
        let keys = KeyRing::from_config(&archive.private_keys)?;
        let sdk = FinanceSdk::open(
            &archive.library,
            &config.wecom.corp_id,
            archive.secret.expose(),
        )
        .map_err(|e| anyhow::anyhow!("archive.library: {e}"))?;
        Ok(ArchivePuller {
            pool,
            clock,
            rules,
            sdk: Arc::new(Mutex::new(sdk)),
            keys: Arc::new(keys),
            settings: ArchiveSettings::from_config(archive),
            failures: AtomicU32::new(0),
            pull_now: AtomicBool::new(true),
            notify_seen: AtomicI64::new(-1),
            stop: CancellationToken::new(),
        })
    }

    /// Pulls pages until the archive's end, an SDK error, or
    /// [`PAGES_PER_PASS`]; then checks the lag.
    pub async fn pull(&self) -> anyhow::Result<PullOutcome> {
        let mut outcome = PullOutcome::default();
        while outcome.pages < PAGES_PER_PASS && !self.stop.is_cancelled() {
            match self.pull_page(&mut outcome).await {
                Ok(true) => {
                    outcome.caught_up = true;
                    break;
                }
                Ok(false) => {}
                Err(PageError::Sdk(error)) => {
                    self.sdk_failed(&error).await?;
                    outcome.error = Some(error.to_string());
                    break;
                }
                Err(PageError::Other(error)) => {
                    self.failures.fetch_add(1, Ordering::SeqCst);
                    self.check_lag().await?;
                    return Err(error);
                }
            }
        }
        if outcome.error.is_none() {
            self.failures.store(0, Ordering::SeqCst);
        }
        self.pull_now.store(
            !outcome.caught_up && outcome.error.is_none(),
            Ordering::SeqCst,
        );
        self.check_lag().await?;
        Ok(outcome)
    }

    /// One page: fetched and decrypted off the runtime, stored in one
    /// transaction. `true` when it reached the archive's end.
    async fn pull_page(&self, outcome: &mut PullOutcome) -> Result<bool, PageError> {
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await.map_err(anyhow::Error::from)?;
        let cursor = store::cursor(&mut conn, now.timestamp())
            .await
            .map_err(anyhow::Error::from)?;
        drop(conn);
        let (sdk, keys, limit) = (self.sdk.clone(), self.keys.clone(), self.settings.page_size);
        let seq = u64::try_from(cursor.seq).unwrap_or(0);
        let page = tokio::task::spawn_blocking(move || fetch_page(&sdk, &keys, seq, limit))
            .await
            .map_err(|e| anyhow::anyhow!("archive page task: {e}"))??;
        let caught_up = page.len() < limit as usize;
        let stored = self.store_page(&page, cursor.seq, caught_up, now).await?;
        let failed = page.iter().filter(|r| r.row.failure.is_some()).count();
        crate::metrics::archive_page(page.len(), page.len() - failed, failed);
        outcome.pages += 1;
        outcome.pulled += page.len();
        outcome.decrypted += page.len() - failed;
        outcome.failed += failed;
        outcome.stored += stored.records;
        outcome.events += stored.events;
        Ok(caught_up)
    }

    /// The page's records, their inbox events, recalls, key alerts and the
    /// new cursor: all of it or none.
    async fn store_page(
        &self,
        page: &[Pulled],
        seq: i64,
        caught_up: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Stored> {
        let at = now.timestamp();
        let mut tx = self.pool.begin().await?;
        let mut stored = Stored::default();
        let mut texts: Vec<IngestMessage> = Vec::new();
        let mut missing_versions = BTreeSet::new();
        for pulled in page {
            if store::insert_record(&mut tx, &pulled.row, at).await? {
                stored.records += 1;
            }
            if let Some(version) = pulled.missing_version {
                missing_versions.insert(version);
            }
            if let Some(pre_msgid) = &pulled.recalls {
                store::mark_recalled(&mut tx, pre_msgid, &pulled.row.msgid).await?;
            }
            texts.extend(pulled.text.clone());
        }
        for version in missing_versions {
            self.alert_missing_key(&mut tx, version, now).await?;
        }
        let texts = not_heard_by_a_smart_bot(&mut tx, texts).await?;
        stored.events = ingest_messages(&mut tx, &texts, now).await?;
        let last = page.iter().map(|p| p.row.seq).max().unwrap_or(seq);
        store::advance(&mut tx, last, caught_up, at).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// A failed `GetChatData`: back off; a code that is not retryable is an
    /// operator problem (secret, IP allow-list, certificate): alerted once per code.
    async fn sdk_failed(&self, error: &SdkError) -> anyhow::Result<()> {
        let failures = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
        if error.is_retryable() {
            tracing::warn!(error = %error, failures, "archive pull failed; retrying after a back-off");
            return Ok(());
        }
        tracing::error!(error = %error, failures, "archive pull failed; retrying after a back-off");
        let code = error.code().unwrap_or(-1);
        let text = format!(
            "会话存档拉取失败：{error}。请检查会话存档 Secret、可信 IP 与私钥配置。(message archive pull failed)"
        );
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        if store::raise_alert(
            &mut tx,
            "sdk_error",
            &code.to_string(),
            &text,
            now.timestamp(),
        )
        .await?
        {
            self.alert_admins(&mut tx, format!("alert:archive:sdk:{code}"), text, now)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn alert_missing_key(
        &self,
        conn: &mut SqliteConnection,
        version: u32,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let text = format!(
            "会话存档：有消息用公钥版本 {version} 加密，但未配置该版本的私钥，这些消息暂无法解密（密文已保存）。\
             请在 [archive] private_keys 中加入版本 {version} 的私钥。\
             (message archive: no private key for publickey_ver {version})"
        );
        if store::raise_alert(
            conn,
            "key_missing",
            &version.to_string(),
            &text,
            now.timestamp(),
        )
        .await?
        {
            tracing::error!(
                publickey_ver = version,
                "archive records use a key version with no private key configured"
            );
            self.alert_admins(conn, format!("alert:archive:key:{version}"), text, now)
                .await?;
        }
        Ok(())
    }

    /// Lag: the time since a pull last reached the archive's end; past
    /// `max_lag_secs`, one alert per episode (a new episode starts when a
    /// pull catches up again).
    async fn check_lag(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let cursor = store::cursor(&mut tx, now.timestamp()).await?;
        let lag = now.timestamp() - cursor.caught_up_at;
        crate::metrics::archive_lag(lag);
        if lag > self.settings.max_lag_secs && cursor.lag_alerted_for != Some(cursor.caught_up_at) {
            let hours = lag / 3600;
            let text = format!(
                "会话存档已有 {hours} 小时未拉取到最新（企业微信只保留 5 天，超期的消息将无法再取回）。\
                 请检查 qunyun 日志与会话存档配置。(message archive is {hours} h behind)"
            );
            tracing::error!(lag_secs = lag, "message archive falls behind");
            store::raise_alert(
                &mut tx,
                "lag",
                &cursor.caught_up_at.to_string(),
                &text,
                now.timestamp(),
            )
            .await?;
            self.alert_admins(
                &mut tx,
                format!("alert:archive:lag:{}", cursor.caught_up_at),
                text,
                now,
            )
            .await?;
            store::lag_alerted(&mut tx, cursor.caught_up_at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One app message to the rule set's admins (skipped, with the reason,
    /// when there are none); its key makes a repeat impossible.
    async fn alert_admins(
        &self,
        conn: &mut SqliteConnection,
        key: String,
        text: String,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let rules = self.rules.get(conn).await?;
        let app = rules.doc.community.app.clone();
        let message = Outbound::decided(
            key,
            route_to_members(&app, &rules.doc.alerts.admins, NO_ADMINS),
            Content::text(format!("【{}】{text}", rules.doc.community.name)),
        );
        outbox::enqueue(conn, &message, &app, now).await?;
        Ok(())
    }

    /// Waits before a pass: the back-off after failures, else the poll
    /// interval (none when records were left), cut short by a
    /// `msgaudit_notify` callback. `false` on shutdown.
    async fn wait(&self) -> anyhow::Result<bool> {
        let failures = self.failures.load(Ordering::SeqCst);
        let wait = if failures > 0 {
            backoff(failures)
        } else if self.pull_now.swap(false, Ordering::SeqCst) {
            Duration::ZERO
        } else {
            self.settings.poll_interval
        };
        if self.notify_seen.load(Ordering::SeqCst) < 0 {
            let mut conn = self.pool.acquire().await?;
            let last = store::last_inbox_id(&mut conn).await?;
            self.notify_seen.store(last, Ordering::SeqCst);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(true);
            }
            tokio::select! {
                () = self.stop.cancelled() => return Ok(false),
                () = tokio::time::sleep((deadline - now).min(NOTIFY_CHECK)) => {}
            }
            if failures == 0 && self.notified().await? {
                tracing::info!("msgaudit_notify received: pulling the archive now");
                return Ok(true);
            }
        }
    }

    /// Whether a `msgaudit_notify` callback arrived since the last look.
    async fn notified(&self) -> anyhow::Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let seen = self.notify_seen.load(Ordering::SeqCst);
        match store::notify_after(&mut conn, seen).await? {
            Some(id) => {
                self.notify_seen.store(id, Ordering::SeqCst);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl Job for ArchivePuller {
    type Outcome = PullOutcome;

    fn name(&self) -> &'static str {
        "archive"
    }

    async fn run_once(&self, _now: DateTime<Utc>) -> anyhow::Result<PullOutcome> {
        if !self.wait().await? {
            return Ok(PullOutcome::default());
        }
        let outcome = self.pull().await?;
        if outcome.pulled > 0 || outcome.error.is_some() {
            tracing::info!(
                pulled = outcome.pulled,
                stored = outcome.stored,
                failed = outcome.failed,
                events = outcome.events,
                caught_up = outcome.caught_up,
                error = outcome.error.as_deref(),
                "archive pass"
            );
        }
        Ok(outcome)
    }

    fn stopping(&self) {
        self.stop.cancel();
    }
}

/// base × 2^(failures−1), capped.
fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    BACKOFF_MIN.saturating_mul(factor).min(BACKOFF_MAX)
}

enum PageError {
    Sdk(SdkError),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for PageError {
    fn from(error: anyhow::Error) -> Self {
        PageError::Other(error)
    }
}

impl From<SdkError> for PageError {
    fn from(error: SdkError) -> Self {
        PageError::Sdk(error)
    }
}

#[derive(Debug, Default)]
struct Stored {
    records: usize,
    events: usize,
}

/// One record of a page, ready to store.
#[derive(Debug, Clone)]
struct Pulled {
    row: store::NewRecord,
    /// The group text it carries, as the ingest endpoint's message.
    text: Option<IngestMessage>,
    /// The msgid this recall takes back.
    recalls: Option<String>,
    /// The key version we lack, when that is why it failed.
    missing_version: Option<u32>,
}

/// `GetChatData` after `seq`, each record decrypted (blocking: FFI and RSA).
fn fetch_page(
    sdk: &Mutex<FinanceSdk>,
    keys: &KeyRing,
    seq: u64,
    limit: u32,
) -> Result<Vec<Pulled>, PageError> {
    let mut sdk = sdk.lock().unwrap_or_else(|e| e.into_inner());
    let json = sdk.chat_data(seq, limit)?;
    let page = records::parse_page(&json).map_err(|e| PageError::Other(e.into()))?;
    Ok(page
        .into_iter()
        .map(|record| decrypt_record(&mut sdk, keys, record))
        .collect())
}

fn decrypt_record(sdk: &mut FinanceSdk, keys: &KeyRing, record: EncryptedRecord) -> Pulled {
    let mut row = store::NewRecord {
        msgid: record.msgid.clone(),
        seq: i64::try_from(record.seq).unwrap_or(i64::MAX),
        publickey_ver: i64::from(record.publickey_ver),
        ..store::NewRecord::default()
    };
    let failed = |mut row: store::NewRecord, reason: String, missing_version| {
        row.failure = Some(reason);
        row.encrypt_random_key = Some(record.encrypt_random_key.clone());
        row.encrypt_chat_msg = Some(record.encrypt_chat_msg.clone());
        Pulled {
            row,
            text: None,
            recalls: None,
            missing_version,
        }
    };
    let random_key = match keys.random_key(record.publickey_ver, &record.encrypt_random_key) {
        Ok(key) => key,
        Err(error) => {
            let missing = match error {
                KeyError::UnknownVersion(version) => Some(version),
                _ => None,
            };
            return failed(row, error.to_string(), missing);
        }
    };
    let plaintext = match sdk.decrypt(&random_key, &record.encrypt_chat_msg) {
        Ok(plaintext) => plaintext,
        Err(error) => return failed(row, error.to_string(), None),
    };
    let message = match records::parse_message(&plaintext) {
        Ok(message) => message,
        Err(error) => return failed(row, format!("decrypted message: {error}"), None),
    };
    row.action = Some(message.action.clone());
    row.msgtype = message.msgtype.clone();
    row.room_id = message.roomid.clone();
    row.sender = message.from.clone();
    row.msg_time = message.msgtime;
    row.body_json =
        Some(String::from_utf8_lossy(&records::clean_plaintext(&plaintext)).into_owned());
    let recalls = match &message.body {
        Body::Revoke { pre_msgid } if !pre_msgid.is_empty() => Some(pre_msgid.clone()),
        _ => None,
    };
    Pulled {
        row,
        text: message.as_ingest(),
        recalls,
        missing_version: None,
    }
}

/// The archive also holds the messages of internal groups where a smart bot
/// sits, and the bot already delivers the ones addressed to it: acting on the
/// archive's copy too would answer them twice. Those chats' records stay in
/// `archive_messages`; only the other chats' texts become events.
async fn not_heard_by_a_smart_bot(
    conn: &mut sqlx::SqliteConnection,
    texts: Vec<IngestMessage>,
) -> anyhow::Result<Vec<IngestMessage>> {
    let mut kept = Vec::with_capacity(texts.len());
    for text in texts {
        let has_bot = match &text.chat_id {
            Some(chat_id) => crate::store::chats::get_chat(conn, chat_id)
                .await?
                .is_some_and(|chat| chat.route.smart_bot().is_some()),
            None => false,
        };
        if !has_bot {
            kept.push(text);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
