//! Keyword / regex auto-replies, scoped by chat tag, with a per-chat cooldown so
//! a keyword cannot make the bot spam.

use chrono::Duration;

use super::checkin::streak_ending;
use super::points::level_name;
use super::templates::FaqVars;
use super::{Action, MessageContext};

pub fn on_message(cx: &MessageContext) -> Vec<Action> {
    let chat_tags: &[String] = cx.snapshot.chat.as_ref().map_or(&[], |c| c.tags.as_slice());
    for (index, rule) in cx.rules.doc.autoreply.iter().enumerate() {
        if !rule.tags.is_empty() && !rule.tags.iter().any(|t| chat_tags.contains(t)) {
            continue;
        }
        let keyword_hit = rule
            .keywords
            .iter()
            .any(|k| cx.message.text.contains(k.as_str()));
        let regex_hit = cx
            .rules
            .autoreply_regex(index)
            .is_some_and(|regex| regex.is_match(&cx.message.text));
        if !keyword_hit && !regex_hit {
            continue;
        }
        // The cooldown is per chat; 1:1 messages use the sender as their "chat".
        let scope = cx
            .message
            .chat_id
            .clone()
            .unwrap_or_else(|| cx.message.sender.clone());
        if let Some(last) = cx.snapshot.autoreply_last_fired.get(&rule.name) {
            if cx.now < *last + Duration::seconds(rule.cooldown_secs) {
                return Vec::new();
            }
        }
        let person = cx.snapshot.person(&cx.message.sender);
        let today = cx.rules.community_day(cx.now);
        // A streak not yet extended today still counts until today ends.
        let streak = match today.pred_opt() {
            Some(yesterday) if !person.checkin_days.contains(&today) => {
                streak_ending(&person.checkin_days, yesterday)
            }
            _ => streak_ending(&person.checkin_days, today),
        };
        let vars = FaqVars {
            name: person.display_name(),
            group_name: cx
                .snapshot
                .chat
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            balance: person.balance,
            lifetime: person.lifetime_points,
            level: level_name(cx.rules, person.lifetime_points),
            streak,
        };
        let text = cx.rules.render(&rule.template, &vars);
        return vec![
            Action::MarkAutoReplyFired {
                chat_id: scope,
                rule: rule.name.clone(),
                at: cx.now,
            },
            cx.reply(text),
        ];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::event::{Event, EventKind, MessagePosted, MessageSource, ReplyVia};
    use crate::rules::{ChatRoute, ChatSnapshot, RuleSet, Snapshot};
    use chrono::{DateTime, TimeZone, Utc};

    const RULES: &str = r#"
        [[autoreply]]
        name = "shipping"
        keywords = ["发货"]
        regex = "什么时候.*到"
        tags = ["shop"]
        template = "faq_shipping"
        cooldown_secs = 60
    "#;

    fn message(text: &str) -> (Event, MessagePosted) {
        let message = MessagePosted {
            source: MessageSource::SmartBot,
            chat_id: Some("wrCHAT".into()),
            sender: "zhangsan".into(),
            text: text.into(),
            message_id: "m1".into(),
            reply_via: ReplyVia::ResponseUrl("http://127.0.0.1/resp".into()),
        };
        (
            Event {
                id: "bot:m1".into(),
                kind: EventKind::MessagePosted(message.clone()),
            },
            message,
        )
    }

    fn snapshot(tags: &[&str]) -> Snapshot {
        Snapshot {
            chat: Some(ChatSnapshot {
                chat_id: "wrCHAT".into(),
                name: "店铺群".into(),
                route: ChatRoute::internal_with_smart_bot("bot"),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                owner: None,
                admins: Vec::new(),
                member_count: 3,
                member_version: None,
                raid_until: None,
            }),
            ..Snapshot::default()
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 2, 0, 0).unwrap()
    }

    /// What the auto-replies answer `msg` with in `snapshot`, at [`now`].
    fn reply_to(
        rules: &RuleSet,
        snapshot: &Snapshot,
        event: &Event,
        msg: &MessagePosted,
    ) -> Vec<Action> {
        on_message(&MessageContext {
            rules,
            snapshot,
            event,
            message: msg,
            now: now(),
        })
    }

    #[test]
    fn keyword_and_regex_trigger_a_templated_reply() {
        let rules = RuleSet::from_toml(RULES).unwrap();
        for text in ["请问什么时候发货", "快递什么时候能到啊"] {
            let (event, msg) = message(text);
            let actions = reply_to(&rules, &snapshot(&["shop"]), &event, &msg);
            assert_eq!(actions.len(), 2, "{text}");
            assert!(
                matches!(&actions[1], Action::Send(out) if out.text().contains("48 小时内发货"))
            );
        }
    }

    #[test]
    fn rule_scoped_to_tag_stays_quiet_elsewhere() {
        let rules = RuleSet::from_toml(RULES).unwrap();
        let (event, msg) = message("什么时候发货");
        assert!(reply_to(&rules, &snapshot(&["other"]), &event, &msg).is_empty());
    }

    #[test]
    fn cooldown_suppresses_repeats_in_the_same_chat() {
        let rules = RuleSet::from_toml(RULES).unwrap();
        let (event, msg) = message("发货");
        let mut fired = snapshot(&["shop"]);
        fired
            .autoreply_last_fired
            .insert("shipping".into(), now() - Duration::seconds(59));
        assert!(reply_to(&rules, &fired, &event, &msg).is_empty());
        fired
            .autoreply_last_fired
            .insert("shipping".into(), now() - Duration::seconds(60));
        assert_eq!(reply_to(&rules, &fired, &event, &msg).len(), 2);
    }
}
