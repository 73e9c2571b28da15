//! Customer-group reconciliation. Callbacks can be lost or reordered
//! (docs/wecom.md#change_external_chat), so the member list we keep is replaced
//! from `groupchat/get` whenever a callback's `LastMemVer` did not match ours
//! (the pipeline flags the chat), and every chat is re-pulled periodically
//! from `groupchat/list`.

use std::sync::Mutex;

use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::config::Secret;
use crate::jobs::Job;
use crate::rules::event::JoinScene;
use crate::rules::ChatRoute;
use crate::store::chats::{self, NewChat};
use crate::store::members::{self, SyncedMember};
use crate::wecom::api::{ApiClient, GroupChat};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    pub chats_synced: usize,
    pub members_added: usize,
    pub members_removed: usize,
    pub chats_failed: usize,
}

/// How often the loop re-pulls every chat WeCom lists (flagged chats: every pass).
const FULL_SYNC_EVERY: Duration = Duration::minutes(30);

pub struct GroupSync {
    pool: SqlitePool,
    api: ApiClient,
    /// Secret of the app allowed to call the customer-contact APIs.
    secret: Secret,
    clock: SharedClock,
    /// When the loop's last full sync succeeded.
    last_full: Mutex<Option<DateTime<Utc>>>,
    /// The rule set's `[[chat_tags]]` tag synced chats.
    rules: crate::active_rules::ActiveRules,
}

impl GroupSync {
    pub fn new(pool: SqlitePool, api: ApiClient, secret: Secret, clock: SharedClock) -> Self {
        Self {
            pool,
            api,
            secret,
            clock,
            last_full: Mutex::new(None),
            rules: crate::active_rules::ActiveRules::new(),
        }
    }

    /// Re-pulls the chats flagged for resync; with `full`, every customer group
    /// WeCom lists too. One failing chat is logged and counted, never fatal.
    pub async fn run_once(&self, full: bool) -> anyhow::Result<SyncOutcome> {
        let mut chat_ids = {
            let mut conn = self.pool.acquire().await?;
            chats::chats_needing_resync(&mut conn).await?
        };
        if full {
            for summary in self.api.groupchat_list_all(&self.secret, 0, &[]).await? {
                if !chat_ids.contains(&summary.chat_id) {
                    chat_ids.push(summary.chat_id);
                }
            }
        }
        let mut outcome = SyncOutcome::default();
        for chat_id in chat_ids {
            match self.sync_chat(&chat_id).await {
                Ok((added, removed)) => {
                    outcome.chats_synced += 1;
                    outcome.members_added += added;
                    outcome.members_removed += removed;
                }
                Err(error) => {
                    outcome.chats_failed += 1;
                    tracing::warn!(chat_id, error = format!("{error:#}"), "group sync failed");
                }
            }
        }
        Ok(outcome)
    }

    async fn sync_chat(&self, chat_id: &str) -> anyhow::Result<(usize, usize)> {
        let group = self.api.groupchat_get(&self.secret, chat_id).await?;
        // Keep the tags managers gave it; take the rest from WeCom. groupchat/get
        // answers for customer groups only, so that is what the chat is (no robot
        // and no smart bot can sit in one: docs/wecom.md#chat-kinds).
        let (existing, rules) = {
            let mut conn = self.pool.acquire().await?;
            let existing = chats::get_chat(&mut conn, chat_id).await?;
            (existing, self.rules.in_force(&mut conn).await?.rules)
        };
        let mut tags = existing.map(|chat| chat.tags).unwrap_or_default();
        let owner = Some(group.owner.as_str()).filter(|owner| !owner.is_empty());
        for tag in rules.chat_tags_for(&group.name, owner) {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let route = ChatRoute::CustomerGroup;
        let chat = NewChat {
            chat_id: group.chat_id.clone(),
            name: group.name.clone(),
            route,
            owner: (!group.owner.is_empty()).then(|| group.owner.clone()),
            admins: group.admin_list.iter().map(|a| a.userid.clone()).collect(),
            tags,
            member_version: (!group.member_version.is_empty())
                .then(|| group.member_version.clone()),
        };
        let members = synced_members(&group);
        let changes = apply_group_snapshot(&self.pool, &chat, &members, self.clock.now()).await?;
        tracing::info!(
            chat_id,
            added = changes.0,
            removed = changes.1,
            "group synced"
        );
        Ok(changes)
    }
}

/// The loop: flagged chats every pass, plus every chat WeCom lists at the
/// first pass and every 30 minutes after a successful full sync.
impl Job for GroupSync {
    type Outcome = SyncOutcome;

    fn name(&self) -> &'static str {
        "group_sync"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<SyncOutcome> {
        let last_full = *self.last_full.lock().unwrap_or_else(|e| e.into_inner());
        let full = last_full.is_none_or(|at| now - at >= FULL_SYNC_EVERY);
        let outcome = GroupSync::run_once(self, full).await?;
        if full {
            *self.last_full.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
        Ok(outcome)
    }
}

/// Applies a full groupchat/get result for a chat (the sync job calls this at
/// start, periodically, and for chats flagged by a member-version gap): the
/// member list is replaced, the version stored and the resync flag cleared, in
/// one transaction. Nobody is welcomed for joins we only learn about here.
pub async fn apply_group_snapshot(
    pool: &SqlitePool,
    chat: &chats::NewChat,
    members_now: &[SyncedMember],
    now: DateTime<Utc>,
) -> anyhow::Result<(usize, usize)> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    chats::upsert_chat(&mut tx, chat, now).await?;
    let changes = members::replace_chat_members(&mut tx, &chat.chat_id, members_now, now).await?;
    if let Some(version) = &chat.member_version {
        chats::set_member_version(&mut tx, &chat.chat_id, version).await?;
    }
    chats::clear_needs_resync(&mut tx, &chat.chat_id).await?;
    tx.commit().await?;
    Ok(changes)
}

fn synced_members(group: &GroupChat) -> Vec<SyncedMember> {
    group
        .member_list
        .iter()
        .map(|member| SyncedMember {
            user_id: member.userid.clone(),
            name: [&member.group_nickname, &member.name]
                .into_iter()
                .find(|n| !n.is_empty())
                .cloned(),
            joined_at: Utc
                .timestamp_opt(member.join_time, 0)
                .single()
                .unwrap_or_default(),
            join_scene: JoinScene::from_groupchat_code(Some(member.join_scene)),
            inviter: member.invitor.as_ref().map(|i| i.userid.clone()),
        })
        .collect()
}
