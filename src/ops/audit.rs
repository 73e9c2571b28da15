//! The audit log, and the CSV exports (each export is itself audited).

use chrono::{DateTime, Utc};

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::store::admin::{self as q, AuditRow};
use crate::store::{self};

/// The newest entries first; `target` narrows to one target (e.g. a member).
pub async fn recent(ops: &Ops, target: Option<&str>, limit: i64) -> OpsResult<Vec<AuditRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(q::recent_audit(&mut conn, target, limit).await?)
}

/// One export (`members.csv`, `ledger.csv`, `moderation.csv`, `audit.csv`) as
/// CSV text, audited in the transaction that reads it.
pub async fn export_csv(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    name: &str,
) -> OpsResult<String> {
    actor.require(Role::Viewer)?;
    let mut tx = ops.begin().await?;
    let mut out = String::new();
    match name {
        "members.csv" => {
            csv_row(
                &mut out,
                &["user_id", "name", "chats", "balance", "last_checkin"],
            );
            for m in q::search_members(&mut tx, "", i64::MAX).await? {
                csv_row(
                    &mut out,
                    &[
                        &m.user_id,
                        m.name.as_deref().unwrap_or(""),
                        &m.chats.to_string(),
                        &m.balance.to_string(),
                        m.last_checkin.as_deref().unwrap_or(""),
                    ],
                );
            }
        }
        "ledger.csv" => {
            csv_row(
                &mut out,
                &[
                    "id",
                    "user_id",
                    "delta",
                    "reason",
                    "reference",
                    "chat_id",
                    "day",
                    "created_at",
                ],
            );
            for e in q::all_ledger(&mut tx).await? {
                csv_row(
                    &mut out,
                    &[
                        &e.id.to_string(),
                        &e.user_id,
                        &e.delta.to_string(),
                        &e.reason,
                        &e.reference,
                        &e.chat_id,
                        &e.day,
                        &e.created_at.to_string(),
                    ],
                );
            }
        }
        "moderation.csv" => {
            csv_row(
                &mut out,
                &[
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
            );
            for e in store::moderation::log(&mut tx, None, i64::MAX).await? {
                csv_row(
                    &mut out,
                    &[
                        &e.id.to_string(),
                        &e.at.to_string(),
                        e.chat_id.as_deref().unwrap_or(""),
                        &e.user_id,
                        &e.rule,
                        &e.category,
                        &e.severity,
                        &e.matched,
                        &e.excerpt,
                        &e.action_taken,
                        if e.dry_run { "true" } else { "false" },
                        e.reviewed_by.as_deref().unwrap_or(""),
                        e.review_note.as_deref().unwrap_or(""),
                    ],
                );
            }
        }
        "audit.csv" => {
            csv_row(
                &mut out,
                &["id", "at", "actor", "action", "target", "detail"],
            );
            for e in q::recent_audit(&mut tx, None, i64::MAX).await? {
                csv_row(
                    &mut out,
                    &[
                        &e.id.to_string(),
                        &e.at.to_string(),
                        &e.actor,
                        &e.action,
                        &e.target,
                        &e.detail,
                    ],
                );
            }
        }
        _ => return Err(OpsError::not_found(format!("export {name}"))),
    }
    audit(&mut tx, actor, now, "export", name, "").await?;
    tx.commit().await?;
    Ok(out)
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
