//! Member commands: 签到 打卡 补签 积分 排行 等级 兑换 帮助.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::event::{Event, MessagePosted, ReplyVia};
use super::{chat_outbound, checkin, points, Action, OutRoute, Outbound, RuleSet, Snapshot};

/// A parsed member command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CheckIn,
    MakeUp,
    Points,
    Rank,
    Level,
    Redeem(String),
    Help,
}

/// Recognises a command: the whole (trimmed) text, or `兑换 <item>`.
pub fn parse(rules: &RuleSet, text: &str) -> Option<Command> {
    let text = text.trim();
    if checkin::is_checkin(rules, text) {
        return Some(Command::CheckIn);
    }
    if text == rules.doc.checkin.makeup_keyword.trim() {
        return Some(Command::MakeUp);
    }
    match text {
        "积分" | "我的积分" => return Some(Command::Points),
        "排行" | "排行榜" => return Some(Command::Rank),
        "等级" => return Some(Command::Level),
        "帮助" | "help" | "菜单" => return Some(Command::Help),
        _ => {}
    }
    let item = text.strip_prefix("兑换")?.trim();
    Some(Command::Redeem(item.to_string()))
}

pub fn on_message(
    rules: &RuleSet,
    snapshot: &Snapshot,
    event: &Event,
    message: &MessagePosted,
    now: DateTime<Utc>,
) -> Vec<Action> {
    match parse(rules, &message.text) {
        None => Vec::new(),
        Some(Command::CheckIn) => checkin::on_checkin(rules, snapshot, event, message, now),
        Some(Command::MakeUp) => checkin::on_makeup(rules, snapshot, event, message, now),
        Some(Command::Points) => points::on_points(rules, snapshot, event, message),
        Some(Command::Level) => points::on_level(rules, snapshot, event, message),
        Some(Command::Rank) => points::on_rank(rules, snapshot, event, message),
        Some(Command::Redeem(item)) => {
            points::on_redeem(rules, snapshot, event, message, &item, now)
        }
        Some(Command::Help) => {
            let items: Vec<&str> = rules.doc.catalog.iter().map(|i| i.item.as_str()).collect();
            let text = rules.render("help", &json!({"items": items.join("、")}));
            vec![Action::Send(reply(snapshot, event, message, text))]
        }
    }
}

/// The answer to a message, through the way the message came in. The key is
/// derived from the event, so a replayed event cannot send a second answer.
pub fn reply(
    snapshot: &Snapshot,
    event: &Event,
    message: &MessagePosted,
    text: String,
) -> Outbound {
    let key = format!("reply:{}", event.id);
    let route = match &message.reply_via {
        ReplyVia::ResponseUrl(url) => OutRoute::SmartBotResponse {
            response_url: url.clone(),
        },
        ReplyVia::AppMessage { app } => OutRoute::Member {
            app: app.clone(),
            user_ids: vec![message.sender.clone()],
        },
        ReplyVia::ChatRoute => {
            return chat_outbound(
                snapshot.chat.as_ref(),
                key,
                text,
                vec![message.sender.clone()],
            );
        }
    };
    Outbound {
        idempotency_key: key,
        route,
        text,
        mentions: Vec::new(),
        not_before: None,
        skipped: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_recognised_with_surrounding_space() {
        let rules = RuleSet::builtin();
        assert_eq!(parse(&rules, " 签到 "), Some(Command::CheckIn));
        assert_eq!(parse(&rules, "打卡"), Some(Command::CheckIn));
        assert_eq!(parse(&rules, "补签"), Some(Command::MakeUp));
        assert_eq!(parse(&rules, "积分"), Some(Command::Points));
        assert_eq!(parse(&rules, "排行"), Some(Command::Rank));
        assert_eq!(parse(&rules, "等级"), Some(Command::Level));
        assert_eq!(parse(&rules, "帮助"), Some(Command::Help));
        assert_eq!(
            parse(&rules, "兑换 保温杯"),
            Some(Command::Redeem("保温杯".into()))
        );
        assert_eq!(parse(&rules, "今天签到了吗"), None);
    }
}
