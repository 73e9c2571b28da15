//! Member commands: 签到 打卡 补签 积分 排行 等级 兑换 帮助.

use super::templates::HelpVars;

use super::event::{Event, MessagePosted, ReplyVia};
use super::{
    checkin, points, Action, ChatAddress, Content, MessageContext, MessageKind, OutRoute, Outbound,
    RuleSet, Snapshot,
};

/// A parsed member command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CheckIn,
    MakeUp(checkin::MakeupTarget),
    Points,
    Rank(RankScope),
    Level,
    Redeem(String),
    Help,
    /// `申诉 <why>`: a punished member asks an owner to look again.
    Appeal(String),
    /// 荣誉榜: the honour board so far.
    Honour,
    /// 勋章: the sender's badges.
    Badges,
    /// `投 2` / `投 1 3`: a ballot in the chat's poll (or why it cannot be read).
    Vote(Result<Vec<u32>, String>),
}

/// Which leaderboard 排行 asks for: `排行` (this week, whole community),
/// `排行 月` / `月榜`, `排行 总` / `总榜`, and `本群排行` / `群榜` for this chat only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankScope {
    pub period: RankPeriod,
    pub this_chat: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankPeriod {
    Week,
    Month,
    AllTime,
}

impl RankScope {
    pub const WEEK: RankScope = RankScope {
        period: RankPeriod::Week,
        this_chat: false,
    };

    fn parse(text: &str) -> Option<RankScope> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let rest = ["本群排行榜", "本群排行", "排行榜", "排行"]
            .iter()
            .find_map(|prefix| {
                compact
                    .strip_prefix(prefix)
                    .map(|r| (prefix.starts_with("本群"), r))
            })
            .or_else(|| compact.strip_suffix("榜").map(|r| (false, r)))?;
        let (this_chat, rest) = rest;
        let mut scope = RankScope {
            period: RankPeriod::Week,
            this_chat,
        };
        for c in rest.chars() {
            match c {
                '周' | '本' => {}
                '月' => scope.period = RankPeriod::Month,
                '总' => scope.period = RankPeriod::AllTime,
                '群' => scope.this_chat = true,
                _ => return None,
            }
        }
        Some(scope)
    }

    /// The heading of the reply.
    pub fn title(self) -> &'static str {
        match (self.period, self.this_chat) {
            (RankPeriod::Week, false) => "本周积分排行",
            (RankPeriod::Month, false) => "本月积分排行",
            (RankPeriod::AllTime, false) => "积分总榜",
            (RankPeriod::Week, true) => "本群本周积分排行",
            (RankPeriod::Month, true) => "本群本月积分排行",
            (RankPeriod::AllTime, true) => "本群积分总榜",
        }
    }
}

/// Recognises a command: the whole (trimmed) text, or `兑换 <item>`.
pub fn parse(rules: &RuleSet, text: &str) -> Option<Command> {
    let text = text.trim();
    if checkin::is_checkin(rules, text) {
        return Some(Command::CheckIn);
    }
    if let Some(rest) = text.strip_prefix(rules.doc.checkin.makeup_keyword.trim()) {
        if let Some(target) = checkin::MakeupTarget::parse(rest) {
            return Some(Command::MakeUp(target));
        }
    }
    match text {
        "积分" | "我的积分" => return Some(Command::Points),
        "等级" => return Some(Command::Level),
        "帮助" | "help" | "菜单" => return Some(Command::Help),
        "荣誉榜" => return Some(Command::Honour),
        "勋章" | "我的勋章" => return Some(Command::Badges),
        _ => {}
    }
    if let Some(why) = text.strip_prefix(rules.doc.moderation.review.appeal_keyword.trim()) {
        return Some(Command::Appeal(why.trim().to_string()));
    }
    if let Some(scope) = RankScope::parse(text) {
        return Some(Command::Rank(scope));
    }
    if let Some(vote) = super::polls::parse_vote(text) {
        return Some(Command::Vote(vote.map_err(str::to_owned)));
    }
    let item = text.strip_prefix("兑换")?.trim();
    Some(Command::Redeem(item.to_string()))
}

