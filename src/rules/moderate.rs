//! Moderation policy: a posted message (or a member's report) → actions.
//! Pure: the text engine ([`super::moderation`]) finds hits, the strike
//! ladder decides sanctions, and this module turns them into what each
//! route allows (warn in the chat, remove through appchat/update only in
//! chats the app owns, otherwise a task for the group owner/admins).
//!
//! Configured in the rule set's `[moderation]` table ([`ModerationDoc`]); the
//! engine is compiled once per rule-set version ([`ModerationConfig::from_doc`])
//! and cached with the [`RuleSet`], never per message.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::actions::{Action, OutRoute, Outbound};
use super::event::{Event, MessagePosted, MessageReported, ReplyVia};
use super::moderation::{
    is_flooding, is_repeated_across_chats, CrossChatRule, Engine, EscalationPolicy, FamilySet,
    FloodRule, FuzzyPolicy, Hit, MatchOptions, NewMemberRule, RecentPost, RegexRuleSpec,
    RegexRules, RegexTarget, Rung, Sanction, Severity, Strike, TermList, TextFingerprint, Verdict,
};
use super::route::{removal_for, Removal};
use super::ruleset::FieldError;
use super::{ChatAddress, Content, MessageContext, MessageKind, RuleSet, Snapshot};

/// `[moderation]` as a manager writes it. Off until `enabled = true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModerationDoc {
    pub enabled: bool,
    /// Banned terms in the term-file format (see `rules::moderation`).
    pub terms: String,
    /// Allow-list in the same format.
    pub allow: String,
    pub regex: Vec<RegexRuleDoc>,
    /// Decide and record, act on nothing (everywhere).
    pub dry_run: bool,
    /// Dry-run only in these chats.
    pub dry_run_chats: Vec<String>,
    /// Members never moderated (besides each chat's owner and admins).
    pub exempt: Vec<String>,
    /// Managers told about escalations and reviews (app message). Empty: the
    /// chat's owner and admins. With nobody known the task is still opened,
    /// flagged "nobody notified" in the log and the console's task list.
    pub managers: Vec<String>,
    /// Categories that are only recorded, never struck.
    pub log_only: Vec<String>,
    /// Strikes older than this no longer count.
    pub strike_window_days: i64,
    pub ladder: Vec<RungDoc>,
    /// A hit of at least this severity removes at once ("" = never).
    pub remove_at_once: String,
    /// Flooding: more than `flood_messages` in `flood_window_secs` (0 = off).
    pub flood_messages: u32,
    pub flood_window_secs: i64,
    /// The same text in at least this many chats within the window (0 = off).
    pub cross_chat_min: u32,
    pub cross_chat_window_secs: i64,
    /// New members: their first N messages (and first `new_member_trusted_secs`)
    /// may not contain these categories (0 = off).
    pub new_member_messages: u32,
    pub new_member_trusted_secs: i64,
    pub new_member_categories: Vec<String>,
    /// Distinct reporters of one message that send it to review.
    pub report_threshold: u32,
    /// Most reports one member may file per hour.
    pub reports_per_hour: u32,
    /// What a fuzzy term hit (pinyin, homophone, number, leet, shape,
    /// doubled, look-alike) leads to: "block" (like an exact hit), "review"
    /// (a task for a person, no strike) or "ignore".
    pub fuzzy: String,
    /// The variant families matched at all: "all", "exact", a list
    /// ("pinyin,number") or exclusions ("-homophone"). Terms can narrow
    /// this further (see `docs/moderation.md`).
    pub families: String,
    /// Review in tiers: SLAs, the owner tier, the appeal word.
    pub review: super::review::ReviewDoc,
}

