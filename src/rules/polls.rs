//! Polls (投票), the pure part: validating a manager's poll, reading a
//! keyword ballot (`投 2`, `投 1 3`), deciding whether a ballot counts, the
//! tally, the texts and the vote card. No I/O, no clock: `now` and the poll's
//! state arrive as values.
//!
//! Where the ballots come from (docs/wecom.md#template-cards): internal groups
//! with a long-connection smart bot get a `vote_interaction` card whose clicks
//! are ballots; everywhere else members vote by keyword — to the smart bot,
//! 1:1 to the app, or in a customer group, read from the message archive.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::segment_limit::{self, SegmentRef};
use super::{Action, MessageContext};

/// Bounds WeCom's `vote_interaction` card sets (1–20 options); a poll needs two.
pub const MIN_OPTIONS: usize = 2;
pub const MAX_OPTIONS: usize = 20;
const MAX_QUESTION_CHARS: usize = 200;
const MAX_OPTION_CHARS: usize = 60;
/// The card's `checkbox.question_key` and `submit_button.key`.
pub const CARD_QUESTION_KEY: &str = "poll";
pub const CARD_SUBMIT_KEY: &str = "poll_submit";
/// Prefix of a poll card's `task_id`; the rest is `<poll id>_<n>`.
pub const TASK_PREFIX: &str = "poll_";

/// What a manager asks for; checked by [`PollSpec::validate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollSpec {
    pub question: String,
    pub options: Vec<String>,
    #[serde(default)]
    pub multiple: bool,
    pub open_at: DateTime<Utc>,
    pub close_at: DateTime<Utc>,
    #[serde(default)]
    pub chats: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub allow_change: bool,
    #[serde(default)]
    pub points_per_vote: i64,
    /// Total points the poll pays out, earliest ballots first; 0: no cap.
    #[serde(default)]
    pub points_cap: i64,
    /// Only members of this saved segment (at the moment they vote) may vote.
    #[serde(default)]
    pub segment_id: Option<i64>,
}

/// A refused poll: `field` names the input to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError {
        field,
        reason: reason.into(),
    }
}

impl PollSpec {
    /// Trims the texts and lists, then checks every field.
    pub fn validate(mut self) -> Result<PollSpec, SpecError> {
        self.question = self.question.trim().to_owned();
        let tidy = |list: Vec<String>| -> Vec<String> {
            list.iter()
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect()
        };
        self.options = tidy(self.options);
        self.chats = dedup(tidy(self.chats));
        self.tags = dedup(tidy(self.tags));
        if self.question.is_empty() {
            return Err(refuse("question", "the question is empty"));
        }
        if self.question.chars().count() > MAX_QUESTION_CHARS {
            return Err(refuse(
                "question",
                format!("at most {MAX_QUESTION_CHARS} characters"),
            ));
        }
        if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&self.options.len()) {
            return Err(refuse(
                "options",
                format!(
                    "a poll has {MIN_OPTIONS} to {MAX_OPTIONS} options, not {}",
                    self.options.len()
                ),
            ));
        }
        if let Some(long) = self
            .options
            .iter()
            .position(|o| o.chars().count() > MAX_OPTION_CHARS)
        {
            return Err(refuse(
                "options",
                format!(
                    "option {} is longer than {MAX_OPTION_CHARS} characters",
                    long + 1
                ),
            ));
        }
        for (i, option) in self.options.iter().enumerate() {
            if self.options[..i].contains(option) {
                return Err(refuse(
                    "options",
                    format!("option {} repeats {option:?}", i + 1),
                ));
            }
        }
        if self.close_at <= self.open_at {
            return Err(refuse("close_at", "must be after open_at"));
        }
        if self.chats.is_empty() && self.tags.is_empty() {
            return Err(refuse("chats", "name at least one chat or chat tag"));
        }
        if self.points_per_vote < 0 {
            return Err(refuse("points_per_vote", "must not be negative"));
        }
        if self.points_cap < 0 {
            return Err(refuse("points_cap", "must not be negative (0: no cap)"));
        }
        Ok(self)
    }
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut seen = Vec::with_capacity(list.len());
    for item in list {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// A poll's life: announced at `open_at`, closed (result out) at `close_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollStatus {
    Scheduled,
    Open,
    Closed,
}

impl PollStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PollStatus::Scheduled => "scheduled",
            PollStatus::Open => "open",
            PollStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<PollStatus> {
        match text {
            "scheduled" => Some(PollStatus::Scheduled),
            "open" => Some(PollStatus::Open),
            "closed" => Some(PollStatus::Closed),
            _ => None,
        }
    }
}

