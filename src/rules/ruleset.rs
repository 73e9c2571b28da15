//! A community's rule set: a TOML document, validated into a [`RuleSet`] whose
//! regexes are compiled, timezone parsed and templates loaded, so nothing is found
//! broken when it fires. Errors name the exact field (`checkin.keywords[0]: …`).

use std::collections::BTreeMap;
use std::fmt;

use chrono_tz::Tz;
use minijinja::{Environment, UndefinedBehavior};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::templates::{self, TemplateKind, TemplateVars};

/// Message templates shipped in `templates/messages/`, embedded so a fresh clone
/// works with no files around. A rule set's `[templates]` table overrides or adds.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    (
        "welcome",
        include_str!("../../templates/messages/welcome.txt"),
    ),
    (
        "welcome_returning",
        include_str!("../../templates/messages/welcome_returning.txt"),
    ),
    (
        "welcome_vip",
        include_str!("../../templates/messages/welcome_vip.txt"),
    ),
    (
        "welcome_customer",
        include_str!("../../templates/messages/welcome_customer.txt"),
    ),
    (
        "raid_digest",
        include_str!("../../templates/messages/raid_digest.txt"),
    ),
    (
        "checkin_ok",
        include_str!("../../templates/messages/checkin_ok.txt"),
    ),
    (
        "checkin_already",
        include_str!("../../templates/messages/checkin_already.txt"),
    ),
    (
        "makeup_ok",
        include_str!("../../templates/messages/makeup_ok.txt"),
    ),
    (
        "makeup_denied",
        include_str!("../../templates/messages/makeup_denied.txt"),
    ),
    (
        "points",
        include_str!("../../templates/messages/points.txt"),
    ),
    ("rank", include_str!("../../templates/messages/rank.txt")),
    ("level", include_str!("../../templates/messages/level.txt")),
    (
        "redeem_ok",
        include_str!("../../templates/messages/redeem_ok.txt"),
    ),
    (
        "redeem_failed",
        include_str!("../../templates/messages/redeem_failed.txt"),
    ),
    (
        "redeem_cancelled",
        include_str!("../../templates/messages/redeem_cancelled.txt"),
    ),
    ("help", include_str!("../../templates/messages/help.txt")),
    (
        "report_unhandled",
        include_str!("../../templates/messages/report_unhandled.txt"),
    ),
    (
        "faq_shipping",
        include_str!("../../templates/messages/faq_shipping.txt"),
    ),
    (
        "onboarding_tip",
        include_str!("../../templates/messages/onboarding_tip.txt"),
    ),
    (
        "owner_digest",
        include_str!("../../templates/messages/owner_digest.txt"),
    ),
    (
        "owner_welcome",
        include_str!("../../templates/messages/owner_welcome.txt"),
    ),
    (
        "lifecycle_nudge",
        include_str!("../../templates/messages/lifecycle_nudge.txt"),
    ),
    (
        "honour_board",
        include_str!("../../templates/messages/honour_board.txt"),
    ),
    (
        "badges",
        include_str!("../../templates/messages/badges.txt"),
    ),
    (
        "ugc_reward",
        include_str!("../../templates/messages/ugc_reward.txt"),
    ),
];

/// The TOML document as written by a manager. Every table is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSetDoc {
    pub community: CommunityDoc,
    pub checkin: CheckinDoc,
    pub points: PointsDoc,
    pub welcome: WelcomeDoc,
    pub onboarding: OnboardingDoc,
    pub catalog: Vec<CatalogItem>,
    pub autoreply: Vec<AutoReplyDoc>,
    pub templates: BTreeMap<String, String>,
    /// Scheduled pushes (`[[schedules]]`), validated with the rest of the set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<crate::rules::schedule::ScheduleDef>,
    pub moderation: super::moderate::ModerationDoc,
    /// Member lifecycle stages (`crate::analytics`).
    pub lifecycle: super::analytics::LifecycleDoc,
    /// Alert thresholds and who hears about them.
    pub alerts: super::analytics::AlertsDoc,
    /// Tags given to chats by name pattern or owner (`[[chat_tags]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat_tags: Vec<super::chat_tags::ChatTagRule>,
    /// Honour boards (`[[honour.boards]]`).
    pub honour: super::honour::HonourDoc,
    /// Rewarded good content: 精华 and 晒单 (`[ugc]`).
    pub ugc: super::ugc::UgcDoc,
    /// Tags kept on members while a condition holds (`[[member_tags]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_tags: Vec<super::member_tags::MemberTagRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommunityDoc {
    pub name: String,
    /// IANA timezone deciding the community day.
    pub timezone: String,
    /// Local hour (0..=23) at which a new community day starts.
    pub day_cutover_hour: u32,
    /// The configured app whose `message/send` answers 1:1 messages.
    pub app: String,
}

