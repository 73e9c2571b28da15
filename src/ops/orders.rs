//! Purchase data: orders from a shop system, signed batches on
//! `POST /ingest/orders` or a CSV file (`qunyun orders import`). An order
//! names its member by UserID, external userid or unionid; its order id makes
//! a repeat import add nothing; a refund is an order with a negative amount.

use anyhow::Context;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::store::orders::{self as store, NewOrder};

/// The CSV header `qunyun orders import` expects.
pub const CSV_HEADER: [&str; 4] = ["member", "order_id", "amount", "paid_at"];
/// Longest member reference or order id.
const MAX_ID: usize = 128;

/// One order as a shop system sends it (`/ingest/orders`): amount in fen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    /// UserID, external userid or unionid.
    pub member: String,
    pub order_id: String,
    /// Fen (1/100 yuan); negative for a refund.
    pub amount: i64,
    /// Unix seconds.
    pub paid_at: i64,
}

/// What an import or a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub accepted: usize,
    pub duplicates: usize,
    /// Orders refused (batches only; a CSV file is refused as a whole).
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub order_id: String,
    pub reason: String,
}

/// Why an order cannot be stored, as "`column`: reason" (no member found is
/// decided later, against the database).
fn check(order: &OrderInput) -> Result<(), (&'static str, String)> {
    let id = |value: &str| !value.trim().is_empty() && value.len() <= MAX_ID;
    if !id(&order.member) {
        return Err(("member", format!("must be 1 to {MAX_ID} characters")));
    }
    if !id(&order.order_id) {
        return Err(("order_id", format!("must be 1 to {MAX_ID} characters")));
    }
    if order.amount == 0 {
        return Err(("amount", "must not be zero".to_owned()));
    }
    if order.paid_at <= 0 {
        return Err(("paid_at", "must be a time after 1970".to_owned()));
    }
    Ok(())
}

const UNKNOWN_MEMBER: &str = "no member has this UserID, external userid or unionid";

/// Stores a signed batch (the caller checked the signature): every valid
/// order whose member is known; the others come back as rejected.
pub async fn ingest(ops: &Ops, now: DateTime<Utc>, orders: &[OrderInput]) -> OpsResult<Imported> {
    let mut tx = ops.begin().await?;
    let mut outcome = Imported::default();
    for (index, order) in orders.iter().enumerate() {
        let reject = |reason: String| Rejected {
            index,
            order_id: order.order_id.clone(),
            reason,
        };
        if let Err((column, reason)) = check(order) {
            outcome.rejected.push(reject(format!("{column}: {reason}")));
            continue;
        }
        let Some(user_id) = store::resolve_member(&mut tx, order.member.trim()).await? else {
            outcome
                .rejected
                .push(reject(format!("member: {UNKNOWN_MEMBER}")));
            continue;
        };
        let new = NewOrder {
            order_id: order.order_id.trim().to_owned(),
            user_id,
            amount: order.amount,
            paid_at: order.paid_at,
        };
        if store::insert(&mut tx, &new, "ingest", now).await? {
            outcome.accepted += 1;
        } else {
            outcome.duplicates += 1;
        }
    }
    let actor = Actor::new("ingest", Role::Operator);
    let detail = format!(
        "accepted {}, duplicates {}, rejected {}",
        outcome.accepted,
        outcome.duplicates,
        outcome.rejected.len()
    );
    audit(&mut tx, &actor, now, "orders.ingest", "orders", &detail).await?;
    tx.commit().await.context("committing an order batch")?;
    Ok(outcome)
}

/// One line of an order CSV, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOrder {
    pub line: usize,
    pub order: OrderInput,
}