/// What a ballot is judged against: the poll and the member's earlier ballot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ballot {
    pub poll_id: i64,
    pub question: String,
    pub options: Vec<String>,
    pub multiple: bool,
    pub allow_change: bool,
    pub status: PollStatus,
    pub open_at: DateTime<Utc>,
    pub close_at: DateTime<Utc>,
    /// The member's ballot so far (1-based option numbers).
    pub previous: Option<Vec<u32>>,
    /// The member may vote: the ballot comes from one of the poll's chats,
    /// or (1:1) from a member of one of them.
    pub eligible: bool,
    /// The saved segment the poll is limited to, if any …
    #[serde(default)]
    pub segment: Option<SegmentRef>,
    /// … and whether the member is in it right now (the edge evaluates it).
    #[serde(default)]
    pub in_segment: bool,
}

/// A keyword ballot: `投 2`, `投 1 3`, `投1,3`, `投票 2`. `None` for any
/// other text (`投诉` is not a ballot); `Some(Err)` for `投` with no number.
pub fn parse_vote(text: &str) -> Option<Result<Vec<u32>, &'static str>> {
    let text = text.trim();
    let rest = text
        .strip_prefix("投票")
        .or_else(|| text.strip_prefix('投'))?;
    let separators = |c: char| c.is_whitespace() || matches!(c, ',' | '，' | '、' | '.' | '。');
    if !rest.chars().all(|c| c.is_ascii_digit() || separators(c)) {
        return None;
    }
    let mut numbers: Vec<u32> = rest
        .split(separators)
        .filter(|part| !part.is_empty())
        .filter_map(|part| part.parse().ok())
        .collect();
    if numbers.is_empty() {
        return Some(Err("请写上选项编号，例如：投 2"));
    }
    numbers.sort_unstable();
    numbers.dedup();
    Some(Ok(numbers))
}

/// What to do with one ballot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteDecision {
    /// Store it (replacing the earlier ballot when `changed`), answer `reply`.
    Record {
        options: Vec<u32>,
        changed: bool,
        reply: String,
    },
    /// Nothing is stored; the member is told why.
    Refuse { reply: String },
}

/// Whether `choice` counts for `ballot` at `now`.
pub fn decide(ballot: &Ballot, choice: &[u32], now: DateTime<Utc>) -> VoteDecision {
    let refuse = |reply: String| VoteDecision::Refuse { reply };
    if ballot.status == PollStatus::Closed || now >= ballot.close_at {
        return refuse(format!(
            "投票「{}」已截止，本次投票未计入。",
            ballot.question
        ));
    }
    if ballot.status == PollStatus::Scheduled || now < ballot.open_at {
        return refuse(format!("投票「{}」还没有开始。", ballot.question));
    }
    if !ballot.eligible {
        return refuse(format!(
            "你不在投票「{}」的群里，不能参加这次投票。",
            ballot.question
        ));
    }
    if let Some(reason) = segment_limit::refusal(ballot.segment.as_ref(), ballot.in_segment) {
        return refuse(format!("{reason}，本次投票未计入。"));
    }
    let mut options: Vec<u32> = choice.to_vec();
    options.sort_unstable();
    options.dedup();
    let count = ballot.options.len() as u32;
    if options.is_empty() {
        return refuse("请选择至少一个选项。".to_owned());
    }
    if let Some(bad) = options.iter().find(|n| **n == 0 || **n > count) {
        return refuse(format!("没有选项 {bad}：请在 1–{count} 中选择。"));
    }
    if !ballot.multiple && options.len() > 1 {
        return refuse("这是单选投票，请只选一个选项。".to_owned());
    }
    let chosen = describe_choice(&ballot.options, &options);
    match &ballot.previous {
        Some(previous) if previous == &options => {
            refuse(format!("你已投过票：{chosen}，本次未重复计入。"))
        }
        Some(previous) if !ballot.allow_change => refuse(format!(
            "你已投过票：{}。本投票不允许改票。",
            describe_choice(&ballot.options, previous)
        )),
        Some(_) => VoteDecision::Record {
            options,
            changed: true,
            reply: format!("已改票：{chosen}。"),
        },
        None => VoteDecision::Record {
            options,
            changed: false,
            reply: format!("投票成功：{chosen}。"),
        },
    }
}

