//! Scheduled pushes (定时推送), the pure part: definitions, validation, fire
//! times, quiet hours, catch-up after downtime, A/B variants, rendering and
//! target selection. No clock reads: every "now" is a parameter.
//!
//! # How fire times are computed
//!
//! Cron expressions start with **seconds** (6 or 7 fields, the `cron` crate's
//! dialect). Beware of its day-of-week numbers: `1` is **Sunday** … `7` is
//! Saturday; write names (`Mon-Fri`) to avoid surprises. When both day-of-month
//! and day-of-week are restricted, a day must match both.
//!
//! The expression is matched against the **wall clock** of the schedule's
//! timezone. Daylight-saving transitions make some wall times not exist and
//! others happen twice; the `cron` crate itself then skips the missing time and
//! fires twice at the repeated one, so a daily 02:30 push in New York would
//! vanish in March and go out twice in November. We instead iterate wall times
//! with the crate (on a zone-less clock) and map them to instants ourselves:
//!
//! * **Schedules pinned to particular hours** (the hour field is not `*`, e.g.
//!   a daily 02:30 push) fire once per matching wall-clock slot:
//!   - a slot that falls in a spring-forward gap fires at the wall time shifted
//!     by the gap, as RFC 5545 (iCalendar) prescribes: 02:30 in New York on the
//!     spring-forward day fires at 03:30 EDT, once;
//!   - a slot that happens twice fires at its first occurrence only: 01:30 on the
//!     fall-back day fires at 01:30 EDT, not again at 01:30 EST.
//! * **Schedules that run every hour** (the hour field is `*`) follow the real
//!   clock: a wall time that never appears is skipped and one that appears twice
//!   fires twice, so an hourly job keeps firing exactly once per real hour
//!   through both transitions.
//!
//! Two slots that land on the same instant fire once, and fire times are always
//! strictly increasing. `next_fires(after)` is stateless: asking again from any
//! returned fire time continues the same sequence.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

mod def;
mod fires;
mod quiet;
mod render;
mod targets;
mod validate;
mod variant;

#[cfg(test)]
mod tests;

pub use def::{ContentDef, ScheduleDef, TargetsDef, VariantDef};
pub use fires::{
    fires_between, next_fire_times_for_cli, next_fires, plan_catch_up, CatchUp, CronSpec,
    MAX_FIRES_PER_QUERY,
};
pub use quiet::{in_quiet_hours, suppressed_by_quiet_hours, QuietHours};
pub use render::{
    render, ChatVars, Content, ImageSource, LeaderboardEntry, NewsArticle, PushContext,
    RenderError, RenderedMessage,
};
pub use targets::{select_targets, ChatInfo, ChatRoute, MemberRecipients, Targets};
pub use validate::{validate, validate_all, FieldError, FieldErrorCode, ValidationContext};
pub use variant::{assign_variant, Variant, Variants};

/// Errors from the standalone helpers (the CLI's `schedules next`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression: {reason}")]
    BadCron { reason: String },
    #[error("unknown timezone {name:?} (use an IANA name such as Asia/Shanghai)")]
    UnknownTimezone { name: String },
}

/// A schedule that passed [`validate`]: only these are ever applied.
///
/// Built only by validation, so every field is known good: the cron expression
/// parses, templates render, targets are non-empty and there is at least one
/// variant with a positive weight.
#[derive(Debug, Clone)]
pub struct ValidSchedule {
    name: String,
    cron: CronSpec,
    timezone: Tz,
    /// Earliest instant that may fire, inclusive.
    starts_at: Option<DateTime<Utc>>,
    /// Instants at or after this never fire.
    ends_before: Option<DateTime<Utc>>,
    /// The last local day of the campaign, for `days_left`.
    end_date: Option<NaiveDate>,
    quiet_hours: Option<QuietHours>,
    allow_quiet_hours: bool,
    targets: Targets,
    variants: Variants,
    enabled: bool,
}

impl ValidSchedule {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn cron(&self) -> &CronSpec {
        &self.cron
    }
    pub fn timezone(&self) -> Tz {
        self.timezone
    }
    pub fn starts_at(&self) -> Option<DateTime<Utc>> {
        self.starts_at
    }
    pub fn ends_before(&self) -> Option<DateTime<Utc>> {
        self.ends_before
    }
    pub fn end_date(&self) -> Option<NaiveDate> {
        self.end_date
    }
    pub fn quiet_hours(&self) -> Option<QuietHours> {
        self.quiet_hours
    }
    pub fn allow_quiet_hours(&self) -> bool {
        self.allow_quiet_hours
    }
    pub fn targets(&self) -> &Targets {
        &self.targets
    }
    pub fn variants(&self) -> &Variants {
        &self.variants
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The variant this chat receives; stable across runs (see [`assign_variant`]).
    pub fn variant_for(&self, chat_id: &str) -> &Variant {
        assign_variant(&self.name, chat_id, &self.variants)
    }
}
