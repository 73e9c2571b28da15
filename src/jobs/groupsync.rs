//! Customer-group reconciliation. Callbacks can be lost or reordered
//! (docs/wecom.md#change_external_chat), so the member list we keep is replaced
//! from `groupchat/get` whenever a callback's `LastMemVer` did not match ours
//! (the pipeline flags the chat), and every chat is re-pulled periodically
//! from `groupchat/list`.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::Secret;
use crate::pipeline::apply_group_snapshot;
use crate::rules::event::JoinScene;
use crate::rules::ChatRoute;
use crate::store::chats::{self, NewChat};
use crate::store::members::SyncedMember;
use crate::wecom::api::{ApiClient, GroupChat};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    pub chats_synced: usize,
    pub members_added: usize,
    pub members_removed: usize,
    pub chats_failed: usize,
}

pub struct GroupSync {
    pool: SqlitePool,
    api: ApiClient,
    /// Secret of the app allowed to call the customer-contact APIs.
    secret: Secret,
    clock: SharedClock,
}

impl GroupSync {
    pub fn new(pool: SqlitePool, api: ApiClient, secret: Secret, clock: SharedClock) -> Self {
        Self {
            pool,
            api,
            secret,
            clock,
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
        // Keep what managers configured (route with its robot, tags); take the rest from WeCom.
        let existing = {
            let mut conn = self.pool.acquire().await?;
            chats::get_chat(&mut conn, chat_id).await?
        };
        let (route, tags) = match existing {
            Some(chat) => (chat.route, chat.tags),
            None => (ChatRoute::CustomerGroup { robot_key: None }, Vec::new()),
        };
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

    /// Full sync at start and every `full_every`; flagged chats every `every`.
    pub async fn run_loop(&self, every: Duration, full_every: Duration, stop: CancellationToken) {
        let mut last_full: Option<tokio::time::Instant> = None;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let full = last_full.is_none_or(|at| at.elapsed() >= full_every);
            match self.run_once(full).await {
                Ok(_) if full => last_full = Some(tokio::time::Instant::now()),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "group sync round failed")
                }
            }
        }
    }
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
