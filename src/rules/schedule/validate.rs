//! Checking a [`ScheduleDef`] on save, so that a schedule is never found broken
//! when it fires. Every problem is reported, each with the exact field path
//! (`schedules[2].variants[0].content.body`) and a stable code for the console.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::fires::{next_fires, parse_timezone, wall_to_instant};
use super::render::{render_content, RenderError, TemplateVars};
use super::{
    suppressed_by_quiet_hours, ChatVars, Content, ContentDef, CronSpec, ImageSource,
    LeaderboardEntry, MemberRecipients, PushContext, QuietHours, ScheduleDef, Targets, TargetsDef,
    ValidSchedule, Variant, VariantDef, Variants,
};

/// One problem with one field. Serialises as `{"path", "code", "message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where, e.g. `schedules[2].cron`.
    pub path: String,
    pub code: FieldErrorCode,
    /// What is wrong, for a manager.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Stable error codes; the console keys its help texts on [`Self::as_str`]
/// (which is also the serialised form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldErrorCode {
    InvalidName,
    DuplicateName,
    BadCron,
    NeverFires,
    UnknownTimezone,
    BadDate,
    EndBeforeStart,
    BadQuietHours,
    AlwaysQuiet,
    EmptyTargets,
    InvalidTarget,
    MissingContent,
    ConflictingContent,
    MissingTemplate,
    BadTemplate,
    BadUrl,
    BadImage,
    BadWeight,
}

impl FieldErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidName => "invalid_name",
            Self::DuplicateName => "duplicate_name",
            Self::BadCron => "bad_cron",
            Self::NeverFires => "never_fires",
            Self::UnknownTimezone => "unknown_timezone",
            Self::BadDate => "bad_date",
            Self::EndBeforeStart => "end_before_start",
            Self::BadQuietHours => "bad_quiet_hours",
            Self::AlwaysQuiet => "always_quiet",
            Self::EmptyTargets => "empty_targets",
            Self::InvalidTarget => "invalid_target",
            Self::MissingContent => "missing_content",
            Self::ConflictingContent => "conflicting_content",
            Self::MissingTemplate => "missing_template",
            Self::BadTemplate => "bad_template",
            Self::BadUrl => "bad_url",
            Self::BadImage => "bad_image",
            Self::BadWeight => "bad_weight",
        }
    }
}

impl fmt::Display for FieldErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What validation needs from outside the definition.
#[derive(Debug, Clone)]
pub struct ValidationContext {
    /// Used when the schedule names no timezone: the community's.
    pub default_timezone: Tz,
    /// Prefix of every error path, e.g. `schedules[2]`.
    pub path: String,
}

impl ValidationContext {
    /// The context for entry `index` of a rule set's `[[schedules]]`.
    pub fn for_schedule(default_timezone: Tz, index: usize) -> Self {
        Self {
            default_timezone,
            path: format!("schedules[{index}]"),
        }
    }
}

/// Longest accepted schedule or variant name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Largest variant weight: keeps weight sums far from overflow.
const MAX_WEIGHT: i64 = 1_000_000;
/// Years a start or end may fall in: what the `cron` crate can schedule.
const SUPPORTED_YEARS: std::ops::RangeInclusive<i32> = 1970..=2100;
/// How many days of fires are checked against quiet hours.
const QUIET_SAMPLE_DAYS: usize = 64;

/// Validates a whole `[[schedules]]` list: each entry, plus unique names.
pub fn validate_all(
    defs: &[ScheduleDef],
    default_timezone: Tz,
) -> Result<Vec<ValidSchedule>, Vec<FieldError>> {
    let mut valid = Vec::with_capacity(defs.len());
    let mut errors = Vec::new();
    let mut first_use: HashMap<&str, usize> = HashMap::new();
    for (index, def) in defs.iter().enumerate() {
        let context = ValidationContext::for_schedule(default_timezone, index);
        if let Some(first) = first_use.get(def.name.trim()) {
            errors.push(FieldError {
                path: format!("{}.name", context.path),
                code: FieldErrorCode::DuplicateName,
                message: format!("name {:?} is already used by schedules[{first}]", def.name),
            });
        } else {
            first_use.insert(def.name.trim(), index);
        }
        match validate(def, &context) {
            Ok(schedule) => valid.push(schedule),
            Err(mut found) => errors.append(&mut found),
        }
    }
    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(errors)
    }
}