impl Default for CommunityDoc {
    fn default() -> Self {
        Self {
            name: "社群".into(),
            timezone: "Asia/Shanghai".into(),
            day_cutover_hour: 0,
            app: "main".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckinDoc {
    pub keywords: Vec<String>,
    pub base_points: i64,
    /// Bonus by streak length: entry i applies on streak day i+1; the last entry
    /// applies to every longer streak.
    pub streak_bonus: Vec<i64>,
    /// Upper bound for the streak bonus.
    pub streak_bonus_cap: i64,
    pub milestones: Vec<Milestone>,
    pub makeup_keyword: String,
    pub makeup_cost: i64,
    pub makeup_per_month: u32,
    /// How many community days back 补签 may fill (1: yesterday only).
    pub makeup_window_days: u32,
}

impl Default for CheckinDoc {
    fn default() -> Self {
        Self {
            keywords: vec!["签到".into(), "打卡".into()],
            base_points: 5,
            streak_bonus: vec![0, 1, 2, 3, 5],
            streak_bonus_cap: 5,
            milestones: vec![
                Milestone {
                    days: 3,
                    badge: "三日之约".into(),
                    points: 10,
                },
                Milestone {
                    days: 7,
                    badge: "七日之星".into(),
                    points: 30,
                },
            ],
            makeup_keyword: "补签".into(),
            makeup_cost: 20,
            makeup_per_month: 2,
            makeup_window_days: 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Milestone {
    pub days: u32,
    pub badge: String,
    #[serde(default)]
    pub points: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PointsDoc {
    /// Points for someone joining the community for the first time.
    pub new_member: i64,
    /// Most points one person can earn per community day for a reason.
    pub daily_caps: BTreeMap<String, i64>,
    /// Levels by lifetime points, ascending.
    pub levels: Vec<Level>,
    /// Points an inviter earns once the person they invited has stayed
    /// `invite_min_stay_hours` (0 = invite rewards off). Capped per day by
    /// `daily_caps.invite`; nothing is earned if the invitee leaves first.
    pub invite: i64,
    pub invite_min_stay_hours: u32,
    /// Points that expire (`[points.expiry]`, off by default).
    pub expiry: super::expiry::ExpiryDoc,
}

impl Default for PointsDoc {
    fn default() -> Self {
        Self {
            new_member: 10,
            daily_caps: BTreeMap::from([("checkin".to_string(), 100), ("invite".to_string(), 100)]),
            invite: 20,
            invite_min_stay_hours: 72,
            expiry: super::expiry::ExpiryDoc::default(),
            levels: vec![
                Level {
                    name: "新人".into(),
                    min_points: 0,
                },
                Level {
                    name: "活跃成员".into(),
                    min_points: 50,
                },
                Level {
                    name: "铁杆粉丝".into(),
                    min_points: 200,
                },
                Level {
                    name: "社群之星".into(),
                    min_points: 1000,
                },
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub name: String,
    pub min_points: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WelcomeDoc {
    pub enabled: bool,
    /// Joins within this many seconds are welcomed in one message.
    pub merge_window_secs: i64,
    /// Most people named in one welcome.
    pub max_mentions: usize,
    pub template: String,
    pub returning_template: String,
    /// Template by chat tag (first matching tag wins).
    pub by_tag: BTreeMap<String, String>,
    /// Template by join scene: "invited" or "qrcode".
    pub by_scene: BTreeMap<String, String>,
    /// 1:1 welcome to a newly added customer.
    pub customer_template: String,
    /// Joins within one merge window at or above this count switch the chat to raid mode.
    pub raid_joins: usize,
    /// Raid mode ends after this long without joins.
    pub raid_quiet_secs: i64,
    pub raid_template: String,
    /// Customer groups (客户群) take no bot posts: WeCom itself posts this
    /// group welcome material (入群欢迎语素材) when someone joins, once the
    /// owner picked it in the client. qunyun keeps it in WeCom
    /// (`group_welcome_template/add`, then `/edit`). May contain WeCom's
    /// `%NICKNAME%`; empty: qunyun keeps no material.
    pub group_material: String,
    /// The merged 1:1 app message to a customer group's owner listing the
    /// newcomers of a window, with a suggested personal welcome.
    pub owner_digest_template: String,
    /// The suggested welcome, which the owner can send as a mass message.
    pub owner_welcome_template: String,
}

/// Most bytes of group welcome material text (docs/wecom.md#group-welcome-templates).
pub const GROUP_MATERIAL_MAX_BYTES: usize = 3000;

impl Default for WelcomeDoc {
    fn default() -> Self {
        Self {
            enabled: true,
            merge_window_secs: 10,
            max_mentions: 10,
            template: "welcome".into(),
            returning_template: "welcome_returning".into(),
            by_tag: BTreeMap::from([("vip".to_string(), "welcome_vip".to_string())]),
            by_scene: BTreeMap::new(),
            customer_template: "welcome_customer".into(),
            raid_joins: 15,
            raid_quiet_secs: 300,
            raid_template: "raid_digest".into(),
            group_material: String::new(),
            owner_digest_template: "owner_digest".into(),
            owner_welcome_template: "owner_welcome".into(),
        }
    }
}

/// A tip sent some time after a first-time member joined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnboardingDoc {
    pub enabled: bool,
    pub delay_secs: i64,
    pub template: String,
}

impl Default for OnboardingDoc {
    fn default() -> Self {
        Self {
            enabled: true,
            delay_secs: 86_400,
            template: "onboarding_tip".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogItem {
    pub item: String,
    pub cost: i64,
    pub stock: i64,
    #[serde(default = "one")]
    pub per_person: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoReplyDoc {
    pub name: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub regex: Option<String>,
    /// Only in chats carrying one of these tags (empty: everywhere).
    #[serde(default)]
    pub tags: Vec<String>,
    pub template: String,
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: i64,
}

fn default_cooldown() -> i64 {
    300
}

/// One problem in a rule set: the exact field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rule set: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct RuleSetError(pub Vec<FieldError>);

/// A validated rule set, ready for `rules::evaluate`.
pub struct RuleSet {
    pub doc: RuleSetDoc,
    pub timezone: Tz,
    /// `[moderation]` compiled (term engine built once per rule-set version).
    pub moderation: std::sync::Arc<super::moderate::ModerationConfig>,
    autoreply_regexes: Vec<Option<Regex>>,
    templates: Environment<'static>,
    /// The kinds each used template is rendered as (its contracts).
    kinds_by_template: BTreeMap<String, Vec<TemplateKind>>,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("doc", &self.doc)
            .finish_non_exhaustive()
    }
}

impl RuleSet {
    /// Parses and validates a TOML rule set.
    pub fn from_toml(text: &str) -> Result<RuleSet, RuleSetError> {
        let deserializer = toml::Deserializer::new(text);
        let doc: RuleSetDoc = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = err.path().to_string();
            let path = if path == "." { String::new() } else { path };
            RuleSetError(vec![FieldError {
                path,
                reason: first_line(err.inner().message()),
            }])
        })?;
        RuleSet::from_doc(doc)
    }

    /// The community day `at` falls in: the rule set's timezone, with days
    /// starting at `[community] day_cutover_hour` local time.
    pub fn community_day(&self, at: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDate {
        super::checkin::community_day(at, self.timezone, self.doc.community.day_cutover_hour)
    }

    /// The tags `[[chat_tags]]` give a chat with this name and owner.
    pub fn chat_tags_for(&self, name: &str, owner: Option<&str>) -> Vec<String> {
        super::chat_tags::tags_for(&self.doc.chat_tags, name, owner)
    }

    /// The built-in defaults (what a fresh install runs).
    pub fn builtin() -> RuleSet {
        match RuleSet::from_doc(RuleSetDoc::default()) {
            Ok(rules) => rules,
            // The defaults are covered by a unit test; this cannot fail in a build that passed it.
            Err(err) => panic!("built-in rule set is invalid: {err}"),
        }
    }

    pub fn from_doc(doc: RuleSetDoc) -> Result<RuleSet, RuleSetError> {
        let mut errors = Vec::new();
        let mut push = |path: String, reason: &str| {
            errors.push(FieldError {
                path,
                reason: reason.to_string(),
            })
        };

        let timezone = match doc.community.timezone.parse::<Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                push("community.timezone".into(), "not an IANA timezone name");
                Tz::UTC
            }
        };
        if doc.community.day_cutover_hour > 23 {
            push(
                "community.day_cutover_hour".into(),
                "must be between 0 and 23",
            );
        }

        for (i, rule) in doc.chat_tags.iter().enumerate() {
            if let Some((field, reason)) = rule.problem() {
                push(format!("chat_tags[{i}].{field}"), reason);
            }
        }
        for (i, rule) in doc.member_tags.iter().enumerate() {
            if let Some((field, reason)) = rule.problem() {
                push(format!("member_tags[{i}].{field}"), reason);
            }
        }

        let checkin = &doc.checkin;
        if checkin.keywords.is_empty() {
            push("checkin.keywords".into(), "needs at least one keyword");
        }
        for (i, keyword) in checkin.keywords.iter().enumerate() {
            if keyword.trim().is_empty() {
                push(format!("checkin.keywords[{i}]"), "must not be empty");
            }
        }
        if checkin.base_points < 0 {
            push("checkin.base_points".into(), "must not be negative");
        }
        for (i, bonus) in checkin.streak_bonus.iter().enumerate() {
            if *bonus < 0 {
                push(format!("checkin.streak_bonus[{i}]"), "must not be negative");
            }
        }
        if checkin.streak_bonus_cap < 0 {
            push("checkin.streak_bonus_cap".into(), "must not be negative");
        }
        for (i, milestone) in checkin.milestones.iter().enumerate() {
            if milestone.days == 0 {
                push(
                    format!("checkin.milestones[{i}].days"),
                    "must be at least 1",
                );
            }
            if milestone.badge.trim().is_empty() {
                push(
                    format!("checkin.milestones[{i}].badge"),
                    "must not be empty",
                );
            }
            if milestone.points < 0 {
                push(
                    format!("checkin.milestones[{i}].points"),
                    "must not be negative",
                );
            }
        }
        if checkin.makeup_cost < 0 {
            push("checkin.makeup_cost".into(), "must not be negative");
        }
        if !(1..=31).contains(&checkin.makeup_window_days) {
            push(
                "checkin.makeup_window_days".into(),
                "must be between 1 and 31",
            );
        }

        if doc.points.new_member < 0 {
            push("points.new_member".into(), "must not be negative");
        }
        if doc.points.invite < 0 {
            push("points.invite".into(), "must not be negative");
        }
        if doc.points.invite > 0 && !(1..=24 * 90).contains(&doc.points.invite_min_stay_hours) {
            push(
                "points.invite_min_stay_hours".into(),
                "must be between 1 and 2160 hours when invite rewards are on",
            );
        }
        for (reason, cap) in &doc.points.daily_caps {
            if *cap < 0 {
                push(
                    format!("points.daily_caps.{reason}"),
                    "must not be negative",
                );
            }
        }
        if doc.points.levels.is_empty() {
            push("points.levels".into(), "needs at least one level");
        }
        for (i, pair) in doc.points.levels.windows(2).enumerate() {
            if pair[1].min_points <= pair[0].min_points {
                push(
                    format!("points.levels[{}].min_points", i + 1),
                    "levels must be in ascending order of min_points",
                );
            }
        }

        for problem in super::review::validate(&doc.moderation.review) {
            push(problem.path, &problem.reason);
        }
        for problem in super::expiry::validate(&doc.points.expiry) {
            push(problem.path, &problem.reason);
        }

        let welcome = &doc.welcome;
        if welcome.merge_window_secs < 0 {
            push("welcome.merge_window_secs".into(), "must not be negative");
        }
        if welcome.max_mentions == 0 {
            push("welcome.max_mentions".into(), "must be at least 1");
        }
        if welcome.raid_joins < 2 {
            push("welcome.raid_joins".into(), "must be at least 2");
        }
        if welcome.raid_quiet_secs < 0 {
            push("welcome.raid_quiet_secs".into(), "must not be negative");
        }
        for scene in welcome.by_scene.keys() {
            if scene != "invited" && scene != "qrcode" {
                push(
                    format!("welcome.by_scene.{scene}"),
                    "unknown join scene (expected \"invited\" or \"qrcode\")",
                );
            }
        }

        for problem in super::analytics::validate(&doc.lifecycle, &doc.alerts) {
            push(problem.path, &problem.reason);
        }

        if doc.welcome.group_material.len() > GROUP_MATERIAL_MAX_BYTES {
            push(
                "welcome.group_material".into(),
                &format!("longer than WeCom's {GROUP_MATERIAL_MAX_BYTES} bytes"),
            );
        }

        for (path, reason) in super::honour::validate(&doc.honour, &doc.ugc) {
            push(path, &reason);
        }

        if doc.onboarding.delay_secs < 0 {
            push("onboarding.delay_secs".into(), "must not be negative");
        }

        let mut seen_items = std::collections::BTreeSet::new();
        for (i, item) in doc.catalog.iter().enumerate() {
            if item.item.trim().is_empty() {
                push(format!("catalog[{i}].item"), "must not be empty");
            }
            if !seen_items.insert(item.item.clone()) {
                push(format!("catalog[{i}].item"), "duplicate item name");
            }
            if item.cost <= 0 {
                push(format!("catalog[{i}].cost"), "must be positive");
            }
            if item.stock < 0 {
                push(format!("catalog[{i}].stock"), "must not be negative");
            }
            if item.per_person == 0 {
                push(format!("catalog[{i}].per_person"), "must be at least 1");
            }
        }

        let mut autoreply_regexes = Vec::new();
        for (i, rule) in doc.autoreply.iter().enumerate() {
            if rule.name.trim().is_empty() {
                push(format!("autoreply[{i}].name"), "must not be empty");
            }
            if rule.keywords.is_empty() && rule.regex.is_none() {
                push(format!("autoreply[{i}]"), "needs keywords or a regex");
            }
            for (k, keyword) in rule.keywords.iter().enumerate() {
                if keyword.trim().is_empty() {
                    push(format!("autoreply[{i}].keywords[{k}]"), "must not be empty");
                }
            }
            if rule.cooldown_secs < 0 {
                push(
                    format!("autoreply[{i}].cooldown_secs"),
                    "must not be negative",
                );
            }
            let compiled = match &rule.regex {
                None => None,
                Some(pattern) => match Regex::new(pattern) {
                    Ok(regex) => Some(regex),
                    Err(err) => {
                        push(
                            format!("autoreply[{i}].regex"),
                            &format!("bad regex: {}", first_line(&err.to_string())),
                        );
                        None
                    }
                },
            };
            autoreply_regexes.push(compiled);
        }

        // Templates: built-ins, then the document's own.
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut sources: BTreeMap<String, String> = BUILTIN_TEMPLATES
            .iter()
            .map(|(name, body)| (name.to_string(), body.to_string()))
            .collect();
        sources.extend(doc.templates.clone());
        for (name, body) in sources {
            let path = if doc.templates.contains_key(&name) {
                format!("templates.{name}")
            } else {
                format!("builtin template {name}")
            };
            if let Err(err) = env.add_template_owned(name, body) {
                push(
                    path,
                    &format!("bad template: {}", first_line(&err.to_string())),
                );
            }
        }
        // Every template a kind uses, checked against that kind's contract.
        let uses = template_uses(&doc);
        let mut kinds_by_template: BTreeMap<String, Vec<TemplateKind>> = BTreeMap::new();
        for (path, name, kind) in &uses {
            let path = match path {
                Some(path) => path.clone(),
                None if doc.templates.contains_key(name) => format!("templates.{name}"),
                None => format!("builtin template {name}"),
            };
            if let Err(reason) = templates::check(&env, name, *kind) {
                push(path, &reason);
            }
            let kinds = kinds_by_template.entry(name.clone()).or_default();
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
        }
        // A template no kind uses is only parsed (above): it is sent to nobody.

        // Paths like `schedules[1].cron`; the schedule module reports every problem.
        if let Err(schedule_errors) = crate::rules::schedule::validate_all(&doc.schedules, timezone)
        {
            for error in schedule_errors {
                push(error.path, &error.message);
            }
        }

        let moderation = match super::moderate::ModerationConfig::from_doc(&doc.moderation) {
            Ok(config) => Some(std::sync::Arc::new(config)),
            Err(problems) => {
                errors.extend(problems);
                None
            }
        };

        let (Some(moderation), true) = (moderation, errors.is_empty()) else {
            return Err(RuleSetError(errors));
        };
        Ok(RuleSet {
            doc,
            timezone,
            moderation,
            autoreply_regexes,
            templates: env,
            kinds_by_template,
        })
    }

    /// The document as TOML (for `rules export`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.doc).unwrap_or_default()
    }

    /// Renders a template with its kind's variables. Validation rendered every
    /// used template with exactly these variables, so a failure here is a
    /// template used as a kind it was not checked for: fall back to a neutral
    /// text rather than failing the event.
    pub fn render<V: TemplateVars>(&self, name: &str, vars: &V) -> String {
        match self
            .templates
            .get_template(name)
            .and_then(|template| template.render(vars))
        {
            Ok(text) => text.trim().to_string(),
            Err(err) => {
                tracing::warn!(template = name, kind = V::KIND.label(), error = %err, "template did not render");
                "（消息模板出错，请联系管理员）".to_string()
            }
        }
    }

    /// The kinds a template is used as (empty: used by nothing).
    pub fn template_kinds(&self, name: &str) -> &[TemplateKind] {
        self.kinds_by_template
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// A template rendered with its first kind's sample values (previews).
    pub fn render_sample(&self, name: &str) -> Option<String> {
        let kind = self.template_kinds(name).first()?;
        let template = self.templates.get_template(name).ok()?;
        template
            .render(kind.sample_context())
            .ok()
            .map(|text| text.trim().to_string())
    }

    pub fn has_template(&self, name: &str) -> bool {
        self.templates.get_template(name).is_ok()
    }

    pub(crate) fn autoreply_regex(&self, index: usize) -> Option<&Regex> {
        self.autoreply_regexes.get(index).and_then(Option::as_ref)
    }
}

/// Where each template is used and as which kind: `(path, template, kind)`;
/// the path is the rule-set field naming it (None for fixed-name templates).
fn template_uses(doc: &RuleSetDoc) -> Vec<(Option<String>, String, TemplateKind)> {
    let welcome = &doc.welcome;
    let mut uses: Vec<(Option<String>, String, TemplateKind)> = vec![
        (
            "welcome.template".into(),
            &welcome.template,
            TemplateKind::Welcome,
        ),
        (
            "welcome.returning_template".into(),
            &welcome.returning_template,
            TemplateKind::Welcome,
        ),
        (
            "welcome.customer_template".into(),
            &welcome.customer_template,
            TemplateKind::CustomerWelcome,
        ),
        (
            "welcome.raid_template".into(),
            &welcome.raid_template,
            TemplateKind::RaidDigest,
        ),
        (
            "welcome.owner_digest_template".into(),
            &welcome.owner_digest_template,
            TemplateKind::OwnerDigest,
        ),
        (
            "welcome.owner_welcome_template".into(),
            &welcome.owner_welcome_template,
            TemplateKind::OwnerWelcome,
        ),
        (
            "onboarding.template".into(),
            &doc.onboarding.template,
            TemplateKind::Onboarding,
        ),
        (
            "lifecycle.nudge_template".into(),
            &doc.lifecycle.nudge_template,
            TemplateKind::Nudge,
        ),
    ]
    .into_iter()
    .map(|(path, name, kind): (String, &String, TemplateKind)| (Some(path), name.clone(), kind))
    .collect();
    for (tag, template) in &welcome.by_tag {
        uses.push((
            Some(format!("welcome.by_tag.{tag}")),
            template.clone(),
            TemplateKind::Welcome,
        ));
    }
    for (scene, template) in &welcome.by_scene {
        uses.push((
            Some(format!("welcome.by_scene.{scene}")),
            template.clone(),
            TemplateKind::Welcome,
        ));
    }
    for (i, rule) in doc.autoreply.iter().enumerate() {
        uses.push((
            Some(format!("autoreply[{i}].template")),
            rule.template.clone(),
            TemplateKind::Faq,
        ));
    }
    for (name, kind) in templates::FIXED {
        uses.push((None, name.to_string(), *kind));
    }
    uses
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str) -> Vec<String> {
        match RuleSet::from_toml(text) {
            Ok(_) => Vec::new(),
            Err(RuleSetError(errors)) => errors.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn builtin_rule_set_is_valid() {
        let rules = RuleSet::builtin();
        assert_eq!(rules.doc.checkin.keywords, vec!["签到", "打卡"]);
    }

    #[test]
    fn empty_document_means_defaults() {
        let rules = RuleSet::from_toml("").unwrap();
        assert_eq!(rules.doc, RuleSetDoc::default());
    }

    #[test]
    fn empty_keyword_is_named_by_index() {
        let errors = paths("[checkin]\nkeywords = [\"\", \"签到\"]\n");
        assert_eq!(errors, vec!["checkin.keywords[0]: must not be empty"]);
    }

    #[test]
    fn unknown_key_names_its_table() {
        let errors = paths("[checkin]\nkeywordz = [\"签到\"]\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("unknown field `keywordz`"), "{errors:?}");
    }

    #[test]
    fn bad_regex_missing_template_and_negative_points_are_all_reported() {
        let errors = paths(
            r#"
            [points]
            new_member = -5
            [[autoreply]]
            name = "broken"
            regex = "(unclosed"
            template = "nope"
            "#,
        );
        assert!(errors
            .iter()
            .any(|e| e.starts_with("points.new_member: must not be negative")));
        assert!(errors
            .iter()
            .any(|e| e.starts_with("autoreply[0].regex: bad regex")));
        assert!(errors
            .iter()
            .any(|e| e == "autoreply[0].template: missing template \"nope\""));
    }

    #[test]
    fn missing_onboarding_template_is_named() {
        let errors = paths("[onboarding]\ntemplate = \"nope\"\n");
        assert_eq!(
            errors,
            vec!["onboarding.template: missing template \"nope\""]
        );
    }

    #[test]
    fn template_with_unknown_variable_is_refused() {
        let errors = paths("[templates]\nwelcome = \"hi {{ nmae }}\"\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(
                "welcome.template: template \"welcome\" (welcome template) uses {{ nmae }}"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn every_kind_refuses_a_variable_outside_its_contract() {
        // A welcome has no balance; a check-in reply has no inviter.
        let errors = paths("[templates]\nwelcome = \"你有 {{ balance }} 积分\"\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("{{ balance }}"), "{errors:?}");
        assert!(
            errors[0].contains(
                "available: names, name, count, group_name, member_count, ordinal, points, inviter"
            ),
            "{errors:?}"
        );
        let errors = paths("[templates]\ncheckin_ok = \"{{ inviter }}\"\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("templates.checkin_ok: template \"checkin_ok\" (check-in ok template) uses {{ inviter }}"), "{errors:?}");
        // A template used as two kinds must fit both.
        let errors =
            paths("[[autoreply]]\nname = \"x\"\nkeywords = [\"x\"]\ntemplate = \"rank\"\n");
        assert!(
            errors
                .iter()
                .any(|e| e
                    .starts_with("autoreply[0].template: template \"rank\" (FAQ reply template)")),
            "{errors:?}"
        );
    }

    #[test]
    fn every_builtin_template_renders_with_its_samples() {
        let rules = RuleSet::builtin();
        for (name, _) in BUILTIN_TEMPLATES {
            if let Some(text) = rules.render_sample(name) {
                assert!(!text.contains("出错"), "{name}: {text}");
            }
        }
        assert!(rules.render_sample("welcome").unwrap().contains("小张"));
    }

    #[test]
    fn bad_timezone_and_cutover_are_refused() {
        let errors = paths("[community]\ntimezone = \"Mars/Olympus\"\nday_cutover_hour = 24\n");
        assert_eq!(
            errors,
            vec![
                "community.timezone: not an IANA timezone name",
                "community.day_cutover_hour: must be between 0 and 23"
            ]
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let errors = paths("[checkin]\nbase_points = \"five\"\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("checkin.base_points:"), "{errors:?}");
    }

    #[test]
    fn export_then_import_round_trips() {
        let rules = RuleSet::from_toml(include_str!("../../rules.example.toml")).unwrap();
        let again = RuleSet::from_toml(&rules.to_toml()).unwrap();
        assert_eq!(rules.doc, again.doc);
    }
}
