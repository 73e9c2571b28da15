//! Turning a variant's content into a concrete, typed message for one chat.
//!
//! Templates are minijinja with **strict undefined**: a misspelt variable is an
//! error (caught once on save by validation), never an empty string in a
//! customer's group. Variables:
//!
//! | name | value |
//! |---|---|
//! | `schedule`, `variant` | the schedule's and the variant's name |
//! | `date`, `time`, `weekday` | the fire time on the schedule's wall clock: `2025-03-09`, `09:30`, `周日` |
//! | `fire_time` | the same as RFC 3339 with offset |
//! | `chat.name`, `chat.member_count` | the receiving chat (absent for 1:1 member pushes) |
//! | `leaderboard` | the chat's top N: a list of `{rank, name, points}` |
//! | `days_left` | whole days from the fire date to the end date (only when `end` is set) |
//!
//! Message size limits differ per route and are the sender's job.

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use super::{ValidSchedule, Variant};

/// Validated message content; text fields are templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text {
        body: String,
    },
    Markdown {
        body: String,
    },
    News {
        title: String,
        description: Option<String>,
        url: String,
        picurl: Option<String>,
    },
    Image(ImageSource),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    Url(String),
    MediaId(String),
}

/// A message ready for a sender, its text fully rendered. Serialises to the
/// outbox payload as `{"kind": "text", "content": "…"}` and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RenderedMessage {
    Text { content: String },
    Markdown { content: String },
    News { articles: Vec<NewsArticle> },
    Image { source: ImageSource },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewsArticle {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picurl: Option<String>,
}

/// What one push knows about its moment and its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushContext {
    pub fire_time: DateTime<Utc>,
    /// `None` for 1:1 app messages to members.
    pub chat: Option<ChatVars>,
    /// The chat's top N, best first.
    pub leaderboard: Vec<LeaderboardEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatVars {
    pub name: String,
    pub member_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderboardEntry {
    pub rank: u32,
    pub name: String,
    pub points: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// Bad syntax, an undefined variable, a failing filter.
    #[error("template in {field} failed: {reason}")]
    Template { field: &'static str, reason: String },
    /// WeCom refuses empty messages, so an empty result is an error too.
    #[error("template in {field} rendered to nothing")]
    Empty { field: &'static str },
}

/// Renders `variant` of `schedule` for one push.
pub fn render(
    schedule: &ValidSchedule,
    variant: &Variant,
    context: &PushContext,
) -> Result<RenderedMessage, RenderError> {
    let vars = TemplateVars::new(
        schedule.name(),
        &variant.name,
        schedule.timezone(),
        schedule.end_date(),
        context,
    );
    render_content(&variant.content, &vars)
}

pub(super) fn render_content(
    content: &Content,
    vars: &TemplateVars<'_>,
) -> Result<RenderedMessage, RenderError> {
    let env = template_env();
    let message = match content {
        Content::Text { body } => RenderedMessage::Text {
            content: render_field(&env, "body", body, vars)?,
        },
        Content::Markdown { body } => RenderedMessage::Markdown {
            content: render_field(&env, "body", body, vars)?,
        },
        Content::News {
            title,
            description,
            url,
            picurl,
        } => RenderedMessage::News {
            articles: vec![NewsArticle {
                title: render_field(&env, "title", title, vars)?,
                description: description
                    .as_deref()
                    .map(|description| render_field(&env, "description", description, vars))
                    .transpose()?,
                url: url.clone(),
                picurl: picurl.clone(),
            }],
        },
        Content::Image(source) => RenderedMessage::Image {
            source: source.clone(),
        },
    };
    Ok(message)
}

/// The variables a template sees; absent values are left out so that strict
/// undefined turns any use of them into an error.
#[derive(Debug, Serialize)]
pub(super) struct TemplateVars<'a> {
    schedule: &'a str,
    variant: &'a str,
    date: String,
    time: String,
    weekday: &'static str,
    fire_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat: Option<&'a ChatVars>,
    leaderboard: &'a [LeaderboardEntry],
    #[serde(skip_serializing_if = "Option::is_none")]
    days_left: Option<i64>,
}

impl<'a> TemplateVars<'a> {
    pub(super) fn new(
        schedule_name: &'a str,
        variant_name: &'a str,
        timezone: Tz,
        end_date: Option<NaiveDate>,
        context: &'a PushContext,
    ) -> Self {
        let local = context.fire_time.with_timezone(&timezone);
        Self {
            schedule: schedule_name,
            variant: variant_name,
            date: local.format("%Y-%m-%d").to_string(),
            time: local.format("%H:%M").to_string(),
            weekday: chinese_weekday(local.weekday()),
            fire_time: local.to_rfc3339(),
            chat: context.chat.as_ref(),
            leaderboard: &context.leaderboard,
            days_left: end_date.map(|end| (end - local.date_naive()).num_days()),
        }
    }
}

fn chinese_weekday(weekday: Weekday) -> &'static str {
    match weekday {
        Weekday::Mon => "周一",
        Weekday::Tue => "周二",
        Weekday::Wed => "周三",
        Weekday::Thu => "周四",
        Weekday::Fri => "周五",
        Weekday::Sat => "周六",
        Weekday::Sun => "周日",
    }
}

fn template_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

fn render_field(
    env: &Environment<'_>,
    field: &'static str,
    template: &str,
    vars: &TemplateVars<'_>,
) -> Result<String, RenderError> {
    let rendered = env
        .render_str(template, vars)
        .map_err(|error| RenderError::Template {
            field,
            reason: describe_template_error(&error),
        })?;
    if rendered.trim().is_empty() {
        return Err(RenderError::Empty { field });
    }
    Ok(rendered)
}

/// One line for a manager: what went wrong and on which template line.
fn describe_template_error(error: &minijinja::Error) -> String {
    let mut text = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    if let Some(line) = error.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}
