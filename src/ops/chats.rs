//! Chats as the console lists them.

use chrono::{DateTime, Utc};

use super::{Ops, OpsResult};
use crate::store::admin::{self as q, ChatRow};

/// Every registered chat with its member count and recent activity.
pub async fn list(ops: &Ops, now: DateTime<Utc>) -> OpsResult<Vec<ChatRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::list_chats(&mut conn, now.timestamp()).await?)
}