/// Parses an order CSV (`member,order_id,amount,paid_at`; amount in yuan
/// with up to two decimals; paid_at as unix seconds, RFC 3339, or
/// `YYYY-MM-DD[ HH:MM[:SS]]` in the community's timezone). Every problem is
/// reported, each naming its line and column.
pub fn parse_csv(text: &str, tz: Tz) -> Result<Vec<CsvOrder>, Vec<String>> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty());
    let mut errors = Vec::new();
    match lines.next() {
        Some((_, header)) if cells(header) == CSV_HEADER => {}
        Some((line, _)) => errors.push(format!(
            "line {line}: the header must be {}",
            CSV_HEADER.join(",")
        )),
        None => errors.push("the file is empty".to_owned()),
    }
    let mut orders = Vec::new();
    for (line, text) in lines {
        let cells = cells(text);
        if cells.len() != CSV_HEADER.len() {
            errors.push(format!(
                "line {line}: {} columns, expected {}",
                cells.len(),
                CSV_HEADER.len()
            ));
            continue;
        }
        let amount = parse_yuan(&cells[2]);
        let paid_at = parse_time(&cells[3], tz);
        let (amount, paid_at) = match (amount, paid_at) {
            (Ok(amount), Ok(paid_at)) => (amount, paid_at),
            (amount, paid_at) => {
                if let Err(reason) = amount {
                    errors.push(format!("line {line}, column amount: {reason}"));
                }
                if let Err(reason) = paid_at {
                    errors.push(format!("line {line}, column paid_at: {reason}"));
                }
                continue;
            }
        };
        let order = OrderInput {
            member: cells[0].clone(),
            order_id: cells[1].clone(),
            amount,
            paid_at,
        };
        if let Err((column, reason)) = check(&order) {
            errors.push(format!("line {line}, column {column}: {reason}"));
            continue;
        }
        orders.push(CsvOrder { line, order });
    }
    let mut seen = std::collections::HashMap::new();
    for csv in &orders {
        if let Some(first) = seen.insert(csv.order.order_id.as_str(), csv.line) {
            errors.push(format!(
                "line {}, column order_id: {} repeats line {first}",
                csv.line, csv.order.order_id
            ));
        }
    }
    if errors.is_empty() {
        Ok(orders)
    } else {
        Err(errors)
    }
}

/// Cells of one line: comma-separated, trimmed, surrounding quotes removed
/// (ids, amounts and times never contain commas).
fn cells(line: &str) -> Vec<String> {
    line.split(',')
        .map(|cell| cell.trim().trim_matches('"').trim().to_owned())
        .collect()
}

/// "12", "12.5", "-3.99" yuan → fen.
fn parse_yuan(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an amount in yuan (e.g. 12.50, -3 for a refund)");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || fraction.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
    let fen = whole
        .checked_mul(100)
        .and_then(|fen| fen.checked_add(cents))
        .ok_or_else(bad)?;
    Ok(if negative { -fen } else { fen })
}

fn parse_time(text: &str, tz: Tz) -> Result<i64, String> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp());
    }
    let local = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|day| day.and_hms_opt(0, 0, 0))
        });
    local
        .and_then(|local| tz.from_local_datetime(&local).earliest())
        .map(|at| at.timestamp())
        .ok_or_else(|| {
            format!("{text:?} is not a time (unix seconds, RFC 3339 or YYYY-MM-DD HH:MM:SS)")
        })
}

/// Imports a parsed CSV file in one transaction (operator or owner): all of
/// it, or nothing when a member is unknown (each such line is named).
pub async fn import_csv(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    file: &str,
    orders: &[CsvOrder],
) -> OpsResult<Imported> {
    actor.require(Role::Operator)?;
    let mut tx = ops.begin().await?;
    let mut resolved = Vec::with_capacity(orders.len());
    let mut errors = Vec::new();
    for csv in orders {
        match store::resolve_member(&mut tx, csv.order.member.trim()).await? {
            Some(user_id) => resolved.push(NewOrder {
                order_id: csv.order.order_id.clone(),
                user_id,
                amount: csv.order.amount,
                paid_at: csv.order.paid_at,
            }),
            None => errors.push(format!(
                "line {}, column member: {} — {UNKNOWN_MEMBER}",
                csv.line, csv.order.member
            )),
        }
    }
    if !errors.is_empty() {
        return Err(OpsError::invalid("member", errors.join("\n")));
    }
    let mut outcome = Imported::default();
    for order in &resolved {
        if store::insert(&mut tx, order, "csv", now).await? {
            outcome.accepted += 1;
        } else {
            outcome.duplicates += 1;
        }
    }
    let detail = format!(
        "{file}: accepted {}, duplicates {}",
        outcome.accepted, outcome.duplicates
    );
    audit(&mut tx, actor, now, "orders.import", "orders", &detail).await?;
    tx.commit().await.context("committing an order import")?;
    Ok(outcome)
}