/// `2. 红茶、3. 咖啡`.
pub fn describe_choice(options: &[String], chosen: &[u32]) -> String {
    chosen
        .iter()
        .filter_map(|n| {
            let text = options.get((*n as usize).checked_sub(1)?)?;
            Some(format!("{n}. {text}"))
        })
        .collect::<Vec<_>>()
        .join("、")
}

/// Votes per option (index 0 = option 1). Out-of-range numbers are ignored.
pub fn tally(option_count: usize, ballots: &[Vec<u32>]) -> Vec<u32> {
    let mut counts = vec![0u32; option_count];
    for ballot in ballots {
        for n in ballot {
            if let Some(count) = (*n as usize).checked_sub(1).and_then(|i| counts.get_mut(i)) {
                *count += 1;
            }
        }
    }
    counts
}

/// The announcement at open (where no card can go).
pub fn open_text(question: &str, options: &[String], multiple: bool, close_at: &str) -> String {
    let mut text = format!("【投票】{question}\n");
    for (i, option) in options.iter().enumerate() {
        text.push_str(&format!("{}. {option}\n", i + 1));
    }
    let how = if multiple {
        "回复「投 编号」参与，可多选，例如：投 1 3"
    } else {
        "回复「投 编号」参与，例如：投 2"
    };
    text.push_str(&format!("{how}\n截止：{close_at}"));
    text
}

/// The result at close: counts and shares per option, the winner(s) first line.
pub fn result_text(question: &str, options: &[String], counts: &[u32], voters: usize) -> String {
    let top = counts.iter().copied().max().unwrap_or(0);
    let winners: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| top > 0 && **c == top)
        .map(|(i, _)| format!("{}. {}", i + 1, options.get(i).map_or("", String::as_str)))
        .collect();
    let mut text = format!("【投票结果】{question}\n");
    if winners.is_empty() {
        text.push_str("无人投票。\n");
    } else {
        text.push_str(&format!("胜出：{}\n", winners.join("、")));
    }
    for (i, option) in options.iter().enumerate() {
        let count = counts.get(i).copied().unwrap_or(0);
        let share = (count as usize * 100 + voters / 2)
            .checked_div(voters)
            .unwrap_or(0);
        text.push_str(&format!("{}. {option}：{count} 票（{share}%）\n", i + 1));
    }
    text.push_str(&format!("共 {voters} 人参与，感谢投票！"));
    text
}

/// Points per voter at close: `per_vote` each, in ballot order, until the
/// poll's `cap` (0: none) is spent. `voters` are in the order they voted.
pub fn rewards(voters: &[String], per_vote: i64, cap: i64) -> Vec<(String, i64)> {
    if per_vote <= 0 {
        return Vec::new();
    }
    let mut left = if cap > 0 { cap } else { i64::MAX };
    let mut paid = Vec::new();
    for voter in voters {
        let amount = per_vote.min(left);
        if amount <= 0 {
            break;
        }
        left -= amount;
        paid.push((voter.clone(), amount));
    }
    paid
}

/// A card's `task_id`: `poll_<id>_<n>` (WeCom allows `[0-9A-Za-z_-@]`, unique per bot).
pub fn task_id(poll_id: i64, n: usize) -> String {
    format!("{TASK_PREFIX}{poll_id}_{n}")
}

/// The poll id in a card's `task_id`, when it is a poll card.
pub fn poll_of_task(task_id: &str) -> Option<i64> {
    let rest = task_id.strip_prefix(TASK_PREFIX)?;
    let (id, _) = rest.split_once('_')?;
    id.parse().ok()
}

/// The `vote_interaction` card (docs/wecom.md#template-cards); `chosen` marks
/// the member's options and, when set, turns the button into "已投票".
pub fn card(
    task_id: &str,
    question: &str,
    options: &[String],
    multiple: bool,
    chosen: Option<&[u32]>,
) -> Value {
    let option_list: Vec<Value> = options
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let n = i as u32 + 1;
            json!({
                "id": n.to_string(),
                "text": text,
                "is_checked": chosen.is_some_and(|c| c.contains(&n)),
            })
        })
        .collect();
    let mut card = json!({
        "card_type": "vote_interaction",
        "main_title": {"title": "投票", "desc": question},
        "task_id": task_id,
        "checkbox": {
            "question_key": CARD_QUESTION_KEY,
            "mode": u8::from(multiple),
            "option_list": option_list,
        },
        "submit_button": {
            "text": if chosen.is_some() { "已投票" } else { "投票" },
            "key": CARD_SUBMIT_KEY,
        },
    });
    if chosen.is_some() {
        card["checkbox"]["disable"] = json!(true);
    }
    card
}

