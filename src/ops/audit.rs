//! The audit log, and the CSV exports (each export is itself audited).

use chrono::{DateTime, Utc};

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::store::admin::{self as q, AuditRow};

/// The newest entries first; `target` narrows to one target (e.g. a member).
pub async fn recent(ops: &Ops, target: Option<&str>, limit: i64) -> OpsResult<Vec<AuditRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::recent_audit(&mut conn, target, limit).await?)
}

/// One CSV export: the file name it answers to, its header, and the query
/// producing its rows, every column as text (or null for an empty cell) in
/// header order, so one row writer serves every export.
struct Export {
    name: &'static str,
    header: &'static [&'static str],
    sql: &'static str,
}

const EXPORTS: &[Export] = &[
    Export {
        name: "members.csv",
        header: &["user_id", "name", "chats", "balance", "last_checkin"],
        sql: "select p.user_id, p.name,
                  cast((select count(*) from chat_members m
                        where m.user_id = p.user_id and m.left_at is null) as text),
                  cast((select coalesce(sum(delta), 0) from points_ledger l
                        where l.user_id = p.user_id) as text),
                  (select max(day) from checkins k where k.user_id = p.user_id)
              from people p order by p.user_id",
    },
    Export {
        name: "ledger.csv",
        header: &[
            "id",
            "user_id",
            "delta",
            "reason",
            "reference",
            "chat_id",
            "day",
            "created_at",
        ],
        sql: "select cast(id as text), user_id, cast(delta as text), reason, reference, chat_id,
                     day, cast(created_at as text)
              from points_ledger order by id",
    },
    Export {
        name: "moderation.csv",
        header: &[
            "id",
            "at",
            "chat_id",
            "user_id",
            "rule",
            "category",
            "severity",
            "matched",
            "excerpt",
            "action_taken",
            "dry_run",
            "reviewed_by",
            "review_note",
        ],
        sql: "select cast(id as text), cast(at as text), chat_id, user_id, rule, category,
                     severity, matched, excerpt, action_taken,
                     case when dry_run then 'true' else 'false' end, reviewed_by, review_note
              from moderation_log order by id desc",
    },
    Export {
        name: "rfm.csv",
        header: &[
            "user_id",
            "recency_days",
            "frequency",
            "monetary_fen",
            "r",
            "f",
            "m",
            "segment",
        ],
        sql: "select user_id, cast(recency_days as text), cast(frequency as text),
                     cast(monetary as text), cast(r as text), cast(f as text), cast(m as text),
                     segment
              from member_rfm order by user_id",
    },
    Export {
        name: "audit.csv",
        header: &["id", "at", "actor", "action", "target", "detail"],
        sql: "select cast(id as text), cast(at as text), actor, action, target, detail
              from admin_audit order by id desc",
    },
];

/// CSV text gathered before it is handed to the response body: an export
/// holds about this much (times the channel depth) in memory, however many
/// rows it has.
pub const CSV_CHUNK_BYTES: usize = 64 * 1024;

/// Chunks in flight between the database reader and a slow client.
const CSV_CHUNKS_IN_FLIGHT: usize = 4;

/// An export's CSV text, chunk by chunk. An `Err` means the export broke off
/// (the response is then cut short, never silently truncated).
pub type CsvChunks = futures_util::stream::BoxStream<'static, std::io::Result<String>>;

/// One export (`members.csv`, `ledger.csv`, `moderation.csv`, `audit.csv`),
/// streamed from the database: rows are read and written as CSV while the
/// client downloads, never all at once. The export is audited before its
/// first row is read, so an aborted download is still on record.
pub async fn export_csv(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    name: &str,
) -> OpsResult<CsvChunks> {
    actor.require(Role::Viewer)?;
    let export = EXPORTS
        .iter()
        .find(|export| export.name == name)
        .ok_or_else(|| OpsError::not_found(format!("export {name}")))?;
    let mut tx = ops.begin().await?;
    audit(&mut tx, actor, now, "export", name, "").await?;
    tx.commit().await?;

    let (sender, receiver) = tokio::sync::mpsc::channel(CSV_CHUNKS_IN_FLIGHT);
    let pool = ops.pool.clone();
    tokio::spawn(async move {
        if let Err(error) = write_rows(&pool, export, &sender).await {
            tracing::warn!(export = export.name, %error, "CSV export broke off");
            let _ = sender
                .send(Err(std::io::Error::other("the export broke off")))
                .await;
        }
    });
    Ok(Box::pin(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|chunk| (chunk, receiver)) },
    )))
}

/// Reads `export`'s rows with one statement (one consistent snapshot, no
/// write lock held) and sends them as CSV chunks; stops early, without an
/// error, when the client has gone.
async fn write_rows(
    pool: &sqlx::SqlitePool,
    export: &Export,
    out: &tokio::sync::mpsc::Sender<std::io::Result<String>>,
) -> anyhow::Result<()> {
    use futures_util::TryStreamExt;
    use sqlx::Row;

    let mut conn = pool.acquire().await?;
    let mut chunk = String::with_capacity(CSV_CHUNK_BYTES + 4096);
    csv_row(&mut chunk, export.header);
    let mut rows = sqlx::query(export.sql).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        let cells = (0..export.header.len())
            .map(|i| row.try_get::<Option<String>, _>(i))
            .collect::<Result<Vec<_>, _>>()?;
        let cells: Vec<&str> = cells.iter().map(|c| c.as_deref().unwrap_or("")).collect();
        csv_row(&mut chunk, &cells);
        if chunk.len() >= CSV_CHUNK_BYTES && out.send(Ok(std::mem::take(&mut chunk))).await.is_err()
        {
            return Ok(());
        }
    }
    if !chunk.is_empty() {
        let _ = out.send(Ok(chunk)).await;
    }
    Ok(())
}

/// One CSV line (RFC 4180 quoting). A cell a spreadsheet would run as a
/// formula (=, +, -, @, or a leading tab or carriage return, which some
/// spreadsheets skip before looking for one) gets a leading apostrophe unless
/// it is a number.
pub fn csv_row(out: &mut String, cells: &[&str]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let is_number = cell.parse::<i64>().is_ok();
        let cell = if !is_number && cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{cell}")
        } else {
            (*cell).to_owned()
        };
        if cell.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let mut out = String::new();
        csv_row(
            &mut out,
            &["a,b", "say \"hi\"", "=1+1", "-5", "plain", "\t=1", "\r@x"],
        );
        assert_eq!(
            out,
            "\"a,b\",\"say \"\"hi\"\"\",'=1+1,-5,plain,'\t=1,\"'\r@x\"\r\n"
        );
    }
}
