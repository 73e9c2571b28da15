//! Publishes each honour board (`[[honour.boards]]`) once per period and chat,
//! when the finished period becomes due (`rules::honour::due_period`). The
//! outbox row and the publication row commit together, and both are unique
//! per board, period and chat, so a second pass or a restart posts nothing
//! twice. A chat whose route cannot post gets a skipped row with the reason.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::active_rules::ActiveRules;
use crate::jobs::Job;
use crate::rules::honour::{due_period, render, targets};
use crate::rules::{Content, MessageKind, Outbound};
use crate::store::{honour, outbox, schedules};

pub struct HonourBoards {
    pool: SqlitePool,
    /// The app that posts to app groups.
    app: String,
    rules: ActiveRules,
}

impl HonourBoards {
    pub fn new(pool: SqlitePool, app: impl Into<String>) -> Self {
        Self {
            pool,
            app: app.into(),
            rules: ActiveRules::new(),
        }
    }

    /// Shares the service's active-rules cache (`new` starts a private one).
    pub fn with_rules(mut self, rules: ActiveRules) -> Self {
        self.rules = rules;
        self
    }

    /// Queues every board post due at `now`; returns how many were queued.
    pub async fn run_at(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rules = self.rules.get(&mut tx).await?;
        let mut queued = 0;
        for board in &rules.doc.honour.boards {
            let Some(period) = due_period(&rules, board, now) else {
                continue;
            };
            let chats = schedules::push_chats(&mut tx).await?;
            let tagged: Vec<(String, Vec<String>)> = chats
                .iter()
                .map(|chat| (chat.chat_id.clone(), chat.tags.clone()))
                .collect();
            let done = honour::published_chats(&mut tx, &board.name, &period.key).await?;
            let due: Vec<&str> = targets(board, &tagged)
                .into_iter()
                .filter(|chat_id| !done.iter().any(|d| d == chat_id))
                .collect();
            if due.is_empty() {
                continue;
            }
            let text = render(&rules, board, &honour::board_data(&mut tx, &period).await?);
            for chat in chats.iter().filter(|c| due.contains(&c.chat_id.as_str())) {
                let key = format!("honour:{}:{}:{}", board.name, period.key, chat.chat_id);
                let message = Outbound::to_chat(
                    key,
                    chat.address(),
                    MessageKind::Push,
                    Content::text(text.clone()),
                );
                outbox::enqueue(&mut tx, &message, &self.app, now).await?;
                if honour::record_publication(&mut tx, &board.name, &period.key, &chat.chat_id, now)
                    .await?
                {
                    queued += 1;
                }
            }
        }
        tx.commit().await?;
        if queued > 0 {
            tracing::info!(queued, "honour boards queued");
        }
        Ok(queued)
    }
}

impl Job for HonourBoards {
    type Outcome = usize;

    fn name(&self) -> &'static str {
        "honour_boards"
    }

    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        self.run_at(now).await
    }
}
