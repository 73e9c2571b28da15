//! Rewarded good content (UGC 激励): 精华 marked by a manager, 有用 marked by
//! any other member (peer recognition, 热心助人), and 晒单 images in chats
//! tagged for it. Every reward is a ledger entry whose reference carries the
//! message id (`essence:<id>`, `helpful:<id>:<giver>`, `showcase:<id>`), so a
//! message earns once per mark however often it is marked or redelivered. Pure.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::commands::reply;
use super::event::{Event, MessagePosted, QuotedMark, ReplyVia};
use super::points::level_for;
use super::templates::UgcRewardVars;
use super::{
    Action, ChatSnapshot, Content, MessageContext, OutRoute, Outbound, PersonSnapshot, RuleSet,
    Snapshot,
};

/// Ledger reason of a 精华 reward.
pub const ESSENCE: &str = "essence";
/// Ledger reason of a 晒单 reward.
pub const SHOWCASE: &str = "showcase";
/// Ledger reason of a 有用 mark's reward.
pub const HELPFUL: &str = "helpful";

/// `[ugc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UgcDoc {
    /// Points for a message marked 精华 (0: 精华 off; group messages are
    /// then remembered only for 有用).
    pub essence_points: i64,
    /// Who may mark 精华 with `加精` besides each chat's owner and admins.
    pub managers: Vec<String>,
    /// Badges for the n-th 精华 of a member.
    pub essence_badges: Vec<CountBadge>,
    /// Chats carrying one of these tags reward images as 晒单.
    pub showcase_tags: Vec<String>,
    pub showcase_points: i64,
    /// Most 晒单 points per member per community day (0: no cap).
    pub showcase_daily_cap: i64,
    /// Any member may mark another member's message 有用 by quoting it to the
    /// smart bot (the honour board's 热心助人). With this and 精华 off, group
    /// messages are not remembered.
    pub helpful: bool,
    /// Points the author earns per 有用 mark (0: the marks only count on the
    /// honour board).
    pub helpful_points: i64,
    /// Most 有用 marks one member hands out per community day (0: no cap), so
    /// a pair of friends cannot farm each other's points.
    pub helpful_daily_cap: i64,
}

