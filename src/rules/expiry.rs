//! Points that expire (`[points.expiry]`). Pure: the ledger's entries and the
//! community day arrive as values.
//!
//! Every positive entry is a lot earned on its community day. Debits (spends,
//! deductions, earlier expiries) consume the oldest lots first (first in,
//! first out). A lot earned in month M expires at the end of month
//! M + `after_months` (community timezone): on the first community day after
//! that month, whatever is left of it is written off by one ledger entry per
//! member and expiry month (reference `expiry:<user>:<YYYY-MM>`), so a pass
//! that runs twice or after a restart writes nothing twice.
//!
//! What expires is what is *left* of old lots after every debit so far, so it
//! never exceeds the balance: a spend made before the job ran consumes the
//! oldest points first, even ones that had just reached their expiry day.

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use super::ruleset::FieldError;

/// The ledger reason of an expiry entry.
pub const REASON: &str = "expiry";

/// `[points.expiry]` as a manager writes it. Off while `after_months = 0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpiryDoc {
    /// Points earned in a month expire at the end of the month this many
    /// months later (0 = points never expire).
    pub after_months: u32,
    /// Tell a member in their next 签到 / 积分 reply when points expire within
    /// this many days (0 = no notice). Once per member and expiry month.
    pub notice_days_before: u32,
}

impl Default for ExpiryDoc {
    fn default() -> Self {
        Self {
            after_months: 0,
            notice_days_before: 7,
        }
    }
}

impl ExpiryDoc {
    pub fn enabled(&self) -> bool {
        self.after_months > 0
    }
}

/// Problems in `[points.expiry]`, each naming its field.
pub fn validate(doc: &ExpiryDoc) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if doc.after_months > 120 {
        errors.push(FieldError {
            path: "points.expiry.after_months".into(),
            reason: "must be at most 120 (ten years)".into(),
        });
    }
    if doc.notice_days_before > 60 {
        errors.push(FieldError {
            path: "points.expiry.notice_days_before".into(),
            reason: "must be at most 60".into(),
        });
    }
    errors
}

/// One ledger entry as expiry sees it, in ledger order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub delta: i64,
    /// The community day it was written on.
    pub day: NaiveDate,
}

/// What is left of points earned on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lot {
    pub earned: NaiveDate,
    pub remaining: i64,
}

/// The lots still unspent after every debit, oldest first. Each debit
/// consumes the oldest lots first; a debit larger than what is left (not
/// possible in the ledger, which refuses it) consumes everything.
pub fn unspent_lots(entries: &[Entry]) -> Vec<Lot> {
    let mut lots: std::collections::VecDeque<Lot> = std::collections::VecDeque::new();
    for entry in entries {
        if entry.delta > 0 {
            lots.push_back(Lot {
                earned: entry.day,
                remaining: entry.delta,
            });
            continue;
        }
        let mut owed = -entry.delta;
        while owed > 0 {
            let Some(oldest) = lots.front_mut() else {
                break;
            };
            let taken = owed.min(oldest.remaining);
            oldest.remaining -= taken;
            owed -= taken;
            if oldest.remaining == 0 {
                lots.pop_front();
            }
        }
    }
    lots.into()
}

/// The month at whose end points earned on `earned` expire, as its first day.
pub fn expiry_month(earned: NaiveDate, after_months: u32) -> NaiveDate {
    let first = earned.with_day(1).unwrap_or(earned);
    first
        .checked_add_months(Months::new(after_months))
        .unwrap_or(NaiveDate::MAX)
}

/// The last community day points of this expiry month are still valid.
pub fn last_valid_day(month: NaiveDate) -> NaiveDate {
    month
        .checked_add_months(Months::new(1))
        .and_then(|next| next.pred_opt())
        .unwrap_or(NaiveDate::MAX)
}

/// Points of one member expiring at the end of one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring {
    /// The expiry month, `YYYY-MM` (part of the ledger reference).
    pub period: String,
    pub points: i64,
    /// The last day they can be used.
    pub last_day: NaiveDate,
}