/// Validates one schedule, reporting every problem found.
pub fn validate(
    def: &ScheduleDef,
    context: &ValidationContext,
) -> Result<ValidSchedule, Vec<FieldError>> {
    let mut check = Checker {
        prefix: &context.path,
        errors: Vec::new(),
    };

    let name = check.name("name", &def.name);
    let cron = CronSpec::parse(&def.cron)
        .map_err(|error| check.fail("cron", FieldErrorCode::BadCron, error.to_string()))
        .ok();
    let timezone = match &def.timezone {
        Some(name) => parse_timezone(name)
            .map_err(|error| {
                check.fail(
                    "timezone",
                    FieldErrorCode::UnknownTimezone,
                    error.to_string(),
                )
            })
            .ok(),
        None => Some(context.default_timezone),
    };
    // Keep checking the rest against some timezone even when it was bad.
    let tz = timezone.unwrap_or(context.default_timezone);
    let start = def
        .start
        .as_deref()
        .and_then(|text| check.bound("start", text, tz, BoundSide::Start));
    let end = def
        .end
        .as_deref()
        .and_then(|text| check.bound("end", text, tz, BoundSide::End));
    if let (Some(start), Some(end)) = (&start, &end) {
        if end.instant <= start.instant {
            check.fail(
                "end",
                FieldErrorCode::EndBeforeStart,
                "end is before start".to_owned(),
            );
        }
    }
    let quiet_hours = def.quiet_hours.as_deref().and_then(|text| {
        QuietHours::parse(text)
            .map_err(|reason| check.fail("quiet_hours", FieldErrorCode::BadQuietHours, reason))
            .ok()
    });
    let targets = check.targets(&def.targets);
    let variants = check.variants(def);

    let (Some(cron), Some(timezone), Some(targets), Some(variants)) =
        (cron, timezone, targets, variants)
    else {
        return Err(check.errors);
    };
    if !check.errors.is_empty() {
        return Err(check.errors);
    }
    let schedule = ValidSchedule {
        name,
        cron,
        timezone,
        starts_at: start.map(|start| start.instant),
        ends_before: end.map(|end| end.instant),
        end_date: end.map(|end| end.date),
        quiet_hours,
        allow_quiet_hours: def.allow_quiet_hours,
        targets,
        variants,
        enabled: def.enabled,
    };
    check.fires(&schedule);
    check.templates(&schedule, def);
    if check.errors.is_empty() {
        Ok(schedule)
    } else {
        Err(check.errors)
    }
}

/// Collects errors under one path prefix.
struct Checker<'a> {
    prefix: &'a str,
    errors: Vec<FieldError>,
}

#[derive(Debug, Clone, Copy)]
enum BoundSide {
    Start,
    End,
}

/// A parsed `start` or `end`.
#[derive(Debug, Clone, Copy)]
struct Bound {
    /// `start`: the first instant allowed. `end`: the first instant excluded.
    instant: DateTime<Utc>,
    /// The local day it falls on (for `end`, the last day of the campaign).
    date: NaiveDate,
}

