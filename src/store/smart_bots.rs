//! What the push decision needs to know about smart bots
//! (docs/wecom.md#smart-bot-long-connection): which bots run on a long
//! connection, and in which conversations a member has written to one.

use sqlx::{Row, SqliteConnection};

use crate::rules::route::SmartBotPush;

/// Records `bots` as the long-connection bots of this service, replacing
/// what an earlier start recorded (a bot moved back to callback mode can no
/// longer push).
pub async fn record_long_connection_bots(
    conn: &mut SqliteConnection,
    bots: &[String],
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query("delete from smart_bot_long_connections")
        .execute(&mut *conn)
        .await?;
    for bot in bots {
        sqlx::query("insert into smart_bot_long_connections (bot, recorded_at) values (?, ?)")
            .bind(bot)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Notes that a member wrote to `bot` in `conversation` at `at`.
pub async fn record_member_wrote(
    conn: &mut SqliteConnection,
    bot: &str,
    conversation: &str,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into smart_bot_conversations (bot, conversation, first_written_at, last_written_at)
         values (?1, ?2, ?3, ?3)
         on conflict (bot, conversation) do update set
            last_written_at = max(last_written_at, excluded.last_written_at)",
    )
    .bind(bot)
    .bind(conversation)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The SQL columns `on_long_connection` and `member_wrote` for the smart bot
/// of the chat aliased `c` (its `smart_bot` and `chat_id` columns); read them
/// with [`push_of_row`].
pub const PUSH_COLUMNS: &str = "exists (select 1 from smart_bot_long_connections l
                where l.bot = c.smart_bot) as on_long_connection,
         exists (select 1 from smart_bot_conversations w
                where w.bot = c.smart_bot and w.conversation = c.chat_id) as member_wrote";

/// The push state from a row carrying [`PUSH_COLUMNS`].
pub fn push_of_row(row: &sqlx::sqlite::SqliteRow) -> sqlx::Result<SmartBotPush> {
    Ok(push_state(
        row.try_get("on_long_connection")?,
        row.try_get("member_wrote")?,
    ))
}

pub fn push_state(on_long_connection: bool, member_wrote: bool) -> SmartBotPush {
    match (on_long_connection, member_wrote) {
        (false, _) => SmartBotPush::AnswersOnly,
        (true, false) => SmartBotPush::NobodyWroteYet,
        (true, true) => SmartBotPush::Ready,
    }
}

/// The push state of the smart bot in chat `chat_id` (for one chat's page).
pub async fn chat_push(conn: &mut SqliteConnection, chat_id: &str) -> sqlx::Result<SmartBotPush> {
    let row = sqlx::query(&format!(
        "select {PUSH_COLUMNS} from chats c where c.chat_id = ?"
    ))
    .bind(chat_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map_or(Ok(SmartBotPush::AnswersOnly), |row| push_of_row(&row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chat_can_be_pushed_to_once_its_long_connection_bot_heard_a_member() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("t.db")).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let chat = crate::store::chats::NewChat {
            chat_id: "wr1".into(),
            name: "群".into(),
            route: crate::rules::ChatRoute::internal_with_smart_bot("helper"),
            owner: None,
            admins: vec![],
            tags: vec![],
            member_version: None,
        };
        crate::store::chats::upsert_chat(&mut conn, &chat, chrono::Utc::now())
            .await
            .unwrap();
        assert_eq!(
            chat_push(&mut conn, "wr1").await.unwrap(),
            SmartBotPush::AnswersOnly
        );
        record_long_connection_bots(&mut conn, &["helper".into()], 1)
            .await
            .unwrap();
        assert_eq!(
            chat_push(&mut conn, "wr1").await.unwrap(),
            SmartBotPush::NobodyWroteYet
        );
        record_member_wrote(&mut conn, "helper", "wr1", 5)
            .await
            .unwrap();
        record_member_wrote(&mut conn, "helper", "wr1", 3)
            .await
            .unwrap();
        assert_eq!(
            chat_push(&mut conn, "wr1").await.unwrap(),
            SmartBotPush::Ready
        );
        // The next start runs the bot in callback mode.
        record_long_connection_bots(&mut conn, &[], 9)
            .await
            .unwrap();
        assert_eq!(
            chat_push(&mut conn, "wr1").await.unwrap(),
            SmartBotPush::AnswersOnly
        );
        assert_eq!(
            chat_push(&mut conn, "unknown").await.unwrap(),
            SmartBotPush::AnswersOnly
        );
    }
}
