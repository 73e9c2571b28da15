//! Templates: embedded in the binary at build time, rendered by minijinja with
//! HTML auto-escaping (every template name ends in `.html`).

use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

use super::auth::{cookie, Manager, Role, LANG_COOKIE};
use super::i18n::{self, Lang};
use super::AdminError;

/// Every console template, by name. Adding a template means adding it here.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/admin/base.html")),
    (
        "lotteries.html",
        include_str!("../../templates/admin/lotteries.html"),
    ),
    (
        "lottery.html",
        include_str!("../../templates/admin/lottery.html"),
    ),
    (
        "polls.html",
        include_str!("../../templates/admin/polls.html"),
    ),
    ("poll.html", include_str!("../../templates/admin/poll.html")),
    (
        "login.html",
        include_str!("../../templates/admin/login.html"),
    ),
    (
        "dashboard.html",
        include_str!("../../templates/admin/dashboard.html"),
    ),
    (
        "chats.html",
        include_str!("../../templates/admin/chats.html"),
    ),
    ("chat.html", include_str!("../../templates/admin/chat.html")),
    (
        "members.html",
        include_str!("../../templates/admin/members.html"),
    ),
    (
        "member.html",
        include_str!("../../templates/admin/member.html"),
    ),
    (
        "rules.html",
        include_str!("../../templates/admin/rules.html"),
    ),
    (
        "rules_history.html",
        include_str!("../../templates/admin/rules_history.html"),
    ),
    (
        "rules_version.html",
        include_str!("../../templates/admin/rules_version.html"),
    ),
    (
        "queues.html",
        include_str!("../../templates/admin/queues.html"),
    ),
    (
        "schedules.html",
        include_str!("../../templates/admin/schedules.html"),
    ),
    (
        "schedule.html",
        include_str!("../../templates/admin/schedule.html"),
    ),
    (
        "moderation.html",
        include_str!("../../templates/admin/moderation.html"),
    ),
    (
        "moderation_log.html",
        include_str!("../../templates/admin/moderation_log.html"),
    ),
    (
        "audit.html",
        include_str!("../../templates/admin/audit.html"),
    ),
    (
        "users.html",
        include_str!("../../templates/admin/users.html"),
    ),
    (
        "segments.html",
        include_str!("../../templates/admin/segments.html"),
    ),
    (
        "segment.html",
        include_str!("../../templates/admin/segment.html"),
    ),
    (
        "segment_preview.html",
        include_str!("../../templates/admin/segment_preview.html"),
    ),
];

pub struct Views {
    env: Environment<'static>,
}

impl Views {
    /// `timezone` is what `{{ at|datetime }}` shows times in.
    pub fn load(timezone: chrono_tz::Tz) -> anyhow::Result<Views> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| anyhow::anyhow!("template {name}: {e}"))?;
        }
        env.add_filter("datetime", move |value: minijinja::Value| {
            format_unix(value, timezone)
        });
        Ok(Views { env })
    }

    /// Renders `name` with the page frame's values plus `context`.
    pub fn render<C: Serialize>(
        &self,
        name: &str,
        frame: &Frame,
        context: C,
    ) -> Result<Html<String>, AdminError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| anyhow::anyhow!("template {name}: {e}"))?;
        let html = template
            .render(minijinja::context! { ..minijinja::Value::from_serialize(frame), ..minijinja::Value::from_serialize(&context) })
            .map_err(|e| anyhow::anyhow!("rendering {name}: {e:#}"))?;
        Ok(Html(html))
    }

    /// [`Views::render`] as a handler's whole answer (status 200).
    pub fn page<C: Serialize>(
        &self,
        name: &str,
        frame: &Frame,
        context: C,
    ) -> Result<Response, AdminError> {
        Ok(self.render(name, frame, context)?.into_response())
    }

    pub fn template_names() -> impl Iterator<Item = (&'static str, &'static str)> {
        TEMPLATES.iter().copied()
    }
}

/// What every page's frame (navigation, language switch, logout form) needs.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    pub lang: &'static str,
    pub t: std::collections::BTreeMap<&'static str, &'static str>,
    pub username: String,
    pub role: &'static str,
    pub csrf: String,
    pub can_edit: bool,
    pub is_owner: bool,
    pub nav: &'static str,
}

impl Frame {
    pub fn new(headers: &HeaderMap, manager: Option<&Manager>, nav: &'static str) -> Frame {
        let lang = language(headers);
        Frame {
            lang: lang.code(),
            t: i18n::strings(lang),
            username: manager.map(|m| m.username.clone()).unwrap_or_default(),
            role: manager.map(|m| m.role().as_str()).unwrap_or(""),
            csrf: manager.map(|m| m.csrf.clone()).unwrap_or_default(),
            can_edit: manager.is_some_and(|m| m.role() >= Role::Operator),
            is_owner: manager.is_some_and(|m| m.role() >= Role::Owner),
            nav,
        }
    }

    pub fn lang(&self) -> Lang {
        Lang::from_code(self.lang)
    }
}

/// Chinese unless the manager switched to English.
pub fn language(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .map(|code| Lang::from_code(&code))
        .unwrap_or(Lang::Zh)
}

/// `{{ at|datetime }}`: unix seconds as `YYYY-MM-DD HH:MM TZ` in the community's
/// timezone, e.g. `2026-12-07 16:29 CST`.
fn format_unix(value: minijinja::Value, timezone: chrono_tz::Tz) -> String {
    let Some(seconds) = value.as_i64() else {
        return String::new();
    };
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| {
            t.with_timezone(&timezone)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string()
        })
        .unwrap_or_default()
}

/// Minimal HTML escaping for the few strings built outside templates (SVG text, error pages).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        Views::load(chrono_tz::Asia::Shanghai).unwrap();
    }

    #[test]
    fn page_titles_are_plain_text() {
        for (name, source) in Views::template_names() {
            let Some(start) = source.find("{% block title %}") else {
                continue;
            };
            let rest = &source[start..];
            let title = &rest[..rest.find("{% endblock %}").unwrap()];
            assert!(!title.contains('<'), "{name}: markup in the title: {title}");
        }
    }

    #[test]
    fn times_show_in_the_community_timezone() {
        let at = minijinja::Value::from(1_765_096_140_i64); // 2025-12-07 08:29 UTC
        assert_eq!(
            format_unix(at.clone(), chrono_tz::Asia::Shanghai),
            "2025-12-07 16:29 CST"
        );
        assert_eq!(format_unix(at, chrono_tz::UTC), "2025-12-07 08:29 UTC");
        assert_eq!(format_unix(minijinja::Value::from("x"), chrono_tz::UTC), "");
    }

    #[test]
    fn every_translation_key_used_in_templates_exists_in_both_languages() {
        let zh = i18n::strings(Lang::Zh);
        let en = i18n::strings(Lang::En);
        let key = regex::Regex::new(r"\bt\.([a-z_0-9]+)").unwrap();
        for (name, source) in Views::template_names() {
            for capture in key.captures_iter(source) {
                let k = &capture[1];
                assert!(zh.contains_key(k), "{name}: t.{k} missing in Chinese");
                assert!(en.contains_key(k), "{name}: t.{k} missing in English");
            }
        }
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape_html("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
