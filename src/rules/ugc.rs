//! Rewarded good content (UGC 激励): 精华 marked by a manager, and 晒单
//! images in chats tagged for it. Every reward is a ledger entry whose
//! reference carries the message id (`essence:<id>`, `showcase:<id>`), so a
//! message earns once however often it is marked or redelivered. Pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::commands::reply;
use super::event::{ContentFeatured, Event, MessagePosted, ReplyVia};
use super::points::level_for;
use super::templates::UgcRewardVars;
use super::{Action, ChatSnapshot, Content, OutRoute, Outbound, PersonSnapshot, RuleSet, Snapshot};

/// Ledger reason of a 精华 reward.
pub const ESSENCE: &str = "essence";
/// Ledger reason of a 晒单 reward.
pub const SHOWCASE: &str = "showcase";

/// `[ugc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UgcDoc {
    /// Points for a message marked 精华 (0: 精华 off, and group messages are
    /// not remembered).
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

/// Every group message is remembered (id, author, fingerprint) while 精华 is on.
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
    if rules.doc.ugc.essence_points <= 0 {
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
    let mut actions = vec![Action::MarkEssence {
        message_id: target.message_id.clone(),
        chat_id: target.chat_id.clone(),
        author: author.user_id.clone(),
        by: by.to_string(),
        at: now,
        day,
    }];
    if points > 0 {
        actions.push(Action::AwardPoints {
            user_id: author.user_id.clone(),
            delta: points,
            reason: ESSENCE.into(),
            reference: format!("{ESSENCE}:{}", target.message_id),
            chat_id: Some(target.chat_id.clone()),
            day,
        });
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
    featured: &ContentFeatured,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let answer = |text: String| {
        Action::Send(Outbound::new(
            format!("reply:{}", event.id),
            OutRoute::SmartBotResponse {
                response_url: featured.response_url.clone(),
            },
            Content::text(text),
        ))
    };
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

/// An image in a group: remembered, and rewarded as 晒单 in a tagged chat
/// under the daily cap. The notice goes only where the member can be
/// answered directly (the smart bot's reply); archive images earn silently.
pub fn on_image(
    rules: &RuleSet,
    snapshot: &Snapshot,
    event: &Event,
    message: &MessagePosted,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let mut actions: Vec<Action> = record(rules, message, true, now).into_iter().collect();
    let config = &rules.doc.ugc;
    let tagged = snapshot.chat.as_ref().is_some_and(|chat| {
        chat.tags
            .iter()
            .any(|tag| config.showcase_tags.contains(tag))
    });
    let Some(chat_id) = message.chat_id.clone() else {
        return actions;
    };
    if !tagged || config.showcase_points <= 0 {
        return actions;
    }
    let person = snapshot.person(&message.sender);
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
    actions.push(Action::AwardPoints {
        user_id: person.user_id.clone(),
        delta: points,
        reason: SHOWCASE.into(),
        reference: format!("{SHOWCASE}:{}", message.message_id),
        chat_id: Some(chat_id),
        day: rules.community_day(now),
    });
    if let ReplyVia::ResponseUrl(_) = message.reply_via {
        let vars = reward_vars(rules, &person, "晒单", points, String::new());
        let mut notice = reply(snapshot, event, message, rules.render("ugc_reward", &vars));
        // The image's own text may be a command answered under `reply:`.
        notice.idempotency_key = format!("ugc:{}", event.id);
        actions.push(Action::Send(notice));
    }
    actions
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