impl Default for UgcDoc {
    fn default() -> Self {
        Self {
            essence_points: 20,
            managers: Vec::new(),
            essence_badges: vec![
                CountBadge {
                    count: 1,
                    badge: "精华作者".into(),
                },
                CountBadge {
                    count: 5,
                    badge: "内容达人".into(),
                },
            ],
            showcase_tags: vec!["晒单".into()],
            showcase_points: 5,
            showcase_daily_cap: 15,
            helpful: true,
            helpful_points: 2,
            helpful_daily_cap: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountBadge {
    pub count: u32,
    pub badge: String,
}

impl UgcDoc {
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (field, value) in [
            ("essence_points", self.essence_points),
            ("showcase_points", self.showcase_points),
            ("showcase_daily_cap", self.showcase_daily_cap),
            ("helpful_points", self.helpful_points),
            ("helpful_daily_cap", self.helpful_daily_cap),
        ] {
            if value < 0 {
                problems.push((format!("ugc.{field}"), "must not be negative".into()));
            }
        }
        for (i, badge) in self.essence_badges.iter().enumerate() {
            if badge.count == 0 {
                problems.push((
                    format!("ugc.essence_badges[{i}].count"),
                    "must be at least 1".into(),
                ));
            }
            if badge.badge.trim().is_empty() {
                problems.push((
                    format!("ugc.essence_badges[{i}].badge"),
                    "must not be empty".into(),
                ));
            }
        }
        problems
    }

    /// Whether group messages are remembered (id, author, fingerprint): a
    /// quoted message can only be marked 精华 or 有用 if it was.
    pub fn remembers_posts(&self) -> bool {
        self.essence_points > 0 || self.helpful
    }
}

/// The message a `加精` (or the console) points at, as the store found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeaturedTarget {
    pub message_id: String,
    pub chat_id: String,
    pub author: PersonSnapshot,
    pub already_marked: bool,
    /// 精华 the author had before this one.
    pub author_essence_count: u32,
}

/// What a 精华 decision gives: the actions, and the reward line when paid.
#[derive(Debug, Clone, PartialEq)]
pub struct EssenceDecision {
    pub actions: Vec<Action>,
    /// None when the message was already 精华 (nothing paid twice).
    pub reward: Option<UgcRewardVars>,
}

/// Every group message is remembered (id, author, fingerprint) while 精华 or
/// 有用 is on.
pub fn on_message(rules: &RuleSet, message: &MessagePosted, now: DateTime<Utc>) -> Vec<Action> {
    record(rules, message, false, now).into_iter().collect()
}

fn record(
    rules: &RuleSet,
    message: &MessagePosted,
    is_image: bool,
    now: DateTime<Utc>,
) -> Option<Action> {
    let chat_id = message.chat_id.clone()?;
    if !rules.doc.ugc.remembers_posts() {
        return None;
    }
    Some(Action::RecordContentPost {
        message_id: message.message_id.clone(),
        chat_id,
        author: message.sender.clone(),
        fingerprint: super::moderate::stored_fingerprint(&rules.moderation, &message.text),
        is_image,
        at: now,
    })
}

/// The chat's owner and admins, and `[ugc] managers`, may mark 精华.
pub fn may_mark(rules: &RuleSet, chat: Option<&ChatSnapshot>, user: &str) -> bool {
    rules.doc.ugc.managers.iter().any(|m| m == user)
        || chat.is_some_and(|chat| {
            chat.owner.as_deref() == Some(user) || chat.admins.iter().any(|a| a == user)
        })
}

/// 精华 for `target`, marked by `by`: the mark, the author's points and any
/// badge, once per message.
pub fn essence(
    rules: &RuleSet,
    target: &FeaturedTarget,
    by: &str,
    now: DateTime<Utc>,
) -> EssenceDecision {
    if target.already_marked {
        return EssenceDecision {
            actions: Vec::new(),
            reward: None,
        };
    }
    let day = rules.community_day(now);
    let author = &target.author;
    let points = rules.doc.ugc.essence_points.max(0);
    let mut actions = vec![Action::MarkMessage {
        mark: MessageMark::Essence,
        message_id: target.message_id.clone(),
        chat_id: target.chat_id.clone(),
        author: author.user_id.clone(),
        by: by.to_string(),
        at: now,
        day,
    }];
    if points > 0 {
        actions.push(content_reward(
            &author.user_id,
            points,
            ESSENCE,
            &target.message_id,
            &target.chat_id,
            day,
        ));
    }
    let count = target.author_essence_count + 1;
    let mut new_badge = String::new();
    for badge in &rules.doc.ugc.essence_badges {
        if count >= badge.count && !author.badges.contains(&badge.badge) {
            actions.push(Action::AwardBadge {
                user_id: author.user_id.clone(),
                badge: badge.badge.clone(),
                at: now,
            });
            new_badge = badge.badge.clone();
        }
    }
    let reward = reward_vars(rules, author, "精华", points, new_badge);
    EssenceDecision {
        actions,
        reward: Some(reward),
    }
}

/// The reward line's values, with the level the reward reached (if it changed).
pub fn reward_vars(
    rules: &RuleSet,
    person: &PersonSnapshot,
    what: &str,
    points: i64,
    badge: String,
) -> UgcRewardVars {
    let levels = &rules.doc.points.levels;
    let before = level_for(levels, person.lifetime_points).0;
    let after = level_for(levels, person.lifetime_points + points).0;
    UgcRewardVars {
        name: person.display_name(),
        what: what.into(),
        points,
        balance: person.balance + points,
        badge,
        level_up: match after {
            Some(level) if before != after => level.name.clone(),
            _ => String::new(),
        },
    }
}

/// `加精` quoting a message: refused for non-managers and unknown messages;
/// a second 加精 of the same message pays nothing and says so.
pub fn on_featured(
    rules: &RuleSet,
    snapshot: &Snapshot,
    event: &Event,
    featured: &QuotedMark,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let answer = |text: String| quote_answer(event, featured, text);
    if rules.doc.ugc.essence_points <= 0 {
        return vec![answer("本群没有开启精华奖励".into())];
    }
    if !may_mark(rules, snapshot.chat.as_ref(), &featured.by) {
        return vec![answer("只有群主、群管理员和运营可以加精".into())];
    }
    let Some(target) = &snapshot.featured else {
        return vec![answer(
            "找不到这条消息的作者：只能加精机器人见过的群消息".into(),
        )];
    };
    let decision = essence(rules, target, &featured.by, now);
    let text = match &decision.reward {
        Some(vars) => rules.render("ugc_reward", vars),
        None => format!(
            "这条消息已经是精华了（{}），不重复奖励",
            target.author.display_name()
        ),
    };
    let mut actions = decision.actions;
    actions.push(answer(text));
    actions
}

/// The answer to a command quoting a message (`加精`, `有用`), through the
/// smart bot's one-shot reply, keyed by the event so a redelivery sends it once.
fn quote_answer(event: &Event, mark: &QuotedMark, text: String) -> Action {
    Action::Send(Outbound::new(
        format!("reply:{}", event.id),
        OutRoute::SmartBotResponse {
            response_url: mark.response_url.clone(),
        },
        Content::text(text),
    ))
}

/// Which mark a remembered message gets: 精华 (one per message, by a
/// manager) or 有用 (one per message and giver, by any other member). Both
/// are stored alike; the store keys them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageMark {
    Essence,
    Helpful,
}

