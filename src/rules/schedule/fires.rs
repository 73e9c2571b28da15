//! Fire times: cron expressions evaluated on the schedule's wall clock, with the
//! daylight-saving policy described in the parent module.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::offset::LocalResult;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use cron::TimeUnitSpec;

use super::{suppressed_by_quiet_hours, ScheduleError, ValidSchedule};

/// No query returns more fire times than this, so a per-second expression over a
/// long window cannot exhaust memory.
pub const MAX_FIRES_PER_QUERY: usize = 10_000;

/// A parsed cron expression (seconds first) and the one fact the DST policy needs.
#[derive(Debug, Clone)]
pub struct CronSpec {
    schedule: cron::Schedule,
    /// The hour field is `*`: the job follows the real clock through DST changes.
    every_hour: bool,
}

impl CronSpec {
    /// Parses a 6- or 7-field expression (`sec min hour dom month dow [year]`)
    /// or a shorthand such as `@daily`.
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let expression = expression.trim();
        let field_count = expression.split_whitespace().count();
        if !expression.starts_with('@') && !(6..=7).contains(&field_count) {
            let hint = if field_count == 5 {
                format!(
                    "; seconds come first, e.g. \"0 {}\"",
                    expression.split_whitespace().collect::<Vec<_>>().join(" ")
                )
            } else {
                String::new()
            };
            return Err(ScheduleError::BadCron {
                reason: format!(
                    "expected 6 or 7 fields (seconds first), found {field_count}{hint}"
                ),
            });
        }
        let schedule =
            cron::Schedule::from_str(expression).map_err(|error| ScheduleError::BadCron {
                reason: error.to_string(),
            })?;
        let every_hour = schedule.hours().is_all();
        Ok(Self {
            schedule,
            every_hour,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        self.schedule.source()
    }
}

/// Up to `count` fire times strictly after `after`, within the schedule's start
/// and end. Ignores `enabled` (the console previews disabled schedules too).
pub fn next_fires(
    schedule: &ValidSchedule,
    after: DateTime<Utc>,
    count: usize,
) -> Vec<DateTime<Utc>> {
    schedule_fires(schedule, after, None)
        .take(count.min(MAX_FIRES_PER_QUERY))
        .collect()
}

/// Fire times `t` with `from < t <= to`, within the schedule's start and end, at
/// most [`MAX_FIRES_PER_QUERY`] (the earliest ones). Ignores `enabled`.
pub fn fires_between(
    schedule: &ValidSchedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let Some(until) = to.checked_add_signed(Duration::seconds(1)) else {
        return Vec::new();
    };
    schedule_fires(schedule, from, Some(until))
        .take(MAX_FIRES_PER_QUERY)
        .collect()
}

/// For `qunyun schedules next "<cron>" --tz Asia/Shanghai --count N`: the next
/// fire times of a bare expression, in that timezone.
pub fn next_fire_times_for_cli(
    expression: &str,
    timezone: &str,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<DateTime<Tz>>, ScheduleError> {
    let spec = CronSpec::parse(expression)?;
    let tz = parse_timezone(timezone)?;
    Ok(FireIter::new(&spec, tz, after, None)
        .take(count.min(MAX_FIRES_PER_QUERY))
        .map(|fire| fire.with_timezone(&tz))
        .collect())
}

pub(super) fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name.trim()).map_err(|_| ScheduleError::UnknownTimezone {
        name: name.to_owned(),
    })
}

/// What the scheduler should do about the fires due since it last looked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Send this one: the most recent due fire that is still within the grace
    /// period and not held back by quiet hours.
    pub fire: Option<DateTime<Utc>>,
    /// Due fires that will not be sent because they are too old (or superseded
    /// by a newer fire). Record them; never send them in a burst.
    pub missed: Vec<DateTime<Utc>>,
    /// Due fires that fell in quiet hours (without `allow_quiet_hours`).
    pub quiet: Vec<DateTime<Utc>>,
}

/// Decides what to do with the fires in `(last_checked, now]`: at most one is
/// sent, the most recent one if it is no older than `grace`; the rest are
/// reported as missed (or quiet) so that a restart after downtime never sends a
/// burst of stale pushes. A disabled schedule has nothing due.
///
/// `last_checked` is the instant up to which fires were already handled (the
/// previous call's `now`, or when the schedule was activated).
pub fn plan_catch_up(
    schedule: &ValidSchedule,
    last_checked: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: Duration,
) -> CatchUp {
    let mut plan = CatchUp::default();
    if !schedule.enabled() || now <= last_checked {
        return plan;
    }
    let oldest_sendable = now.checked_sub_signed(grace).unwrap_or(last_checked);
    for due in fires_between(schedule, last_checked, now) {
        if suppressed_by_quiet_hours(schedule, due) {
            plan.quiet.push(due);
            continue;
        }
        // Fires arrive oldest first, so a newer sendable one supersedes the last.
        if let Some(superseded) = plan.fire.take() {
            plan.missed.push(superseded);
        }
        if due >= oldest_sendable {
            plan.fire = Some(due);
        } else {
            plan.missed.push(due);
        }
    }
    plan
}