/// The options a card click selected (`selected_items.selected_item[]`),
/// as option numbers.
pub fn card_choice(detail: &Value) -> Vec<u32> {
    let items = detail
        .pointer("/selected_items/selected_item")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut chosen: Vec<u32> = items
        .iter()
        .filter(|item| {
            item.get("question_key").and_then(Value::as_str) == Some(CARD_QUESTION_KEY)
                || item.get("question_key").is_none()
        })
        .flat_map(|item| {
            item.pointer("/option_ids/option_id")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|id| match id {
            Value::String(text) => text.parse().ok(),
            Value::Number(number) => number.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        })
        .collect();
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// A keyword ballot (`投 N`) from any door: decided against the poll the
/// snapshot found for the chat (or, 1:1, for the member), answered the way
/// the message came in.
pub fn on_vote(cx: &MessageContext, choice: &Result<Vec<u32>, String>) -> Vec<Action> {
    let answer = |text: String| cx.reply(text);
    let Some(ballot) = &cx.snapshot.ballot else {
        return vec![answer("现在没有你可以参加的投票。".to_owned())];
    };
    let choice = match choice {
        Ok(choice) => choice,
        Err(reason) => return vec![answer(reason.clone())],
    };
    match decide(ballot, choice, cx.now) {
        VoteDecision::Refuse { reply } => vec![answer(reply)],
        VoteDecision::Record { options, reply, .. } => vec![
            Action::RecordVote {
                poll_id: ballot.poll_id,
                user_id: cx.message.sender.clone(),
                options,
                chat_id: cx.message.chat_id.clone(),
                via: "keyword",
                at: cx.now,
            },
            answer(format!(
                "{}，{reply}（{}）",
                cx.snapshot.person(&cx.message.sender).display_name(),
                ballot.question
            )),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, hour, 0, 0).unwrap()
    }

    fn spec() -> PollSpec {
        PollSpec {
            question: " 下次活动喝什么？ ".into(),
            options: vec!["奶茶".into(), "红茶".into(), " 咖啡 ".into()],
            open_at: at(8),
            close_at: at(20),
            chats: vec!["wr1".into(), "wr1".into()],
            ..PollSpec::default()
        }
    }

    fn ballot() -> Ballot {
        let spec = spec().validate().unwrap();
        Ballot {
            poll_id: 1,
            question: spec.question,
            options: spec.options,
            multiple: false,
            allow_change: false,
            status: PollStatus::Open,
            open_at: at(8),
            close_at: at(20),
            previous: None,
            eligible: true,
            segment: None,
            in_segment: false,
        }
    }

    #[test]
    fn a_spec_is_tidied_and_each_mistake_names_its_field() {
        let tidy = spec().validate().unwrap();
        assert_eq!(tidy.question, "下次活动喝什么？");
        assert_eq!(tidy.options[2], "咖啡");
        assert_eq!(tidy.chats, vec!["wr1".to_owned()]);
        let field = |change: fn(&mut PollSpec)| {
            let mut spec = spec();
            change(&mut spec);
            spec.validate().unwrap_err().field
        };
        assert_eq!(field(|s| s.question = " ".into()), "question");
        assert_eq!(field(|s| s.options.truncate(1)), "options");
        assert_eq!(field(|s| s.options = vec!["a".into(); 21]), "options");
        assert_eq!(field(|s| s.options[1] = "奶茶".into()), "options");
        assert_eq!(field(|s| s.close_at = s.open_at), "close_at");
        assert_eq!(field(|s| s.chats.clear()), "chats");
        assert_eq!(field(|s| s.points_per_vote = -1), "points_per_vote");
        assert_eq!(field(|s| s.points_cap = -5), "points_cap");
    }

    #[test]
    fn keyword_ballots_are_read_and_other_words_are_not() {
        assert_eq!(parse_vote("投 2"), Some(Ok(vec![2])));
        assert_eq!(parse_vote(" 投 3 1 "), Some(Ok(vec![1, 3])));
        assert_eq!(parse_vote("投1,3，3"), Some(Ok(vec![1, 3])));
        assert_eq!(parse_vote("投票 2"), Some(Ok(vec![2])));
        assert!(matches!(parse_vote("投"), Some(Err(_))));
        assert_eq!(parse_vote("投诉"), None);
        assert_eq!(parse_vote("投 红茶"), None);
        assert_eq!(parse_vote("我投 2"), None);
    }

    #[test]
    fn a_ballot_counts_once_unless_changes_are_allowed() {
        let now = at(12);
        assert!(matches!(
            decide(&ballot(), &[2], now),
            VoteDecision::Record { changed: false, .. }
        ));
        let voted = Ballot {
            previous: Some(vec![2]),
            ..ballot()
        };
        assert!(matches!(
            decide(&voted, &[3], now),
            VoteDecision::Refuse { .. }
        ));
        assert!(matches!(
            decide(&voted, &[2], now),
            VoteDecision::Refuse { .. }
        ));
        let changeable = Ballot {
            allow_change: true,
            ..voted
        };
        assert!(matches!(
            decide(&changeable, &[3], now),
            VoteDecision::Record { changed: true, .. }
        ));
    }

    #[test]
    fn closed_early_ineligible_and_malformed_ballots_are_refused_with_a_reason() {
        let reply = |ballot: &Ballot, choice: &[u32], now| match decide(ballot, choice, now) {
            VoteDecision::Refuse { reply } => reply,
            other => panic!("{other:?}"),
        };
        assert!(reply(&ballot(), &[1], at(20)).contains("已截止"));
        let closed = Ballot {
            status: PollStatus::Closed,
            ..ballot()
        };
        assert!(reply(&closed, &[1], at(12)).contains("已截止"));
        assert!(reply(&ballot(), &[1], at(7)).contains("还没有开始"));
        let outsider = Ballot {
            eligible: false,
            ..ballot()
        };
        assert!(reply(&outsider, &[1], at(12)).contains("不在"));
        let limited = Ballot {
            segment: Some(SegmentRef {
                id: 2,
                name: Some("核心会员".into()),
            }),
            ..ballot()
        };
        assert_eq!(
            reply(&limited, &[1], at(12)),
            "本次活动只限「核心会员」参加，本次投票未计入。"
        );
        let member = Ballot {
            in_segment: true,
            ..limited
        };
        assert!(matches!(
            decide(&member, &[1], at(12)),
            VoteDecision::Record { .. }
        ));
        assert!(reply(&ballot(), &[4], at(12)).contains("没有选项 4"));
        assert!(reply(&ballot(), &[1, 2], at(12)).contains("单选"));
        let multi = Ballot {
            multiple: true,
            ..ballot()
        };
        assert!(matches!(
            decide(&multi, &[1, 2], at(12)),
            VoteDecision::Record { .. }
        ));
    }

    #[test]
    fn the_tally_and_result_name_the_winner_with_counts_and_shares() {
        let options: Vec<String> = vec!["奶茶".into(), "红茶".into(), "咖啡".into()];
        let counts = tally(3, &[vec![2], vec![2], vec![1], vec![9]]);
        assert_eq!(counts, vec![1, 2, 0]);
        let text = result_text("喝什么？", &options, &counts, 4);
        assert!(text.contains("胜出：2. 红茶"), "{text}");
        assert!(text.contains("2. 红茶：2 票（50%）"), "{text}");
        assert!(text.contains("共 4 人参与"), "{text}");
        assert!(result_text("q", &options, &[0, 0, 0], 0).contains("无人投票"));
    }

    #[test]
    fn rewards_follow_ballot_order_until_the_cap() {
        let voters: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        assert_eq!(
            rewards(&voters, 5, 12),
            vec![("a".into(), 5), ("b".into(), 5), ("c".into(), 2)]
        );
        assert_eq!(rewards(&voters, 5, 0).len(), 3);
        assert!(rewards(&voters, 0, 10).is_empty());
    }

    #[test]
    fn cards_carry_the_task_id_and_clicks_read_back_as_option_numbers() {
        let options: Vec<String> = vec!["奶茶".into(), "红茶".into()];
        let id = task_id(7, 0);
        assert_eq!(poll_of_task(&id), Some(7));
        assert_eq!(poll_of_task("lottery_7_0"), None);
        let fresh = card(&id, "q", &options, false, None);
        assert_eq!(fresh["task_id"], "poll_7_0");
        assert_eq!(fresh["checkbox"]["mode"], 0);
        assert_eq!(fresh["submit_button"]["text"], "投票");
        let voted = card(&id, "q", &options, false, Some(&[2]));
        assert_eq!(voted["submit_button"]["text"], "已投票");
        assert_eq!(voted["checkbox"]["option_list"][1]["is_checked"], true);
        let click = json!({"selected_items": {"selected_item": [
            {"question_key": "poll", "option_ids": {"option_id": ["2", "1"]}}
        ]}});
        assert_eq!(card_choice(&click), vec![1, 2]);
    }
}