/// Records a member's unionid, so orders naming it find them (operator or owner).
pub async fn set_unionid(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    user_id: &str,
    unionid: &str,
) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    let unionid = unionid.trim();
    if unionid.is_empty() || unionid.len() > MAX_ID {
        return Err(OpsError::invalid(
            "unionid",
            format!("must be 1 to {MAX_ID} characters"),
        ));
    }
    let mut tx = ops.begin().await?;
    if !crate::store::admin::person_exists(&mut tx, user_id).await? {
        return Err(OpsError::not_found(format!("member {user_id}")));
    }
    store::set_unionid(&mut tx, unionid, user_id).await?;
    audit(&mut tx, actor, now, "member.unionid", user_id, unionid).await?;
    tx.commit().await.context("committing a unionid")?;
    Ok(())
}

/// Every buyer's stored RFM scores (the API's table).
pub async fn rfm_table(ops: &Ops) -> OpsResult<Vec<store::RfmRow>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(store::all_rfm(&mut conn).await?)
}

/// Weeks of join cohorts the dashboard shows.
pub const FUNNEL_WEEKS: i64 = 8;

/// Join → active → first order → repeat order per join week, for the
/// community and per chat, the last [`FUNNEL_WEEKS`] weeks (newest first).
pub async fn purchase_funnel(
    conn: &mut sqlx::SqliteConnection,
    rules: &crate::rules::RuleSet,
    now: DateTime<Utc>,
) -> OpsResult<Vec<crate::analytics::funnel::FunnelRow>> {
    use crate::analytics::funnel::{self, Join};
    use std::collections::HashMap;
    let day_of = |at: i64| rules.community_day(DateTime::from_timestamp(at, 0).unwrap_or(now));
    let since = rules.community_day(now) - chrono::Duration::weeks(FUNNEL_WEEKS);
    let joins: Vec<Join> = store::joins(conn)
        .await?
        .into_iter()
        .map(|(chat_id, user_id, joined_at)| Join {
            chat_id,
            user_id,
            day: day_of(joined_at),
        })
        .filter(|join| join.day > since)
        .collect();
    let last_active: HashMap<String, NaiveDate> = store::last_active_days(conn)
        .await?
        .into_iter()
        .filter_map(|(user, day)| Some((user, day.parse().ok()?)))
        .collect();
    let mut order_days: HashMap<String, Vec<NaiveDate>> = HashMap::new();
    for (user, amount, paid_at) in store::all_orders(conn).await? {
        if amount > 0 {
            order_days.entry(user).or_default().push(day_of(paid_at));
        }
    }
    Ok(funnel::compute(&joins, &last_active, &order_days))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_become_fen() {
        assert_eq!(parse_yuan("12"), Ok(1200));
        assert_eq!(parse_yuan("12.5"), Ok(1250));
        assert_eq!(parse_yuan("-3.99"), Ok(-399));
        for bad in ["", "1.234", "abc", "1,5", "--1", ".5"] {
            assert!(parse_yuan(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_bad_line_is_named_with_its_column() {
        let text = "member,order_id,amount,paid_at\n\
                    u1,o1,10,2026-07-01 10:00\n\
                    u2,o2,ten,2026-07-01\n\
                    u3,o3,5\n\
                    u4,o1,5,yesterday\n\
                    u5,o5,0,1751328000\n";
        let errors = parse_csv(text, chrono_tz::Asia::Shanghai).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].starts_with("line 3, column amount:"),
            "{errors:?}"
        );
        assert!(errors[1].starts_with("line 4: 3 columns"), "{errors:?}");
        assert!(
            errors[2].starts_with("line 5, column paid_at:"),
            "{errors:?}"
        );
        assert!(
            errors[3].starts_with("line 6, column amount:"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_good_file_parses_in_the_community_timezone() {
        let text = "member,order_id,amount,paid_at\r\n\"u1\",o1,-2.5,2026-07-01 08:00\r\n";
        let orders = parse_csv(text, chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(
            orders,
            [CsvOrder {
                line: 2,
                order: OrderInput {
                    member: "u1".into(),
                    order_id: "o1".into(),
                    amount: -250,
                    paid_at: 1_782_864_000,
                }
            }]
        );
        assert!(parse_csv("order_id,member\n", chrono_tz::UTC).is_err());
        let repeated = "member,order_id,amount,paid_at\nu1,o1,1,1\nu2,o1,1,1\n";
        assert_eq!(
            parse_csv(repeated, chrono_tz::UTC).unwrap_err(),
            ["line 3, column order_id: o1 repeats line 2"]
        );
    }
}