/// The message a `有用` points at, as the store found it, seen by the giver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpfulTarget {
    pub message_id: String,
    pub chat_id: String,
    pub author: PersonSnapshot,
    /// The giver marked this message 有用 before.
    pub already_marked: bool,
    /// 有用 marks the giver handed out this community day, before this one.
    pub given_today: i64,
}

/// What a 有用 mark did.
#[derive(Debug, Clone, PartialEq)]
pub enum HelpfulOutcome {
    /// The giver quoted their own message: nothing recorded.
    OwnMessage,
    /// The giver marked this message before: nothing more.
    Already,
    /// The giver used up the day's marks (the cap): nothing recorded.
    OverCap(i64),
    /// Recorded; the reward line when points were paid.
    Marked(Option<UgcRewardVars>),
}

/// `by` marks `target` 有用: refused for their own message, over the daily
/// cap, or a second time; otherwise the mark and the author's points, whose
/// reference (`helpful:<message id>:<giver>`) pays each giver's mark once.
pub fn helpful(
    rules: &RuleSet,
    target: &HelpfulTarget,
    by: &str,
    now: DateTime<Utc>,
) -> (Vec<Action>, HelpfulOutcome) {
    let config = &rules.doc.ugc;
    let author = &target.author;
    if author.user_id == by {
        return (Vec::new(), HelpfulOutcome::OwnMessage);
    }
    // Checked before the cap: repeating a mark already given is not a new one.
    if target.already_marked {
        return (Vec::new(), HelpfulOutcome::Already);
    }
    if config.helpful_daily_cap > 0 && target.given_today >= config.helpful_daily_cap {
        return (
            Vec::new(),
            HelpfulOutcome::OverCap(config.helpful_daily_cap),
        );
    }
    let day = rules.community_day(now);
    let points = config.helpful_points.max(0);
    let mut actions = vec![Action::MarkMessage {
        mark: MessageMark::Helpful,
        message_id: target.message_id.clone(),
        chat_id: target.chat_id.clone(),
        author: author.user_id.clone(),
        by: by.to_string(),
        at: now,
        day,
    }];
    if points == 0 {
        return (actions, HelpfulOutcome::Marked(None));
    }
    // Once per giver: the giver is part of the reference.
    let reference = format!("{}:{by}", target.message_id);
    actions.push(content_reward(
        &author.user_id,
        points,
        HELPFUL,
        &reference,
        &target.chat_id,
        day,
    ));
    let reward = reward_vars(rules, author, "热心回答", points, String::new());
    (actions, HelpfulOutcome::Marked(Some(reward)))
}