impl Checker<'_> {
    fn fail(&mut self, field: &str, code: FieldErrorCode, message: String) {
        self.errors.push(FieldError {
            path: format!("{}.{field}", self.prefix),
            code,
            message,
        });
    }

    fn name(&mut self, field: &str, name: &str) -> String {
        let trimmed = name.trim();
        let problem = if trimmed.is_empty() {
            Some("name is empty".to_owned())
        } else if trimmed.chars().count() > MAX_NAME_CHARS {
            Some(format!("name is longer than {MAX_NAME_CHARS} characters"))
        } else if trimmed.chars().any(char::is_control) {
            Some("name contains control characters".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            self.fail(field, FieldErrorCode::InvalidName, problem);
        }
        trimmed.to_owned()
    }

    /// Accepts a date (`2025-03-01`), a wall-clock datetime in the schedule's
    /// timezone (`2025-03-01T09:00:00`, `2025-03-01 09:00`) or RFC 3339, in the
    /// years the `cron` crate can schedule.
    fn bound(&mut self, field: &str, text: &str, tz: Tz, side: BoundSide) -> Option<Bound> {
        let bound = parse_bound(text.trim(), tz, side);
        if bound.is_none() {
            self.fail(
                field,
                FieldErrorCode::BadDate,
                format!(
                    "{text:?} is not a date (2025-03-01) or a datetime (2025-03-01T09:00:00) \
                     in the years {}-{}",
                    SUPPORTED_YEARS.start(),
                    SUPPORTED_YEARS.end()
                ),
            );
        }
        bound
    }

    fn targets(&mut self, def: &TargetsDef) -> Option<Targets> {
        let before = self.errors.len();
        let chat_tags = self.non_empty_strings("targets.chat_tags", &def.chat_tags);
        let chat_ids = self.non_empty_strings("targets.chat_ids", &def.chat_ids);
        let members =
            (!def.member_departments.is_empty() || !def.member_tags.is_empty()).then(|| {
                MemberRecipients {
                    departments: def.member_departments.clone(),
                    tags: def.member_tags.clone(),
                }
            });
        let targets = Targets {
            all_chats: def.all_chats,
            chat_tags,
            chat_ids,
            members,
        };
        if !targets.includes_chats() && targets.members.is_none() {
            self.fail(
                "targets",
                FieldErrorCode::EmptyTargets,
                "no targets: set all_chats, chat_tags, chat_ids, member_departments or member_tags"
                    .to_owned(),
            );
        }
        (self.errors.len() == before).then_some(targets)
    }

    fn non_empty_strings(&mut self, field: &str, values: &[String]) -> BTreeSet<String> {
        let mut kept = BTreeSet::new();
        for (index, value) in values.iter().enumerate() {
            if value.trim().is_empty() {
                self.fail(
                    &format!("{field}[{index}]"),
                    FieldErrorCode::InvalidTarget,
                    "empty entry".to_owned(),
                );
            } else {
                kept.insert(value.trim().to_owned());
            }
        }
        kept
    }

    fn variants(&mut self, def: &ScheduleDef) -> Option<Variants> {
        match (&def.content, def.variants.is_empty()) {
            (Some(content), true) => {
                let content = self.content("content", content)?;
                Variants::new(vec![Variant {
                    name: Variant::DEFAULT_NAME.to_owned(),
                    weight: 1,
                    content,
                }])
            }
            (None, false) => self.ab_variants(&def.variants),
            (Some(_), false) => {
                self.fail(
                    "content",
                    FieldErrorCode::ConflictingContent,
                    "give either content or variants, not both".to_owned(),
                );
                None
            }
            (None, true) => {
                self.fail(
                    "content",
                    FieldErrorCode::MissingContent,
                    "no content: give content, or variants for an A/B test".to_owned(),
                );
                None
            }
        }
    }

    fn ab_variants(&mut self, defs: &[VariantDef]) -> Option<Variants> {
        let before = self.errors.len();
        let mut seen = BTreeSet::new();
        let mut variants = Vec::with_capacity(defs.len());
        for (index, def) in defs.iter().enumerate() {
            let path = format!("variants[{index}]");
            let name = self.name(&format!("{path}.name"), &def.name);
            if !name.is_empty() && !seen.insert(name.clone()) {
                self.fail(
                    &format!("{path}.name"),
                    FieldErrorCode::DuplicateName,
                    format!("variant name {name:?} is used twice"),
                );
            }
            let weight = match u32::try_from(def.weight) {
                Ok(weight) if weight > 0 && i64::from(weight) <= MAX_WEIGHT => Some(weight),
                _ => {
                    self.fail(
                        &format!("{path}.weight"),
                        FieldErrorCode::BadWeight,
                        format!(
                            "weight must be between 1 and {MAX_WEIGHT}, got {}",
                            def.weight
                        ),
                    );
                    None
                }
            };
            let content = self.content(&format!("{path}.content"), &def.content);
            if let (Some(weight), Some(content)) = (weight, content) {
                variants.push(Variant {
                    name,
                    weight,
                    content,
                });
            }
        }
        if self.errors.len() == before {
            Variants::new(variants)
        } else {
            None
        }
    }

    /// Checks the shape of one content block; templates are rendered later,
    /// once the whole schedule is known.
    fn content(&mut self, path: &str, def: &ContentDef) -> Option<Content> {
        let before = self.errors.len();
        let content = match def {
            ContentDef::Text { body } => {
                self.template_present(path, "body", body);
                Content::Text { body: body.clone() }
            }
            ContentDef::Markdown { body } => {
                self.template_present(path, "body", body);
                Content::Markdown { body: body.clone() }
            }
            ContentDef::News {
                title,
                description,
                url,
                picurl,
            } => {
                self.template_present(path, "title", title);
                self.web_url(&format!("{path}.url"), url);
                if let Some(picurl) = picurl {
                    self.web_url(&format!("{path}.picurl"), picurl);
                }
                Content::News {
                    title: title.clone(),
                    description: description.clone(),
                    url: url.trim().to_owned(),
                    picurl: picurl.as_ref().map(|picurl| picurl.trim().to_owned()),
                }
            }
            ContentDef::Image { url, media_id } => match (url, media_id) {
                (Some(url), None) => {
                    self.web_url(&format!("{path}.url"), url);
                    Content::Image(ImageSource::Url(url.trim().to_owned()))
                }
                (None, Some(media_id)) if !media_id.trim().is_empty() => {
                    Content::Image(ImageSource::MediaId(media_id.trim().to_owned()))
                }
                _ => {
                    self.fail(
                        path,
                        FieldErrorCode::BadImage,
                        "an image needs exactly one of url and media_id".to_owned(),
                    );
                    return None;
                }
            },
        };
        (self.errors.len() == before).then_some(content)
    }

    fn template_present(&mut self, path: &str, field: &str, template: &str) {
        if template.trim().is_empty() {
            self.fail(
                &format!("{path}.{field}"),
                FieldErrorCode::MissingTemplate,
                format!("{field} is missing or empty"),
            );
        }
    }

    fn web_url(&mut self, path: &str, url: &str) {
        let url = url.trim();
        let has_host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
        if !has_host {
            self.fail(
                path,
                FieldErrorCode::BadUrl,
                format!("{url:?} is not an http(s) URL"),
            );
        }
    }

    /// The schedule must fire at least once, and not only in quiet hours.
    fn fires(&mut self, schedule: &ValidSchedule) {
        let reference = schedule.starts_at().unwrap_or(DateTime::UNIX_EPOCH);
        if next_fires(schedule, reference - Duration::seconds(1), 1).is_empty() {
            self.fail(
                "cron",
                FieldErrorCode::NeverFires,
                "the expression never fires between start and end".to_owned(),
            );
            return;
        }
        let Some(quiet) = schedule.quiet_hours() else {
            return;
        };
        if schedule.allow_quiet_hours() {
            return;
        }
        // Outside quiet hours is one stretch starting when the window closes,
        // so the first fire after each daily close tells whether that day has
        // a sendable fire. Sampling a couple of months covers daily, weekly
        // and monthly schedules.
        let tz = schedule.timezone();
        let first_day = reference.with_timezone(&tz).date_naive();
        let sendable_exists = first_day
            .iter_days()
            .take(QUIET_SAMPLE_DAYS)
            .map(|day| wall_to_instant(tz, day.and_time(quiet.end())))
            .filter_map(|closes| next_fires(schedule, closes - Duration::seconds(1), 1).pop())
            .any(|fire| !suppressed_by_quiet_hours(schedule, fire));
        if !sendable_exists {
            self.fail(
                "quiet_hours",
                FieldErrorCode::AlwaysQuiet,
                "every fire falls in quiet hours: move the time or set allow_quiet_hours = true"
                    .to_owned(),
            );
        }
    }

    /// Renders every template once with sample values, as a chat push and, when
    /// members are targeted, as a 1:1 push (where `chat` is undefined).
    fn templates(&mut self, schedule: &ValidSchedule, def: &ScheduleDef) {
        let mut samples = Vec::new();
        if schedule.targets().includes_chats() {
            samples.push(sample_context(Some(ChatVars {
                name: "示例群".to_owned(),
                member_count: 128,
            })));
        }
        if schedule.targets().members().is_some() {
            samples.push(sample_context(None));
        }
        for (index, variant) in schedule.variants().iter().enumerate() {
            let path = if def.variants.is_empty() {
                "content".to_owned()
            } else {
                format!("variants[{index}].content")
            };
            for sample in &samples {
                let vars = TemplateVars::new(
                    schedule.name(),
                    &variant.name,
                    schedule.timezone(),
                    schedule.end_date(),
                    sample,
                );
                if let Err(error) = render_content(&variant.content, &vars) {
                    let (field, code) = match &error {
                        RenderError::Template { field, .. } => {
                            (*field, FieldErrorCode::BadTemplate)
                        }
                        RenderError::Empty { field } => (*field, FieldErrorCode::BadTemplate),
                    };
                    let audience = if sample.chat.is_some() {
                        "a chat"
                    } else {
                        "a member (1:1, no chat)"
                    };
                    self.fail(
                        &format!("{path}.{field}"),
                        code,
                        format!("{error} when sent to {audience}"),
                    );
                    break;
                }
            }
        }
    }
}