pub fn on_message(cx: &MessageContext) -> Vec<Action> {
    match parse(cx.rules, &cx.message.text) {
        None => Vec::new(),
        Some(Command::CheckIn) => super::expiry::with_notice(cx, checkin::on_checkin(cx)),
        Some(Command::MakeUp(target)) => checkin::on_makeup(cx, target),
        Some(Command::Points) => super::expiry::with_notice(cx, points::on_points(cx)),
        Some(Command::Level) => points::on_level(cx),
        Some(Command::Rank(scope)) => points::on_rank(cx, scope),
        Some(Command::Redeem(item)) => points::on_redeem(cx, &item),
        Some(Command::Appeal(why)) => super::review::on_appeal(cx, &why),
        Some(Command::Honour) => super::honour::on_board(cx),
        Some(Command::Badges) => super::honour::on_badges(cx),
        Some(Command::Vote(choice)) => super::polls::on_vote(cx, &choice),
        Some(Command::Help) => vec![cx.reply(help_text(cx.rules))],
    }
}

/// What the bot understands, with the catalog's items: the answer to 帮助 and
/// the smart bot's greeting when a member opens a chat with it.
pub fn help_text(rules: &RuleSet) -> String {
    let items: Vec<&str> = rules.doc.catalog.iter().map(|i| i.item.as_str()).collect();
    rules.render(
        "help",
        &HelpVars {
            items: items.join("、"),
            helpful: rules.doc.ugc.helpful,
        },
    )
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
            let chat_id = message.chat_id.as_deref().unwrap_or_default();
            return Outbound::to_chat(
                key,
                ChatAddress::of(snapshot.chat.as_ref(), chat_id),
                MessageKind::Reply,
                Content::text_mentioning(text, vec![message.sender.clone()]),
            );
        }
    };
    Outbound::new(key, route, Content::text(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_recognised_with_surrounding_space() {
        let rules = RuleSet::builtin();
        assert_eq!(parse(&rules, " 签到 "), Some(Command::CheckIn));
        assert_eq!(parse(&rules, "打卡"), Some(Command::CheckIn));
        assert_eq!(
            parse(&rules, "补签"),
            Some(Command::MakeUp(checkin::MakeupTarget::LatestMissed))
        );
        assert_eq!(
            parse(&rules, "补签 3"),
            Some(Command::MakeUp(checkin::MakeupTarget::DaysAgo(3)))
        );
        assert_eq!(parse(&rules, "积分"), Some(Command::Points));
        assert_eq!(parse(&rules, "排行"), Some(Command::Rank(RankScope::WEEK)));
        let month = RankScope {
            period: RankPeriod::Month,
            this_chat: false,
        };
        assert_eq!(parse(&rules, "排行 月"), Some(Command::Rank(month)));
        assert_eq!(parse(&rules, "月榜"), Some(Command::Rank(month)));
        let chat_total = RankScope {
            period: RankPeriod::AllTime,
            this_chat: true,
        };
        assert_eq!(
            parse(&rules, "本群排行 总"),
            Some(Command::Rank(chat_total))
        );
        assert_eq!(parse(&rules, "排行 群 总"), Some(Command::Rank(chat_total)));
        assert_eq!(parse(&rules, "排行一下我"), None);
        assert_eq!(parse(&rules, "榜"), Some(Command::Rank(RankScope::WEEK)));
        assert_eq!(parse(&rules, "等级"), Some(Command::Level));
        assert_eq!(parse(&rules, "帮助"), Some(Command::Help));
        assert_eq!(
            parse(&rules, "兑换 保温杯"),
            Some(Command::Redeem("保温杯".into()))
        );
        assert_eq!(parse(&rules, "今天签到了吗"), None);
    }
}