/// `有用` (or a thanks word) quoting a message: any member may mark another
/// member's remembered message; the reply says what happened either way.
pub fn on_helpful(
    rules: &RuleSet,
    snapshot: &Snapshot,
    event: &Event,
    mark: &QuotedMark,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let answer = |text: String| quote_answer(event, mark, text);
    if !rules.doc.ugc.helpful {
        return vec![answer("本群没有开启「有用」标记".into())];
    }
    let Some(target) = &snapshot.helpful else {
        return vec![answer(
            "找不到这条消息的作者：只能给机器人见过的群消息点「有用」".into(),
        )];
    };
    let (mut actions, outcome) = helpful(rules, target, &mark.by, now);
    let giver = snapshot.person(&mark.by).display_name();
    let author = target.author.display_name();
    let text = match outcome {
        HelpfulOutcome::OwnMessage => "不能给自己的消息点「有用」哦".to_string(),
        HelpfulOutcome::Already => format!("你已经给 {author} 的这条消息点过「有用」了"),
        HelpfulOutcome::OverCap(cap) => {
            format!("今天的 {cap} 次「有用」已经用完了，明天再来感谢吧～")
        }
        HelpfulOutcome::Marked(Some(vars)) => {
            format!("👍 {giver} 觉得有用：{}", rules.render("ugc_reward", &vars))
        }
        HelpfulOutcome::Marked(None) => {
            format!("👍 {giver} 觉得 {author} 的消息有用，已记入热心助人榜")
        }
    };
    actions.push(answer(text));
    actions
}

/// An image in a group: remembered, and rewarded as 晒单 in a tagged chat
/// under the daily cap. The notice goes only where the member can be
/// answered directly (the smart bot's reply); archive images earn silently.
pub fn on_image(cx: &MessageContext) -> Vec<Action> {
    let mut actions: Vec<Action> = record(cx.rules, cx.message, true, cx.now)
        .into_iter()
        .collect();
    let config = &cx.rules.doc.ugc;
    let tagged = cx.snapshot.chat.as_ref().is_some_and(|chat| {
        chat.tags
            .iter()
            .any(|tag| config.showcase_tags.contains(tag))
    });
    let Some(chat_id) = cx.message.chat_id.clone() else {
        return actions;
    };
    if !tagged || config.showcase_points <= 0 {
        return actions;
    }
    let person = cx.snapshot.person(&cx.message.sender);
    let earned = person.points_today.get(SHOWCASE).copied().unwrap_or(0);
    let points = if config.showcase_daily_cap > 0 {
        config
            .showcase_points
            .min((config.showcase_daily_cap - earned).max(0))
    } else {
        config.showcase_points
    };
    if points <= 0 {
        return actions;
    }
    actions.push(content_reward(
        &person.user_id,
        points,
        SHOWCASE,
        &cx.message.message_id,
        &chat_id,
        cx.rules.community_day(cx.now),
    ));
    if let ReplyVia::ResponseUrl(_) = cx.message.reply_via {
        let vars = reward_vars(cx.rules, &person, "晒单", points, String::new());
        let mut notice = reply(
            cx.snapshot,
            cx.event,
            cx.message,
            cx.rules.render("ugc_reward", &vars),
        );
        // The image's own text may be a command answered under `reply:`.
        notice.idempotency_key = format!("ugc:{}", cx.event.id);
        actions.push(Action::Send(notice));
    }
    actions
}

