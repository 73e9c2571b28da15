//! The schedule definition exactly as a manager writes it in a rule set's
//! `[[schedules]]` table. Nothing here is trusted: [`super::validate`] turns a
//! [`ScheduleDef`] into a [`super::ValidSchedule`] or a list of field errors.
//!
//! ```toml
//! [[schedules]]
//! name = "morning-tip"
//! cron = "0 30 9 * * Mon-Fri"        # seconds first: 6 or 7 fields
//! timezone = "Asia/Shanghai"         # optional; the community's timezone otherwise
//! start = 2025-03-01                 # optional date, local datetime or RFC 3339
//! end = "2025-03-31"                 # a date means "through the end of that day"
//! quiet_hours = "22:00-08:00"        # optional, may wrap midnight
//! allow_quiet_hours = false
//! enabled = true
//!
//! [schedules.targets]
//! chat_tags = ["vip"]
//!
//! [schedules.content]
//! kind = "text"
//! body = "早上好，{{ chat.name }}！今天是 {{ date }}。"
//! ```

use serde::{Deserialize, Deserializer, Serialize};

/// One `[[schedules]]` entry, unvalidated.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    pub name: String,
    /// Cron expression with seconds: `sec min hour day-of-month month day-of-week [year]`.
    pub cron: String,
    /// IANA timezone name; `None` means the community's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// First day (or instant) on which the schedule may fire, inclusive.
    #[serde(
        default,
        deserialize_with = "date_or_datetime",
        skip_serializing_if = "Option::is_none"
    )]
    pub start: Option<String>,
    /// Last day (inclusive, through midnight) or last instant (inclusive).
    #[serde(
        default,
        deserialize_with = "date_or_datetime",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<String>,
    /// `"HH:MM-HH:MM"` in the schedule's timezone; may wrap midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<String>,
    #[serde(default)]
    pub allow_quiet_hours: bool,
    #[serde(default)]
    pub targets: TargetsDef,
    /// The message, when there is no A/B test. Exactly one of `content` and
    /// `variants` must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantDef>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Who receives the push. The union of everything listed; at least one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsDef {
    /// Every chat the bot knows.
    #[serde(default)]
    pub all_chats: bool,
    /// Chats carrying any of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat_tags: Vec<String>,
    /// These chats, by WeCom chat id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat_ids: Vec<String>,
    /// Internal members of these departments, as 1:1 app messages (`toparty`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_departments: Vec<u32>,
    /// Internal members with these WeCom tag ids, as 1:1 app messages (`totag`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_tags: Vec<u32>,
}

/// A message to send. Text fields are minijinja templates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContentDef {
    Text {
        #[serde(default)]
        body: String,
    },
    Markdown {
        #[serde(default)]
        body: String,
    },
    /// One news article (图文): title and description are templates.
    News {
        #[serde(default)]
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default)]
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        picurl: Option<String>,
    },
    /// An image by URL or by an uploaded media id (exactly one).
    Image {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_id: Option<String>,
    },
}

/// One arm of an A/B test.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VariantDef {
    pub name: String,
    /// Relative weight; must be positive. Signed so that a negative number is a
    /// field error from validation rather than an opaque parse error.
    pub weight: i64,
    pub content: ContentDef,
}

/// Accepts `start = "2025-03-01"` as well as TOML's native, unquoted
/// `start = 2025-03-01`, keeping the text; validation parses it.
fn date_or_datetime<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Toml(toml::value::Datetime),
    }
    let raw = Option::<Raw>::deserialize(deserializer)?;
    Ok(raw.map(|raw| match raw {
        Raw::Text(text) => text,
        Raw::Toml(datetime) => datetime.to_string(),
    }))
}