/// Unspent points grouped by expiry month, oldest first.
fn by_period(entries: &[Entry], after_months: u32) -> Vec<Expiring> {
    let mut out: Vec<Expiring> = Vec::new();
    for lot in unspent_lots(entries) {
        let month = expiry_month(lot.earned, after_months);
        let period = month.format("%Y-%m").to_string();
        match out.last_mut() {
            Some(last) if last.period == period => last.points += lot.remaining,
            _ => out.push(Expiring {
                period,
                points: lot.remaining,
                last_day: last_valid_day(month),
            }),
        }
    }
    out
}

/// What has expired by community day `today` and is still in the balance:
/// one entry per expiry month. Empty when expiry is off.
pub fn due(doc: &ExpiryDoc, entries: &[Entry], today: NaiveDate) -> Vec<Expiring> {
    if !doc.enabled() {
        return Vec::new();
    }
    by_period(entries, doc.after_months)
        .into_iter()
        .filter(|e| e.last_day < today && e.points > 0)
        .collect()
}

/// The next points to expire, when their last day is within the notice
/// window (today included): what a member is told once.
pub fn upcoming(doc: &ExpiryDoc, entries: &[Entry], today: NaiveDate) -> Option<Expiring> {
    if !doc.enabled() || doc.notice_days_before == 0 {
        return None;
    }
    let window_end = today + chrono::Duration::days(i64::from(doc.notice_days_before) - 1);
    by_period(entries, doc.after_months)
        .into_iter()
        .find(|e| e.last_day >= today && e.points > 0)
        .filter(|e| e.last_day <= window_end)
}

/// The ledger reference of a member's expiry for one month: unique, so the
/// same expiry is never written twice.
pub fn reference(user_id: &str, period: &str) -> String {
    format!("expiry:{user_id}:{period}")
}

/// The line added to a reply when points expire soon.
pub fn notice_text(expiring: &Expiring) -> String {
    format!(
        "提醒：你有 {} 积分将于 {} 到期，请尽快使用。",
        expiring.points,
        expiring.last_day.format("%Y-%m-%d")
    )
}