/// The ledger entry of a content reward: reason `reason`, reference
/// `<reason>:<what>` (the message id, and for 有用 the giver), so it is paid once.
fn content_reward(
    user_id: &str,
    points: i64,
    reason: &str,
    what: &str,
    chat_id: &str,
    day: NaiveDate,
) -> Action {
    Action::AwardPoints {
        user_id: user_id.to_owned(),
        delta: points,
        reason: reason.to_owned(),
        reference: format!("{reason}:{what}"),
        chat_id: Some(chat_id.to_owned()),
        day,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn target(already: bool, lifetime: i64) -> FeaturedTarget {
        FeaturedTarget {
            message_id: "m1".into(),
            chat_id: "c1".into(),
            author: PersonSnapshot {
                lifetime_points: lifetime,
                ..PersonSnapshot::new("author")
            },
            already_marked: already,
            author_essence_count: 0,
        }
    }

    fn helpful_target(already: bool, given_today: i64) -> HelpfulTarget {
        HelpfulTarget {
            message_id: "m1".into(),
            chat_id: "c1".into(),
            author: PersonSnapshot::new("author"),
            already_marked: already,
            given_today,
        }
    }

    #[test]
    fn helpful_pays_the_author_once_per_giver_with_the_message_and_giver_in_the_reference() {
        let rules = RuleSet::builtin(); // 2 points, 5 marks a day
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let (actions, outcome) = helpful(&rules, &helpful_target(false, 4), "giver", now);
        assert!(actions.iter().any(|a| matches!(a,
            Action::MarkMessage { mark: MessageMark::Helpful, by, author, .. }
                if by == "giver" && author == "author")));
        assert!(actions.iter().any(|a| matches!(a,
            Action::AwardPoints { reference, delta: 2, user_id, .. }
                if reference == "helpful:m1:giver" && user_id == "author")));
        assert!(matches!(outcome, HelpfulOutcome::Marked(Some(ref vars)) if vars.points == 2));

        let (actions, outcome) = helpful(&rules, &helpful_target(true, 0), "giver", now);
        assert!(actions.is_empty());
        assert_eq!(outcome, HelpfulOutcome::Already);
    }

    #[test]
    fn helpful_refuses_the_own_message_and_the_giver_over_the_daily_cap() {
        let mut rules = RuleSet::builtin();
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let (actions, outcome) = helpful(&rules, &helpful_target(false, 0), "author", now);
        assert!(actions.is_empty());
        assert_eq!(outcome, HelpfulOutcome::OwnMessage);

        let (actions, outcome) = helpful(&rules, &helpful_target(false, 5), "giver", now);
        assert!(actions.is_empty());
        assert_eq!(outcome, HelpfulOutcome::OverCap(5));

        // No cap, no points: the mark alone, for the board.
        rules.doc.ugc.helpful_daily_cap = 0;
        rules.doc.ugc.helpful_points = 0;
        let (actions, outcome) = helpful(&rules, &helpful_target(false, 50), "giver", now);
        assert_eq!(actions.len(), 1);
        assert_eq!(outcome, HelpfulOutcome::Marked(None));
    }

    #[test]
    fn ugc_problems_name_the_helpful_fields() {
        let doc = UgcDoc {
            helpful_points: -1,
            helpful_daily_cap: -2,
            ..UgcDoc::default()
        };
        let fields: Vec<String> = doc.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["ugc.helpful_points", "ugc.helpful_daily_cap"]);
    }

    #[test]
    fn posts_are_remembered_while_essence_or_helpful_is_on() {
        let mut doc = UgcDoc::default();
        assert!(doc.remembers_posts());
        doc.essence_points = 0;
        assert!(doc.remembers_posts(), "有用 still needs the messages");
        doc.helpful = false;
        assert!(!doc.remembers_posts());
    }

    #[test]
    fn essence_pays_once_with_the_message_id_and_names_badge_and_level() {
        let rules = RuleSet::builtin();
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let decision = essence(&rules, &target(false, 40), "boss", now);
        assert!(decision.actions.iter().any(|a| matches!(a,
            Action::AwardPoints { reference, delta: 20, .. } if reference == "essence:m1")));
        let reward = decision.reward.unwrap();
        assert_eq!(
            (reward.badge.as_str(), reward.level_up.as_str()),
            ("精华作者", "活跃成员")
        );
        let again = essence(&rules, &target(true, 60), "boss", now);
        assert!(again.actions.is_empty() && again.reward.is_none());
    }
}