fn schedule_fires(
    schedule: &ValidSchedule,
    after: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> FireIter<'_> {
    // `after` is exclusive and `starts_at` inclusive, hence the second.
    let after = match schedule.starts_at() {
        Some(start) => after.max(start - Duration::seconds(1)),
        None => after,
    };
    let until = match (until, schedule.ends_before()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    FireIter::new(schedule.cron(), schedule.timezone(), after, until)
}

/// Where one wall-clock slot lands in real time.
enum Landing {
    /// An ordinary wall time: one instant.
    Once(DateTime<Utc>),
    /// A repeated wall time (fall-back) for an every-hour schedule: both.
    Twice(DateTime<Utc>, DateTime<Utc>),
    /// A missing wall time (spring-forward) for a schedule pinned to hours:
    /// moved forward by the gap.
    Shifted(DateTime<Utc>),
    /// A missing wall time for an every-hour schedule: it never happens.
    Skipped,
}

fn land(spec: &CronSpec, tz: Tz, wall: NaiveDateTime) -> Landing {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(at) => Landing::Once(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => {
            let (first, second) = (a.min(b), a.max(b));
            if spec.every_hour {
                Landing::Twice(first.with_timezone(&Utc), second.with_timezone(&Utc))
            } else {
                Landing::Once(first.with_timezone(&Utc))
            }
        }
        LocalResult::None if spec.every_hour => Landing::Skipped,
        LocalResult::None => Landing::Shifted(shift_out_of_gap(tz, wall)),
    }
}

/// The instant a wall-clock time denotes: its first occurrence if it happens
/// twice, shifted forward by the gap if it never happens (RFC 5545).
pub(super) fn wall_to_instant(tz: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => shift_out_of_gap(tz, wall),
    }
}

/// Reads a wall time that falls in a gap with the offset in force before the
/// gap (a day earlier is safely before it): 02:30 becomes 03:30 when clocks
/// jump from 02:00 to 03:00.
fn shift_out_of_gap(tz: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    let offset_before = offset_seconds(tz, wall - Duration::days(1));
    (wall - Duration::seconds(offset_before)).and_utc()
}

/// UTC offset in seconds at the instant `utc`.
fn offset_seconds(tz: Tz, utc: NaiveDateTime) -> i64 {
    i64::from(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc())
}

/// Fire instants in increasing order.
///
/// Wall-clock slots come from the `cron` crate in wall-clock order, but around
/// a transition their instants can come out of order (a shifted 02:30 lands
/// after the real 03:00; the second 01:30 after the first 01:45). So instants
/// wait in `pending` until no later slot can land before them.
struct FireIter<'a> {
    spec: &'a CronSpec,
    tz: Tz,
    /// Wall-clock slots, expressed on a zone-less (UTC) clock.
    walls: Option<cron::ScheduleIterator<'a, Utc>>,
    pending: BTreeSet<DateTime<Utc>>,
    /// Every instant still to come from `walls` is at or after this.
    low_water: DateTime<Utc>,
    /// Exclusive lower bound; moves up to each emitted fire.
    after: DateTime<Utc>,
    /// Exclusive upper bound.
    until: Option<DateTime<Utc>>,
}

impl<'a> FireIter<'a> {
    fn new(spec: &'a CronSpec, tz: Tz, after: DateTime<Utc>, until: Option<DateTime<Utc>>) -> Self {
        Self {
            spec,
            tz,
            walls: first_wall(tz, after).map(|wall| spec.schedule.after(&wall.and_utc())),
            pending: BTreeSet::new(),
            low_water: after,
            after,
            until,
        }
    }
}

/// The wall-clock time to start from: early enough that a slot shifted out of
/// a gap or repeated after a fall-back, landing after `after`, is not missed.
/// `None` outside the range the `cron` crate can represent (years 1970–2100).
fn first_wall(tz: Tz, after: DateTime<Utc>) -> Option<NaiveDateTime> {
    let after = after.naive_utc();
    let day = Duration::days(1);
    let lowest_offset = [
        after.checked_sub_signed(day),
        Some(after),
        after.checked_add_signed(day),
    ]
    .into_iter()
    .flatten()
    .map(|instant| offset_seconds(tz, instant))
    .min()?;
    let wall = after.checked_add_signed(Duration::seconds(lowest_offset))?;
    let supported = NaiveDate::from_ymd_opt(1969, 1, 1)?.and_hms_opt(0, 0, 0)?
        ..NaiveDate::from_ymd_opt(2101, 1, 1)?.and_hms_opt(0, 0, 0)?;
    supported.contains(&wall).then_some(wall)
}

impl Iterator for FireIter<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            if let Some(&earliest) = self.pending.first() {
                if self.walls.is_none() || earliest <= self.low_water {
                    self.pending.pop_first();
                    if self.until.is_some_and(|until| earliest >= until) {
                        self.pending.clear();
                        self.walls = None;
                        return None;
                    }
                    self.after = earliest;
                    return Some(earliest);
                }
            }
            let walls = self.walls.as_mut()?;
            let Some(wall) = walls.next() else {
                self.walls = None;
                continue;
            };
            let (instants, low_water) = match land(self.spec, self.tz, wall.naive_utc()) {
                Landing::Once(at) => (vec![at], Some(at)),
                Landing::Twice(first, second) => (vec![first, second], Some(first)),
                // A shifted slot can land after later wall slots do, so it is
                // no bound for them.
                Landing::Shifted(at) => (vec![at], None),
                Landing::Skipped => (Vec::new(), None),
            };
            let after = self.after;
            self.pending
                .extend(instants.into_iter().filter(|&at| at > after));
            if let Some(low_water) = low_water {
                self.low_water = self.low_water.max(low_water);
            }
            if self.until.is_some_and(|until| self.low_water >= until) {
                // Nothing later can land before `until`: flush and stop.
                self.walls = None;
            }
        }
    }
}