fn sample_context(chat: Option<ChatVars>) -> PushContext {
    let leaderboard = [("小王", 320), ("小李", 250), ("小张", 180)]
        .into_iter()
        .zip(1..)
        .map(|((name, points), rank)| LeaderboardEntry {
            rank,
            name: name.to_owned(),
            points,
        })
        .collect();
    PushContext {
        // Any fixed instant will do: templates only see its formatted parts.
        fire_time: DateTime::UNIX_EPOCH + Duration::days(20_000),
        chat,
        leaderboard,
    }
}

fn parse_bound(text: &str, tz: Tz, side: BoundSide) -> Option<Bound> {
    // Checked first, so that the arithmetic below stays far from chrono's limits.
    let supported = |date: NaiveDate| SUPPORTED_YEARS.contains(&date.year());
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = |day: NaiveDate| wall_to_instant(tz, day.and_time(NaiveTime::MIN));
        let instant = match side {
            BoundSide::Start => midnight(date),
            // Through the end of that day: up to the next local midnight.
            BoundSide::End => midnight(date.succ_opt()?),
        };
        return supported(date).then_some(Bound { instant, date });
    }
    let instant = match DateTime::parse_from_rfc3339(text) {
        Ok(instant) => {
            Some(instant.with_timezone(&Utc)).filter(|instant| supported(instant.date_naive()))?
        }
        Err(_) => {
            let wall = [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M",
            ]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
            .filter(|wall| supported(wall.date()))?;
            wall_to_instant(tz, wall)
        }
    };
    let date = instant.with_timezone(&tz).date_naive();
    let instant = match side {
        BoundSide::Start => instant,
        // Inclusive: a fire exactly at the end still goes out.
        BoundSide::End => instant + Duration::seconds(1),
    };
    Some(Bound { instant, date })
}