/// Adds the sender's pending expiry notice (if any) to the reply among
/// `actions`, and remembers it so it is given once. A reply that cannot be
/// posted (skipped) carries no notice: the member would never see it.
pub fn with_notice(
    cx: &super::MessageContext,
    mut actions: Vec<super::Action>,
) -> Vec<super::Action> {
    let Some(notice) = cx
        .snapshot
        .people
        .get(&cx.message.sender)
        .and_then(|person| person.expiry_notice.as_ref())
    else {
        return actions;
    };
    let key = format!("reply:{}", cx.event.id);
    let carried = actions.iter_mut().any(|action| match action {
        super::Action::Send(out) if out.idempotency_key == key && out.skipped.is_none() => {
            match &mut out.content {
                super::Content::Text { text, .. } | super::Content::Markdown { text } => {
                    text.push('\n');
                    text.push_str(&notice_text(notice));
                    true
                }
                _ => false,
            }
        }
        _ => false,
    });
    if carried {
        actions.push(super::Action::NoteExpiryNotice {
            user_id: cx.message.sender.clone(),
            period: notice.period.clone(),
            at: cx.now,
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn doc(after_months: u32) -> ExpiryDoc {
        ExpiryDoc {
            after_months,
            notice_days_before: 7,
        }
    }

    fn e(delta: i64, day: NaiveDate) -> Entry {
        Entry { delta, day }
    }

    #[test]
    fn spends_consume_the_oldest_points_first() {
        // Jan 100, Feb 50; a spend of 120 leaves 0 of Jan and 30 of Feb.
        let entries = [
            e(100, day(2025, 1, 10)),
            e(50, day(2025, 2, 3)),
            e(-120, day(2025, 3, 1)),
        ];
        assert_eq!(
            unspent_lots(&entries),
            vec![Lot {
                earned: day(2025, 2, 3),
                remaining: 30
            }]
        );
        // Points of Feb 2025 last until the end of Feb 2026 with 12 months.
        assert!(due(&doc(12), &entries, day(2026, 2, 28)).is_empty());
        assert_eq!(
            due(&doc(12), &entries, day(2026, 3, 1)),
            vec![Expiring {
                period: "2026-02".into(),
                points: 30,
                last_day: day(2026, 2, 28)
            }]
        );
    }

    #[test]
    fn an_expiry_entry_consumes_what_it_expired() {
        let mut entries = vec![e(40, day(2025, 1, 31)), e(10, day(2025, 3, 1))];
        let expired = due(&doc(1), &entries, day(2025, 3, 1));
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].period.as_str(), expired[0].points),
            ("2025-02", 40)
        );
        entries.push(e(-40, day(2025, 3, 1)));
        assert!(due(&doc(1), &entries, day(2025, 3, 1)).is_empty());
        assert_eq!(unspent_lots(&entries)[0].remaining, 10);
    }

    #[test]
    fn the_notice_window_counts_today() {
        let entries = [e(20, day(2025, 1, 5))];
        // Expire at the end of Feb 2025 with after_months = 1.
        assert_eq!(upcoming(&doc(1), &entries, day(2025, 2, 21)), None);
        let soon = upcoming(&doc(1), &entries, day(2025, 2, 22)).unwrap();
        assert_eq!((soon.points, soon.last_day), (20, day(2025, 2, 28)));
        assert!(notice_text(&soon).contains("20 积分将于 2025-02-28 到期"));
        assert_eq!(upcoming(&doc(1), &entries, day(2025, 3, 1)), None);
        assert_eq!(upcoming(&doc(0), &entries, day(2025, 2, 25)), None);
    }

    #[test]
    fn off_means_nothing_expires() {
        let entries = [e(20, day(2020, 1, 5))];
        assert!(due(&doc(0), &entries, day(2026, 1, 1)).is_empty());
    }

    #[test]
    fn out_of_range_settings_name_their_field() {
        let errors = validate(&ExpiryDoc {
            after_months: 500,
            notice_days_before: 90,
        });
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "points.expiry.after_months",
                "points.expiry.notice_days_before"
            ]
        );
    }

    /// A ledger the store would accept: earnings, and debits only when covered.
    fn ledger() -> impl Strategy<Value = Vec<Entry>> {
        prop::collection::vec((0i64..400, -60i64..80), 0..40).prop_map(|steps| {
            let start = day(2024, 1, 1);
            let mut balance = 0;
            let mut entries = Vec::new();
            let mut offset = 0;
            for (gap, delta) in steps {
                offset += gap / 8;
                if delta == 0 || balance + delta < 0 {
                    continue;
                }
                balance += delta;
                entries.push(e(delta, start + chrono::Duration::days(offset)));
            }
            entries
        })
    }

    proptest! {
        /// Against a point-by-point model: every point is a unit with its
        /// earning day, spends take the oldest units; expiry removes exactly
        /// the units whose month has ended, never more than the balance, and
        /// once written it leaves nothing more to expire.
        #[test]
        fn expiry_removes_exactly_the_old_unspent_points(
            entries in ledger(),
            after_months in 1u32..14,
            today_offset in 0i64..1200,
        ) {
            let today = day(2024, 1, 1) + chrono::Duration::days(today_offset);
            let mut units: std::collections::VecDeque<NaiveDate> = Default::default();
            for entry in &entries {
                if entry.delta > 0 {
                    units.extend(std::iter::repeat_n(entry.day, entry.delta as usize));
                } else {
                    for _ in 0..-entry.delta { units.pop_front(); }
                }
            }
            let expected = units
                .iter()
                .filter(|earned| last_valid_day(expiry_month(**earned, after_months)) < today)
                .count() as i64;
            let balance: i64 = entries.iter().map(|e| e.delta).sum();
            let expired = due(&doc(after_months), &entries, today);
            let total: i64 = expired.iter().map(|e| e.points).sum();
            prop_assert_eq!(total, expected);
            prop_assert!(total <= balance);
            prop_assert!(expired.iter().all(|e| e.points > 0));

            let mut after = entries.clone();
            after.extend(expired.iter().map(|x| e(-x.points, today)));
            let left: i64 = after.iter().map(|e| e.delta).sum();
            prop_assert!(left >= 0);
            prop_assert_eq!(left, balance - expected);
            prop_assert!(due(&doc(after_months), &after, today).is_empty());
        }
    }
}