impl Default for ModerationDoc {
    fn default() -> Self {
        Self {
            enabled: false,
            terms: String::new(),
            allow: String::new(),
            regex: Vec::new(),
            dry_run: false,
            dry_run_chats: Vec::new(),
            exempt: Vec::new(),
            managers: Vec::new(),
            log_only: Vec::new(),
            strike_window_days: 7,
            ladder: vec![
                RungDoc {
                    strikes: 1,
                    actions: vec!["warn".into()],
                },
                RungDoc {
                    strikes: 2,
                    actions: vec!["warn".into(), "notify".into()],
                },
                RungDoc {
                    strikes: 3,
                    actions: vec!["remove".into(), "notify".into()],
                },
            ],
            remove_at_once: String::new(),
            flood_messages: 0,
            flood_window_secs: 10,
            cross_chat_min: 0,
            cross_chat_window_secs: 600,
            new_member_messages: 0,
            new_member_trusted_secs: 86_400,
            new_member_categories: vec!["link".into()],
            report_threshold: 3,
            reports_per_hour: 5,
            fuzzy: "block".into(),
            families: "all".into(),
            review: super::review::ReviewDoc::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRuleDoc {
    pub name: String,
    pub pattern: String,
    pub category: String,
    #[serde(default = "medium")]
    pub severity: String,
    /// "original" (default) or "folded".
    #[serde(default)]
    pub target: String,
}

fn medium() -> String {
    "medium".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungDoc {
    pub strikes: u32,
    /// "warn", "notify", "remove".
    pub actions: Vec<String>,
}

/// `[moderation]` compiled: the engine is built here, once per rule-set version.
#[derive(Debug)]
pub struct ModerationConfig {
    pub enabled: bool,
    pub engine: Engine,
    pub policy: EscalationPolicy,
    pub strike_window: Duration,
    pub flood: Option<FloodRule>,
    pub cross_chat: Option<CrossChatRule>,
    /// `CrossChatRule` keeps its window private; the pipeline needs it to load history.
    pub cross_chat_window: Option<Duration>,
    pub new_member: Option<NewMemberRule>,
    pub dry_run: bool,
    pub dry_run_chats: BTreeSet<String>,
    pub exempt: BTreeSet<String>,
    pub managers: Vec<String>,
    pub log_only: BTreeSet<String>,
    pub report_threshold: u32,
    pub reports_per_hour: u32,
    pub fuzzy_policy: FuzzyPolicy,
}

impl ModerationConfig {
    /// Validates and compiles; every problem names its field.
    pub fn from_doc(doc: &ModerationDoc) -> Result<ModerationConfig, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut push = |path: String, reason: String| errors.push(FieldError { path, reason });
        let terms = TermList::parse(&doc.terms).unwrap_or_else(|err| {
            push("moderation.terms".into(), err.to_string());
            TermList::default()
        });
        let allow = TermList::parse(&doc.allow).unwrap_or_else(|err| {
            push("moderation.allow".into(), err.to_string());
            TermList::default()
        });
        let mut specs = Vec::new();
        for (i, rule) in doc.regex.iter().enumerate() {
            let severity = rule.severity.parse::<Severity>().unwrap_or_else(|_| {
                push(
                    format!("moderation.regex[{i}].severity"),
                    "expected low, medium or high".into(),
                );
                Severity::Medium
            });
            let target = match rule.target.as_str() {
                "" | "original" => RegexTarget::Original,
                "folded" => RegexTarget::Folded,
                _ => {
                    push(
                        format!("moderation.regex[{i}].target"),
                        "expected \"original\" or \"folded\"".into(),
                    );
                    RegexTarget::Original
                }
            };
            specs.push(RegexRuleSpec::new(
                &rule.name,
                &rule.pattern,
                &rule.category,
                severity,
                target,
            ));
        }
        let regex_rules = RegexRules::compile(&specs).unwrap_or_else(|errs| {
            for err in errs {
                push(format!("moderation.regex[{}]", err.index), err.to_string());
            }
            RegexRules::default()
        });
        let fuzzy_policy = doc.fuzzy.parse::<FuzzyPolicy>().unwrap_or_else(|err| {
            push("moderation.fuzzy".into(), err.to_string());
            FuzzyPolicy::Block
        });
        let families = FamilySet::parse(&doc.families).unwrap_or_else(|err| {
            push("moderation.families".into(), err.to_string());
            FamilySet::ALL
        });
        let options = MatchOptions {
            families,
            ..MatchOptions::default()
        };
        let engine = match Engine::build(&terms, &allow, options) {
            Ok(engine) => Some(engine.with_regex_rules(regex_rules)),
            Err(err) => {
                push("moderation.terms".into(), err.to_string());
                None
            }
        };

        let mut rungs = Vec::new();
        for (i, rung) in doc.ladder.iter().enumerate() {
            let mut sanctions = Vec::new();
            for (k, action) in rung.actions.iter().enumerate() {
                match action.as_str() {
                    "warn" => sanctions.push(Sanction::Warn),
                    "notify" => sanctions.push(Sanction::NotifyManager),
                    "remove" => sanctions.push(Sanction::Remove),
                    "log" => sanctions.push(Sanction::Record),
                    _ => push(
                        format!("moderation.ladder[{i}].actions[{k}]"),
                        "expected log, warn, notify or remove".into(),
                    ),
                }
            }
            rungs.push(Rung {
                strikes: rung.strikes,
                sanctions,
            });
        }
        let remove_at_once = match doc.remove_at_once.as_str() {
            "" => None,
            text => match text.parse::<Severity>() {
                Ok(severity) => Some(severity),
                Err(_) => {
                    push(
                        "moderation.remove_at_once".into(),
                        "expected \"\", low, medium or high".into(),
                    );
                    None
                }
            },
        };
        let strike_window = Duration::days(doc.strike_window_days);
        let policy = EscalationPolicy::new(strike_window, rungs, remove_at_once)
            .map_err(|err| push("moderation.ladder".into(), err.to_string()))
            .ok();

        let flood = (doc.flood_messages > 0)
            .then(|| FloodRule::new(doc.flood_messages, Duration::seconds(doc.flood_window_secs)))
            .transpose()
            .unwrap_or_else(|err| {
                push("moderation.flood_window_secs".into(), err.to_string());
                None
            });
        let cross_chat = (doc.cross_chat_min > 0)
            .then(|| {
                CrossChatRule::new(
                    doc.cross_chat_min,
                    Duration::seconds(doc.cross_chat_window_secs),
                )
            })
            .transpose()
            .unwrap_or_else(|err| {
                push("moderation.cross_chat_window_secs".into(), err.to_string());
                None
            });
        if doc.new_member_trusted_secs < 0 {
            push(
                "moderation.new_member_trusted_secs".into(),
                "must not be negative".into(),
            );
        }
        let new_member = (doc.new_member_messages > 0).then(|| NewMemberRule {
            first_messages: doc.new_member_messages,
            trusted_after: Duration::seconds(doc.new_member_trusted_secs.max(0)),
            restricted_categories: doc.new_member_categories.clone(),
        });
        if doc.report_threshold == 0 {
            push(
                "moderation.report_threshold".into(),
                "must be at least 1".into(),
            );
        }

        match (engine, policy) {
            (Some(engine), Some(policy)) if errors.is_empty() => Ok(ModerationConfig {
                enabled: doc.enabled,
                engine,
                policy,
                strike_window,
                flood,
                cross_chat,
                cross_chat_window: cross_chat
                    .is_some()
                    .then(|| Duration::seconds(doc.cross_chat_window_secs)),
                new_member,
                dry_run: doc.dry_run,
                dry_run_chats: doc.dry_run_chats.iter().cloned().collect(),
                exempt: doc.exempt.iter().cloned().collect(),
                managers: doc.managers.clone(),
                log_only: doc.log_only.iter().cloned().collect(),
                report_threshold: doc.report_threshold,
                reports_per_hour: doc.reports_per_hour,
                fuzzy_policy,
            }),
            _ => Err(errors),
        }
    }

    /// The longest look-back any behavioural rule needs (what the pipeline loads).
    pub fn history_window(&self) -> Duration {
        let flood = self.flood.map(|rule| rule.window()).unwrap_or_default();
        let cross = self.cross_chat_window.unwrap_or_default();
        flood.max(cross)
    }
}

/// What the pipeline loads for moderation (only when it is enabled).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModerationSnapshot {
    /// The sender's recent posts in any chat (`""` = 1:1), newest last.
    pub recent_posts: Vec<StoredPost>,
    /// The sender's strikes inside the window, not revoked.
    pub active_strikes: Vec<StoredStrike>,
    /// When the sender joined this chat (None: unknown, e.g. 1:1).
    pub joined_at: Option<DateTime<Utc>>,
    /// The sender's earlier posts in this chat, counted up to the new-member
    /// limit (all time, not just the history window).
    pub posts_in_chat: u32,
    /// Reports: this reporter's reports in the last hour.
    pub reporter_reports_last_hour: u32,
    /// Reports: distinct reporters of this text in this chat, before this one.
    pub earlier_reporters: Vec<String>,
    /// Reports: the author of the quoted text (latest post with its fingerprint).
    pub reported_author: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPost {
    pub chat_id: String,
    pub at: DateTime<Utc>,
    pub fingerprint: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStrike {
    pub at: DateTime<Utc>,
    pub severity: Severity,
}

/// One audit-log entry, with what follows from it (strike, owner task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModerationRecord {
    /// The event it came from: one decision per event.
    pub event_id: String,
    pub at: DateTime<Utc>,
    pub chat_id: Option<String>,
    pub user_id: String,
    /// `term`, `regex:NAME`, `flood`, `cross_chat`, `new_member`, `report`.
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    /// The matched text as written (empty for behavioural rules).
    pub matched: String,
    /// A short excerpt around the match, for the reviewer.
    pub excerpt: String,
    /// What was done, e.g. `warn,strike` or `dry_run: would warn,strike`.
    pub action_taken: String,
    pub dry_run: bool,
    /// Add a strike to the member's record.
    pub strike: bool,
    /// Track a task for the chat's owner/admins (removal they must do, or review).
    pub task: Option<OwnerTask>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerTask {
    pub kind: TaskKind,
    pub assignees: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Remove the member: qunyun cannot (not an app-created chat).
    Remove,
    /// Look at a reported message.
    Review,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Remove => "remove",
            TaskKind::Review => "review",
        }
    }
}

/// The fingerprint of a text as stored (None for texts too short to compare).
pub fn stored_fingerprint(config: &ModerationConfig, text: &str) -> Option<i64> {
    config
        .engine
        .fingerprint(text)
        .map(|TextFingerprint(hash)| i64::from_ne_bytes(hash.to_ne_bytes()))
}

/// A violation found in one message, before sanctions.
struct Violation {
    /// A fuzzy hit under the `review` policy: a task for a person, no strike.
    review: bool,
    rule: String,
    category: String,
    severity: Severity,
    matched: String,
    excerpt: String,
}

/// Moderates a posted message. Returns the actions (always `RecordPost` when
/// moderation is on) and whether the message was a violation (then the
/// caller runs no commands or auto-replies for it).
pub fn on_message(cx: &MessageContext) -> (Vec<Action>, bool) {
    let config = &cx.rules.moderation;
    if !config.enabled {
        return (Vec::new(), false);
    }
    let fingerprint = stored_fingerprint(config, &cx.message.text);
    let mut actions = vec![Action::RecordPost {
        chat_id: cx.message.chat_id.clone(),
        user_id: cx.message.sender.clone(),
        at: cx.now,
        fingerprint,
    }];
    if is_exempt(config, cx.snapshot, &cx.message.sender) {
        return (actions, false);
    }
    let Some(violation) = find_violation(
        config,
        &cx.snapshot.moderation,
        cx.message,
        fingerprint,
        cx.now,
    ) else {
        return (actions, false);
    };
    actions.extend(sanction(
        cx.rules,
        cx.snapshot,
        cx.event,
        cx.message,
        violation,
        cx.now,
    ));
    (actions, true)
}

fn is_exempt(config: &ModerationConfig, snapshot: &Snapshot, user_id: &str) -> bool {
    config.exempt.contains(user_id)
        || snapshot.chat.as_ref().is_some_and(|chat| {
            chat.owner.as_deref() == Some(user_id) || chat.admins.iter().any(|a| a == user_id)
        })
}

fn find_violation(
    config: &ModerationConfig,
    history: &ModerationSnapshot,
    message: &MessagePosted,
    fingerprint: Option<i64>,
    now: DateTime<Utc>,
) -> Option<Violation> {
    let chat_key = message.chat_id.clone().unwrap_or_default();
    let hits = config.engine.scan(&message.text);
    let is_new = match (&config.new_member, message.chat_id.is_some()) {
        (Some(rule), true) => {
            let joined = history.joined_at.unwrap_or(now);
            rule.is_new(history.posts_in_chat, joined, now)
        }
        _ => false,
    };
    // Categories reserved for new members are tolerated from trusted ones.
    let restricted: BTreeSet<&str> = config
        .new_member
        .as_ref()
        .map(|rule| {
            rule.restricted_categories
                .iter()
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default();
    // Exact hits block; fuzzy ones as the policy says. A blocking hit wins
    // over one for review, then the more severe, then the earlier.
    let decide = |hit: &Hit| Verdict::of(hit.family, config.fuzzy_policy);
    let worst = hits
        .iter()
        .filter(|hit| decide(hit) != Verdict::Pass)
        .filter(|hit| is_new || !restricted.contains(&*hit.category))
        .max_by_key(|hit| (decide(hit), hit.severity, std::cmp::Reverse(hit.span.start)));
    if let Some(hit) = worst {
        let rule = if is_new && restricted.contains(&*hit.category) {
            "new_member".to_string()
        } else {
            match hit.source {
                super::moderation::HitSource::Term(_) if hit.family.is_fuzzy() => {
                    format!("term:{}", hit.family)
                }
                super::moderation::HitSource::Term(_) => "term".to_string(),
                super::moderation::HitSource::Regex(_) => {
                    format!("regex:{}", config.engine.describe(hit.source))
                }
            }
        };
        return Some(Violation {
            review: decide(hit) == Verdict::Review,
            rule,
            category: hit.category.to_string(),
            severity: hit.severity,
            matched: message.text[hit.span.clone()].to_string(),
            excerpt: excerpt(&message.text, hit),
        });
    }
    let same_chat_times: Vec<DateTime<Utc>> = history
        .recent_posts
        .iter()
        .filter(|post| post.chat_id == chat_key)
        .map(|post| post.at)
        .collect();
    if let Some(rule) = &config.flood {
        if message.chat_id.is_some() && is_flooding(&same_chat_times, now, rule) {
            return Some(behaviour_violation("flood", Severity::Low, &message.text));
        }
    }
    if let (Some(rule), Some(chat)) = (&config.cross_chat, &message.chat_id) {
        let posts: Vec<RecentPost<String>> = history
            .recent_posts
            .iter()
            .filter(|post| !post.chat_id.is_empty())
            .filter_map(|post| {
                post.fingerprint.map(|hash| RecentPost {
                    chat: post.chat_id.clone(),
                    at: post.at,
                    fingerprint: TextFingerprint(u64::from_ne_bytes(hash.to_ne_bytes())),
                })
            })
            .collect();
        let current =
            fingerprint.map(|hash| TextFingerprint(u64::from_ne_bytes(hash.to_ne_bytes())));
        if is_repeated_across_chats(&posts, chat, current, now, rule) {
            return Some(behaviour_violation(
                "cross_chat",
                Severity::Medium,
                &message.text,
            ));
        }
    }
    None
}

fn behaviour_violation(rule: &str, severity: Severity, text: &str) -> Violation {
    Violation {
        review: false,
        rule: rule.to_string(),
        category: rule.to_string(),
        severity,
        matched: String::new(),
        excerpt: truncate_chars(text, 40),
    }
}

/// The match with up to ten characters either side.
fn excerpt(text: &str, hit: &Hit) -> String {
    let before: String = {
        let chars: Vec<char> = text[..hit.span.start].chars().rev().take(10).collect();
        chars.into_iter().rev().collect()
    };
    let after: String = text[hit.span.end..].chars().take(10).collect();
    format!("{before}{}{after}", &text[hit.span.clone()])
}

fn truncate_chars(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

fn in_dry_run(config: &ModerationConfig, chat_id: Option<&str>) -> bool {
    config.dry_run || chat_id.is_some_and(|chat| config.dry_run_chats.contains(chat))
}

/// The owner and admins of the chat, else the configured managers.
fn owners_or_managers(config: &ModerationConfig, snapshot: &Snapshot) -> Vec<String> {
    let mut people: Vec<String> = snapshot
        .chat
        .as_ref()
        .map(|chat| {
            chat.owner
                .iter()
                .chain(chat.admins.iter())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if people.is_empty() {
        people = config.managers.clone();
    }
    people.dedup();
    people
}

fn managers_or_owners(config: &ModerationConfig, snapshot: &Snapshot) -> Vec<String> {
    if config.managers.is_empty() {
        owners_or_managers(config, snapshot)
    } else {
        config.managers.clone()
    }
}

fn sanction(
    rules: &RuleSet,
    snapshot: &Snapshot,
    event: &Event,
    message: &MessagePosted,
    violation: Violation,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let config = &rules.moderation;
    if violation.review {
        return review(rules, snapshot, event, message, violation, now);
    }
    let log_only = config.log_only.contains(&violation.category);
    let sanctions = if log_only {
        vec![Sanction::Record]
    } else {
        let strikes: Vec<Strike> = snapshot
            .moderation
            .active_strikes
            .iter()
            .map(|s| Strike {
                at: s.at,
                severity: s.severity,
            })
            .collect();
        config
            .policy
            .decide(&strikes, violation.severity, now)
            .sanctions
    };
    let chat_name = snapshot
        .chat
        .as_ref()
        .map(|chat| chat.name.clone())
        .unwrap_or_default();
    let member = snapshot.person(&message.sender).display_name();
    let reason = format!(
        "{}（{}）",
        category_label(&violation.category),
        violation.rule
    );
    let mut taken: Vec<&str> = Vec::new();
    let mut sends = Vec::new();
    let mut task = None;
    let app = rules.doc.community.app.clone();
    for sanction in &sanctions {
        match sanction {
            Sanction::Record => {}
            Sanction::Warn => {
                taken.push("warn");
                let text = format!("@{member} 请注意群规：消息涉及{reason}，已记录一次警告。");
                let key = format!("moderation:warn:{}", event.id);
                let warn = match &message.reply_via {
                    ReplyVia::ResponseUrl(url) => Outbound {
                        idempotency_key: key,
                        route: OutRoute::SmartBotResponse {
                            response_url: url.clone(),
                        },
                        content: Content::text_mentioning(text, vec![message.sender.clone()]),
                        not_before: None,
                        skipped: None,
                    },
                    ReplyVia::AppMessage { app } => Outbound {
                        idempotency_key: key,
                        route: OutRoute::Member {
                            app: app.clone(),
                            user_ids: vec![message.sender.clone()],
                        },
                        content: Content::text(text),
                        not_before: None,
                        skipped: None,
                    },
                    ReplyVia::ChatRoute => Outbound::to_chat(
                        key,
                        ChatAddress::of(
                            snapshot.chat.as_ref(),
                            message.chat_id.as_deref().unwrap_or_default(),
                        ),
                        MessageKind::ModerationWarning,
                        Content::text_mentioning(text, vec![message.sender.clone()]),
                    ),
                };
                sends.push(warn);
            }
            Sanction::NotifyManager => {
                taken.push("notify");
                let to = managers_or_owners(config, snapshot);
                if to.is_empty() {
                    taken.push(NOBODY_NOTIFIED);
                } else {
                    sends.push(Outbound {
                        idempotency_key: format!("moderation:notify:{}", event.id),
                        route: OutRoute::Member {
                            app: app.clone(),
                            user_ids: to,
                        },
                        content: Content::text(format!(
                            "【群管理】{member}（{}）在「{chat_name}」违规：{reason}，摘录：{}",
                            message.sender, violation.excerpt
                        )),
                        not_before: None,
                        skipped: None,
                    });
                }
            }
            Sanction::Remove => match (snapshot.chat.as_ref(), &message.chat_id) {
                (Some(chat), Some(chat_id))
                    if removal_for(Some(&chat.route)) == Removal::AppChat =>
                {
                    taken.push("remove");
                    sends.push(Outbound {
                        idempotency_key: format!("moderation:remove:{}", event.id),
                        route: OutRoute::AppChatRemove {
                            chat_id: chat_id.clone(),
                            user_id: message.sender.clone(),
                        },
                        content: Content::text(reason.clone()),
                        not_before: None,
                        skipped: None,
                    });
                }
                (_, Some(_)) => {
                    taken.push("remove_task");
                    let assignees = owners_or_managers(config, snapshot);
                    if assignees.is_empty() {
                        taken.push(NOBODY_NOTIFIED);
                    } else {
                        sends.push(Outbound {
                            idempotency_key: format!("moderation:task:{}", event.id),
                            route: OutRoute::Member {
                                app: app.clone(),
                                user_ids: assignees.clone(),
                            },
                            content: Content::text(format!(
                                "【待办】请将 {member}（{}）移出「{chat_name}」：{reason}，证据：{}。\
                                 处理后请标记完成。",
                                message.sender, violation.excerpt
                            )),
                            not_before: None,
                            skipped: None,
                        });
                    }
                    task = Some(OwnerTask {
                        kind: TaskKind::Remove,
                        assignees,
                    });
                }
                // A 1:1 message: there is no chat to remove anyone from.
                (_, None) => {}
            },
        }
    }
    let strike = !log_only;
    let dry_run = in_dry_run(config, message.chat_id.as_deref());
    let mut action_taken: Vec<&str> = Vec::new();
    if strike {
        action_taken.push("strike");
    }
    action_taken.extend(taken);
    let action_taken = if action_taken.is_empty() {
        "log".to_string()
    } else {
        action_taken.join(",")
    };
    let record = ModerationRecord {
        event_id: event.id.clone(),
        at: now,
        chat_id: message.chat_id.clone(),
        user_id: message.sender.clone(),
        rule: violation.rule,
        category: violation.category,
        severity: violation.severity,
        matched: violation.matched,
        excerpt: violation.excerpt,
        action_taken: if dry_run {
            format!("dry_run: would {action_taken}")
        } else {
            action_taken
        },
        dry_run,
        strike: strike && !dry_run,
        task: if dry_run { None } else { task },
    };
    let mut actions = vec![Action::Moderate(Box::new(record))];
    if !dry_run {
        actions.extend(sends.into_iter().map(Action::Send));
    }
    actions
}

/// A fuzzy hit under the `review` policy: recorded, and a review task for
/// the managers (else the chat's owner and admins); no strike, no warning.
fn review(
    rules: &RuleSet,
    snapshot: &Snapshot,
    event: &Event,
    message: &MessagePosted,
    violation: Violation,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let config = &rules.moderation;
    let dry_run = in_dry_run(config, message.chat_id.as_deref());
    let assignees = managers_or_owners(config, snapshot);
    let chat_name = snapshot
        .chat
        .as_ref()
        .map(|chat| chat.name.clone())
        .unwrap_or_default();
    let member = snapshot.person(&message.sender).display_name();
    let text = format!(
        "【待审核】「{chat_name}」中 {member}（{}）的消息疑似{}（{}）：{}",
        message.sender,
        category_label(&violation.category),
        violation.rule,
        violation.excerpt
    );
    let record = ModerationRecord {
        event_id: event.id.clone(),
        at: now,
        chat_id: message.chat_id.clone(),
        user_id: message.sender.clone(),
        rule: violation.rule,
        category: violation.category,
        severity: violation.severity,
        matched: violation.matched,
        excerpt: violation.excerpt,
        action_taken: String::new(),
        dry_run,
        strike: false,
        task: None,
    };
    send_to_review(rules, event, record, assignees, text)
}

/// Marks a log entry whose notice had nobody to go to: no `managers` in
/// `[moderation]` and no known owner or admin of the chat.
pub const NOBODY_NOTIFIED: &str = "nobody_notified";

/// A decision sent to people for review: recorded without a strike, a review
/// task for `assignees`, and (outside dry run) `notice` to them by app message.
fn send_to_review(
    rules: &RuleSet,
    event: &Event,
    mut record: ModerationRecord,
    assignees: Vec<String>,
    notice: String,
) -> Vec<Action> {
    let dry_run = record.dry_run;
    // With nobody to tell, the task is still opened (it shows in the console's
    // open tasks) and the log says so, rather than the review vanishing.
    record.action_taken = match (dry_run, assignees.is_empty()) {
        (true, _) => "dry_run: would review".to_string(),
        (false, false) => "review".to_string(),
        (false, true) => format!("review,{NOBODY_NOTIFIED}"),
    };
    record.strike = false;
    record.task = (!dry_run).then(|| OwnerTask {
        kind: TaskKind::Review,
        assignees: assignees.clone(),
    });
    let mut actions = vec![Action::Moderate(Box::new(record))];
    if !dry_run && !assignees.is_empty() {
        actions.push(Action::Send(Outbound {
            idempotency_key: format!("moderation:review:{}", event.id),
            route: OutRoute::Member {
                app: rules.doc.community.app.clone(),
                user_ids: assignees,
            },
            content: Content::text(notice),
            not_before: None,
            skipped: None,
        }));
    }
    actions
}

fn category_label(category: &str) -> String {
    match category {
        "flood" => "刷屏".to_string(),
        "cross_chat" => "多群重复发送".to_string(),
        "link" => "链接".to_string(),
        "ads" => "广告".to_string(),
        other => other.to_string(),
    }
}

/// A member's report. Below the threshold it is only recorded; the report
/// that reaches it sends the message to review (managers told, task tracked).
/// Reporters over their hourly limit are told so and nothing is recorded.
pub fn on_report(
    rules: &RuleSet,
    snapshot: &Snapshot,
    event: &Event,
    report: &MessageReported,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let config = &rules.moderation;
    let reply = |text: String| {
        report.response_url.as_ref().map(|url| {
            Action::Send(Outbound {
                idempotency_key: format!("moderation:report_reply:{}", event.id),
                route: OutRoute::SmartBotResponse {
                    response_url: url.clone(),
                },
                content: Content::text_mentioning(text, vec![report.reporter.clone()]),
                not_before: None,
                skipped: None,
            })
        })
    };
    if !config.enabled {
        // Nobody reviews reports here: say so, and who to turn to, rather than
        // leave the reporter wondering.
        let contact = snapshot
            .chat
            .as_ref()
            .and_then(|chat| chat.owner.clone())
            .map(|owner| format!("群主（{owner}）"))
            .unwrap_or_else(|| "群主或管理员".to_string());
        let text = rules.render(
            "report_unhandled",
            &super::templates::ReportUnhandledVars {
                name: snapshot.person(&report.reporter).display_name(),
                contact,
            },
        );
        return reply(text).into_iter().collect();
    }
    let history = &snapshot.moderation;
    if history.reporter_reports_last_hour >= config.reports_per_hour {
        return reply("举报过于频繁，请稍后再试。".to_string())
            .into_iter()
            .collect();
    }
    let Some(fingerprint) = stored_fingerprint(config, &report.quoted_text) else {
        return reply("引用的内容太短，无法举报。".to_string())
            .into_iter()
            .collect();
    };
    if history.earlier_reporters.contains(&report.reporter) {
        return reply("你已举报过这条消息。".to_string())
            .into_iter()
            .collect();
    }
    let mut actions = vec![Action::RecordReport {
        chat_id: report.chat_id.clone(),
        reporter: report.reporter.clone(),
        fingerprint,
        at: now,
    }];
    let reporters = u32::try_from(history.earlier_reporters.len())
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    if reporters == config.report_threshold {
        let author = history
            .reported_author
            .clone()
            .unwrap_or_else(|| "unknown".to_string());
        let excerpt = truncate_chars(&report.quoted_text, 40);
        let dry_run = in_dry_run(config, Some(&report.chat_id));
        let assignees = managers_or_owners(config, snapshot);
        let chat_name = snapshot
            .chat
            .as_ref()
            .map(|chat| chat.name.clone())
            .unwrap_or_default();
        let notice =
            format!("【待审核】「{chat_name}」中 {author} 的消息被 {reporters} 人举报：{excerpt}");
        let record = ModerationRecord {
            event_id: event.id.clone(),
            at: now,
            chat_id: Some(report.chat_id.clone()),
            user_id: author,
            rule: "report".to_string(),
            category: "report".to_string(),
            severity: Severity::Low,
            matched: String::new(),
            excerpt,
            action_taken: String::new(),
            dry_run,
            strike: false,
            task: None,
        };
        actions.extend(send_to_review(rules, event, record, assignees, notice));
    }
    actions.extend(reply("已收到举报，谢谢。".to_string()));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::event::{EventKind, MessageSource};
    use crate::rules::{ChatRoute, ChatSnapshot};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_770_000_000, 0).expect("valid time")
    }

    fn rules(extra: &str) -> RuleSet {
        let text = format!(
            "[moderation]\nenabled = true\nmanagers = [\"boss\"]\n{extra}\nterms = \"\"\"\n[ads:medium]\n加微信\n[gambling:high]\n赌博\n\"\"\"\n"
        );
        RuleSet::from_toml(&text).expect("valid rules")
    }

    fn snapshot(route: ChatRoute) -> Snapshot {
        Snapshot {
            chat: Some(ChatSnapshot {
                chat_id: "wr1".into(),
                name: "群".into(),
                route,
                tags: Vec::new(),
                owner: Some("owner".into()),
                admins: vec!["admin".into()],
                member_count: 3,
                member_version: None,
                raid_until: None,
            }),
            ..Snapshot::default()
        }
    }

    fn message(sender: &str, text: &str) -> (Event, MessagePosted) {
        let message = MessagePosted {
            source: MessageSource::Archive,
            chat_id: Some("wr1".into()),
            sender: sender.into(),
            text: text.into(),
            message_id: "m1".into(),
            reply_via: ReplyVia::ChatRoute,
        };
        let event = Event {
            id: "archive:m1".into(),
            kind: EventKind::MessagePosted(message.clone()),
        };
        (event, message)
    }

    fn run(rules: &RuleSet, snapshot: &Snapshot, sender: &str, text: &str) -> (Vec<Action>, bool) {
        let (event, message) = message(sender, text);
        on_message(&MessageContext {
            rules,
            snapshot,
            event: &event,
            message: &message,
            now: now(),
        })
    }

    fn record(actions: &[Action]) -> Option<&ModerationRecord> {
        actions.iter().find_map(|action| match action {
            Action::Moderate(record) => Some(record.as_ref()),
            _ => None,
        })
    }

    fn routes(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Send(out) => Some(out.route.name()),
                _ => None,
            })
            .collect()
    }

    fn strikes(count: usize, days_ago: i64) -> Vec<StoredStrike> {
        (0..count)
            .map(|_| StoredStrike {
                at: now() - Duration::days(days_ago),
                severity: Severity::Medium,
            })
            .collect()
    }

    #[test]
    fn off_by_default_and_clean_messages_only_record_the_post() {
        let builtin = RuleSet::builtin();
        let (actions, violation) = run(&builtin, &Snapshot::default(), "u1", "加微信");
        assert!(actions.is_empty() && !violation);

        let rules = rules("");
        let (actions, violation) = run(
            &rules,
            &snapshot(ChatRoute::AppGroup),
            "u1",
            "今天天气不错呀朋友们",
        );
        assert!(!violation);
        assert!(matches!(
            actions.as_slice(),
            [Action::RecordPost {
                fingerprint: Some(_),
                ..
            }]
        ));
    }

    #[test]
    fn first_strike_warns_in_the_chat_with_a_mention() {
        let rules = rules("");
        let (actions, violation) = run(&rules, &snapshot(ChatRoute::AppGroup), "u1", "来加微信");
        assert!(violation);
        let record = record(&actions).expect("a decision");
        assert_eq!(
            (
                record.rule.as_str(),
                record.category.as_str(),
                record.matched.as_str()
            ),
            ("term", "ads", "加微信")
        );
        assert!(record.strike && !record.dry_run && record.task.is_none());
        assert_eq!(routes(&actions), vec!["app_group"]);
    }

    #[test]
    fn third_strike_removes_in_an_app_group_and_asks_the_owner_elsewhere() {
        let rules = rules("");
        let mut app_group = snapshot(ChatRoute::AppGroup);
        app_group.moderation.active_strikes = strikes(2, 1);
        let (actions, _) = run(&rules, &app_group, "u1", "加微信");
        assert_eq!(routes(&actions), vec!["member", "app_chat_remove"]);
        assert!(record(&actions).expect("decision").task.is_none());

        let mut customer = snapshot(ChatRoute::CustomerGroup);
        customer.moderation.active_strikes = strikes(2, 1);
        let (actions, _) = run(&rules, &customer, "u1", "加微信");
        assert_eq!(routes(&actions), vec!["member", "member"]);
        let task = record(&actions)
            .and_then(|r| r.task.clone())
            .expect("a task");
        assert_eq!(task.kind, TaskKind::Remove);
        assert_eq!(task.assignees, vec!["owner", "admin"]);
    }

    #[test]
    fn strikes_outside_the_window_do_not_count() {
        let rules = rules("strike_window_days = 7");
        let mut snap = snapshot(ChatRoute::AppGroup);
        snap.moderation.active_strikes = strikes(2, 8);
        let (actions, _) = run(&rules, &snap, "u1", "加微信");
        assert_eq!(
            record(&actions).expect("decision").action_taken,
            "strike,warn"
        );
    }

    #[test]
    fn owner_admins_and_allow_listed_members_are_exempt() {
        let rules = rules("exempt = [\"vip\"]");
        let snap = snapshot(ChatRoute::AppGroup);
        for sender in ["owner", "admin", "vip"] {
            let (actions, violation) = run(&rules, &snap, sender, "加微信");
            assert!(!violation, "{sender}");
            assert!(record(&actions).is_none());
        }
    }

    #[test]
    fn dry_run_decides_and_records_but_sends_nothing() {
        for extra in ["dry_run = true", "dry_run_chats = [\"wr1\"]"] {
            let rules = rules(extra);
            let mut snap = snapshot(ChatRoute::AppGroup);
            snap.moderation.active_strikes = strikes(2, 1);
            let (actions, violation) = run(&rules, &snap, "u1", "加微信");
            assert!(violation);
            assert!(routes(&actions).is_empty(), "{extra}");
            let record = record(&actions).expect("decision");
            assert!(record.dry_run && !record.strike);
            assert_eq!(record.action_taken, "dry_run: would strike,notify,remove");
        }
    }

    #[test]
    fn log_only_categories_are_recorded_without_a_strike() {
        let rules = rules("log_only = [\"ads\"]");
        let (actions, _) = run(&rules, &snapshot(ChatRoute::AppGroup), "u1", "加微信");
        let record = record(&actions).expect("decision");
        assert!(!record.strike);
        assert_eq!(record.action_taken, "log");
        assert!(routes(&actions).is_empty());
    }

    #[test]
    fn links_are_refused_from_new_members_only() {
        let rules = rules(
            "new_member_messages = 3\nnew_member_trusted_secs = 3600\n\
             regex = [{ name = \"link\", pattern = \"https?://\\\\S+\", category = \"link\" }]",
        );
        let mut snap = snapshot(ChatRoute::AppGroup);
        snap.moderation.joined_at = Some(now() - Duration::minutes(5));
        let (actions, violation) = run(&rules, &snap, "u1", "看这个 https://example.com/x");
        assert!(violation);
        assert_eq!(record(&actions).expect("decision").rule, "new_member");

        snap.moderation.joined_at = Some(now() - Duration::days(3));
        snap.moderation.posts_in_chat = 3;
        let (_, violation) = run(&rules, &snap, "u1", "看这个 https://example.com/x");
        assert!(!violation, "a trusted member may post links");
    }

    #[test]
    fn flooding_and_cross_chat_repeats_are_violations() {
        let rules = rules(
            "flood_messages = 3\nflood_window_secs = 10\ncross_chat_min = 3\ncross_chat_window_secs = 600",
        );
        let mut snap = snapshot(ChatRoute::AppGroup);
        snap.moderation.recent_posts = (1..=3)
            .map(|i| StoredPost {
                chat_id: "wr1".into(),
                at: now() - Duration::seconds(i),
                fingerprint: None,
            })
            .collect();
        let (actions, _) = run(&rules, &snap, "u1", "哈哈哈哈");
        assert_eq!(record(&actions).expect("flood").rule, "flood");

        let text = "全场五折快来看看吧朋友们";
        let fingerprint = stored_fingerprint(&rules.moderation, text);
        snap.moderation.recent_posts = ["wr2", "wr3"]
            .iter()
            .map(|chat| StoredPost {
                chat_id: chat.to_string(),
                at: now() - Duration::minutes(1),
                fingerprint,
            })
            .collect();
        let (actions, _) = run(&rules, &snap, "u1", text);
        assert_eq!(record(&actions).expect("repeat").rule, "cross_chat");
    }

    fn report(reporter: &str) -> (Event, MessageReported) {
        let report = MessageReported {
            chat_id: "wr1".into(),
            reporter: reporter.into(),
            quoted_text: "私聊我有内部渠道低价好货".into(),
            response_url: Some("http://127.0.0.1:9/r".into()),
        };
        let event = Event {
            id: format!("bot:{reporter}"),
            kind: EventKind::MessageReported(report.clone()),
        };
        (event, report)
    }

    #[test]
    fn the_report_reaching_the_threshold_opens_a_review() {
        let rules = rules("report_threshold = 2\nreports_per_hour = 5");
        let mut snap = snapshot(ChatRoute::AppGroup);
        snap.moderation.reported_author = Some("u2".into());
        let (event, first) = report("r1");
        let actions = on_report(&rules, &snap, &event, &first, now());
        assert!(record(&actions).is_none());
        assert!(matches!(actions[0], Action::RecordReport { .. }));

        snap.moderation.earlier_reporters = vec!["r1".into()];
        let (event, second) = report("r2");
        let actions = on_report(&rules, &snap, &event, &second, now());
        let record = record(&actions).expect("review");
        assert_eq!(
            (record.user_id.as_str(), record.rule.as_str()),
            ("u2", "report")
        );
        assert_eq!(record.task.as_ref().map(|t| t.kind), Some(TaskKind::Review));

        // The same reporter again, or one over the hourly limit: only an answer.
        let actions = on_report(&rules, &snap, &event, &first, now());
        assert_eq!(routes(&actions), vec!["smart_bot"]);
        snap.moderation.reporter_reports_last_hour = 5;
        let actions = on_report(&rules, &snap, &event, &second, now());
        assert_eq!(routes(&actions), vec!["smart_bot"]);
    }

    #[test]
    fn a_review_with_nobody_to_notify_is_still_a_task_and_says_so() {
        let rules = RuleSet::from_toml(
            "[moderation]\nenabled = true\nreport_threshold = 1\nterms = \"\"\"\n[ads:medium]\n加微信\n\"\"\"\n",
        )
        .expect("valid rules");
        let mut snap = snapshot(ChatRoute::CustomerGroup);
        if let Some(chat) = snap.chat.as_mut() {
            chat.owner = None;
            chat.admins.clear();
        }
        snap.moderation.reported_author = Some("u2".into());
        let (event, only) = report("r1");
        let actions = on_report(&rules, &snap, &event, &only, now());
        let record = record(&actions).expect("review");
        assert_eq!(record.action_taken, "review,nobody_notified");
        let task = record.task.as_ref().expect("a task is still opened");
        assert_eq!(task.kind, TaskKind::Review);
        assert!(task.assignees.is_empty());
        // No app message to an empty list; the reporter is still answered.
        assert_eq!(routes(&actions), vec!["smart_bot"]);
    }

    #[test]
    fn bad_values_name_their_field() {
        let doc = ModerationDoc {
            ladder: vec![RungDoc {
                strikes: 1,
                actions: vec!["ban".into()],
            }],
            report_threshold: 0,
            ..ModerationDoc::default()
        };
        let errors = ModerationConfig::from_doc(&doc).expect_err("invalid");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(
            paths.contains(&"moderation.ladder[0].actions[0]"),
            "{paths:?}"
        );
        assert!(paths.contains(&"moderation.report_threshold"), "{paths:?}");
    }
}
