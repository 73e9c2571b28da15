//! The production [`OutboxWriter`]: outbound messages become rows of the durable
//! outbox, written on the event's own connection so they commit with its effects.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::pipeline::{outbox_parts, OutboxWriter};
use crate::rules::Outbound;
use crate::store::outbox::{self, NewOutboxMessage, Route};

#[derive(Debug, Clone)]
pub struct DurableOutbox {
    /// The configured app that sends app-group and member messages by default.
    default_app: String,
}

impl DurableOutbox {
    pub fn new(default_app: impl Into<String>) -> Self {
        Self {
            default_app: default_app.into(),
        }
    }
}

impl OutboxWriter for DurableOutbox {
    async fn enqueue(
        &self,
        conn: &mut SqliteConnection,
        message: &Outbound,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let parts = outbox_parts(message, &self.default_app);
        let route = Route::ALL
            .into_iter()
            .find(|route| route.as_str() == parts.route)
            .ok_or_else(|| anyhow::anyhow!("unknown outbox route {}", parts.route))?;
        let payload = parts.payload.to_string();
        // A duplicate key means this effect was queued before: nothing to do.
        outbox::enqueue(
            conn,
            &NewOutboxMessage {
                idempotency_key: &message.idempotency_key,
                route,
                target: &parts.target,
                app: parts.app.as_deref(),
                payload_json: &payload,
                created_at: now.timestamp(),
                not_before: message.not_before.map(|t| t.timestamp()),
                skip_reason: message.skipped.as_deref(),
            },
        )
        .await?;
        Ok(())
    }
}
