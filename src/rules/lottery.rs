//! Verifiable lotteries (抽奖): who may enter, the commit–reveal draw, and its
//! verification. Pure: the seed arrives as bytes, time as `now`, state as a
//! [`LotteryContext`] the snapshot loaded.
//!
//! The draw (written out for anyone to recompute in `docs/lottery.md`):
//! the entrants are sorted by their UTF-8 bytes and de-duplicated; for
//! `k = 0, 1, 2, …` the block `HMAC-SHA256(key = seed, msg = k as 8 bytes
//! big-endian)` gives `x`, its first 8 bytes read as a big-endian integer;
//! with `n` entrants still in the list, `x` is rejected when
//! `x >= floor(2^64 / n) * n` (so every index is equally likely), else the
//! entrant at index `x mod n` is drawn and removed from the list. Winners are
//! the first draws, in draw order; the first prize takes the first winners.
//! The commitment published at the announcement is `SHA-256(seed)`.

use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ruleset::Level;
use super::segment_limit::{self, SegmentRef};
use super::{Action, MessageContext, PersonSnapshot};

/// Who may enter a lottery, besides being in one of its chats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    /// Must have checked in on the community day of entry.
    pub checked_in_today: bool,
    /// Must have reached the N-th level of `points.levels` (1 = the first).
    pub min_level: Option<u32>,
    /// Must have been in the community (first seen or joined) before this instant.
    pub joined_before: Option<DateTime<Utc>>,
    /// Points paid to enter (a ledger debit, refunded if the lottery is cancelled).
    pub entry_cost: i64,
    /// Must be in this saved segment at the moment of entry.
    #[serde(default)]
    pub segment: Option<SegmentRef>,
}

/// Why a member may not enter. The text is what they are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ineligible {
    NotInChats,
    NotCheckedIn,
    LevelTooLow {
        need: u32,
        have: u32,
    },
    JoinedTooLate {
        before: DateTime<Utc>,
    },
    JoinUnknown,
    CannotPay {
        cost: i64,
        balance: i64,
    },
    /// Outside the lottery's segment: the text says which.
    NotInSegment(String),
}

impl Ineligible {
    pub fn reason(&self) -> String {
        match self {
            Ineligible::NotInChats => "本次抽奖只限活动群的成员参加".to_owned(),
            Ineligible::NotCheckedIn => "需要今天先签到才能参加".to_owned(),
            Ineligible::LevelTooLow { need, have } => {
                format!("需要达到第 {need} 级（你现在第 {have} 级）")
            }
            Ineligible::JoinedTooLate { before } => format!(
                "只限 {} 之前入群的成员参加",
                before.format("%Y-%m-%d %H:%M UTC")
            ),
            Ineligible::JoinUnknown => "还不知道你的入群时间，暂时不能参加".to_owned(),
            Ineligible::CannotPay { cost, balance } => {
                format!("参加需要 {cost} 积分，你现在只有 {balance} 积分")
            }
            Ineligible::NotInSegment(reason) => reason.clone(),
        }
    }
}

/// The facts about one would-be entrant that eligibility looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrantFacts {
    pub in_lottery_chat: bool,
    pub checked_in_today: bool,
    /// Reached level (1-based; 0 = none).
    pub level: u32,
    /// When they first joined a chat (or were first seen).
    pub joined_at: Option<DateTime<Utc>>,
    pub balance: i64,
    /// In the lottery's segment right now (looked at only when it names one).
    pub in_segment: bool,
}

/// The level number `lifetime` points reach: how many levels' minimum it meets.
pub fn level_number(levels: &[Level], lifetime: i64) -> u32 {
    let reached = levels.iter().filter(|l| lifetime >= l.min_points).count();
    u32::try_from(reached).unwrap_or(u32::MAX)
}

impl EntrantFacts {
    pub fn of(
        person: &PersonSnapshot,
        levels: &[Level],
        today: NaiveDate,
        joined_at: Option<DateTime<Utc>>,
        in_lottery_chat: bool,
        in_segment: bool,
    ) -> Self {
        EntrantFacts {
            in_lottery_chat,
            checked_in_today: person.checkin_days.contains(&today),
            level: level_number(levels, person.lifetime_points),
            joined_at,
            balance: person.balance,
            in_segment,
        }
    }
}

/// The first rule `facts` break, if any.
pub fn check(rules: &Eligibility, facts: &EntrantFacts) -> Result<(), Ineligible> {
    if !facts.in_lottery_chat {
        return Err(Ineligible::NotInChats);
    }
    if let Some(reason) = segment_limit::refusal(rules.segment.as_ref(), facts.in_segment) {
        return Err(Ineligible::NotInSegment(reason));
    }
    if rules.checked_in_today && !facts.checked_in_today {
        return Err(Ineligible::NotCheckedIn);
    }
    if let Some(need) = rules.min_level.filter(|need| facts.level < *need) {
        return Err(Ineligible::LevelTooLow {
            need,
            have: facts.level,
        });
    }
    if let Some(before) = rules.joined_before {
        match facts.joined_at {
            None => return Err(Ineligible::JoinUnknown),
            Some(joined) if joined >= before => return Err(Ineligible::JoinedTooLate { before }),
            Some(_) => {}
        }
    }
    if rules.entry_cost > 0 && facts.balance < rules.entry_cost {
        return Err(Ineligible::CannotPay {
            cost: rules.entry_cost,
            balance: facts.balance,
        });
    }
    Ok(())
}

/// A chat as lotteries target it: by id or by tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatTarget {
    pub chat_id: String,
    pub tags: Vec<String>,
}

/// A lottery still taking entries by keyword, as the snapshot loads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenLottery {
    pub id: i64,
    pub title: String,
    pub keyword: String,
    pub chats: Vec<String>,
    pub tags: Vec<String>,
    pub eligibility: Eligibility,
    pub draw_at: DateTime<Utc>,
    pub commitment: String,
    /// The sender already entered.
    pub entered: bool,
    /// The sender is in the lottery's segment right now (the snapshot
    /// evaluates it; looked at only when the lottery names one).
    #[serde(default)]
    pub in_segment: bool,
}

impl OpenLottery {
    pub fn targets(&self, chat: &ChatTarget) -> bool {
        self.chats.contains(&chat.chat_id) || chat.tags.iter().any(|t| self.tags.contains(t))
    }
}

/// What the snapshot loads for a message that is some open lottery's keyword.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotteryContext {
    pub open: Vec<OpenLottery>,
    /// The sender's earliest join (or first sighting).
    pub joined_at: Option<DateTime<Utc>>,
    /// The chats the sender is a current member of, plus the chat the message came from.
    pub sender_chats: Vec<ChatTarget>,
}

/// The ledger reference of an entry fee, and of its refund.
pub fn entry_reference(lottery_id: i64, user_id: &str) -> String {
    format!("lottery_entry:{lottery_id}:{user_id}")
}

pub fn refund_reference(lottery_id: i64, user_id: &str) -> String {
    format!("lottery_refund:{lottery_id}:{user_id}")
}

/// The ledger (or redemption) reference of a prize: one per lottery and winner.
pub fn prize_reference(lottery_id: i64, user_id: &str) -> String {
    format!("lottery_prize:{lottery_id}:{user_id}")
}

/// A member sent a lottery's keyword: enter them, or tell them why not.
/// Returns nothing when the text is no open lottery's keyword here.
pub fn on_message(cx: &MessageContext) -> Vec<Action> {
    let context = &cx.snapshot.lotteries;
    let text = cx.message.text.trim();
    let Some(lottery) = context.open.iter().find(|l| {
        l.keyword == text && cx.now < l.draw_at && context.sender_chats.iter().any(|c| l.targets(c))
    }) else {
        return Vec::new();
    };
    let person = cx.snapshot.person(&cx.message.sender);
    let name = person.display_name();
    if lottery.entered {
        let text = format!("{name} 已经参加了「{}」，等开奖吧", lottery.title);
        return vec![cx.reply(text)];
    }
    let today = cx.rules.community_day(cx.now);
    let facts = EntrantFacts::of(
        &person,
        &cx.rules.doc.points.levels,
        today,
        context.joined_at,
        true,
        lottery.in_segment,
    );
    if let Err(why) = check(&lottery.eligibility, &facts) {
        let text = format!("{name} 暂时不能参加「{}」：{}", lottery.title, why.reason());
        return vec![cx.reply(text)];
    }
    let cost = lottery.eligibility.entry_cost.max(0);
    let paid = if cost > 0 {
        format!("，已扣 {cost} 积分")
    } else {
        String::new()
    };
    let text = format!(
        "{name} 参加「{}」成功{paid}。开奖时间 {}，承诺值 {}",
        lottery.title,
        lottery
            .draw_at
            .with_timezone(&cx.rules.timezone)
            .format("%m-%d %H:%M"),
        short(&lottery.commitment)
    );
    vec![
        Action::EnterLottery {
            lottery_id: lottery.id,
            user_id: person.user_id.clone(),
            cost,
            chat_id: cx.message.chat_id.clone(),
            day: today,
            at: cx.now,
        },
        cx.reply(text),
    ]
}

/// The first 16 hex digits, enough to recognise a commitment in a chat line.
pub fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

// ---------------------------------------------------------------- draw ---

/// `SHA-256(seed)`, lowercase hex: published at the announcement.
pub fn commitment(seed: &[u8]) -> String {
    hex::encode(Sha256::digest(seed))
}

/// The entrant list as the draw sees it: sorted by UTF-8 bytes, each id once,
/// blank ids dropped.
pub fn sorted_entrants<S: AsRef<str>>(entrants: &[S]) -> Vec<String> {
    let mut sorted: Vec<String> = entrants
        .iter()
        .map(|e| e.as_ref().trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    sorted.sort();
    sorted.dedup();
    sorted
}

/// The entrant file anyone can download: one id per line, sorted, each line
/// ending in `\n`. [`entrants_digest`] is its SHA-256.
pub fn entrants_file(sorted: &[String]) -> String {
    sorted.iter().map(|e| format!("{e}\n")).collect()
}

pub fn entrants_digest(sorted: &[String]) -> String {
    hex::encode(Sha256::digest(entrants_file(sorted).as_bytes()))
}

/// The first `count` draws from `entrants` (sorted first) under `seed`, in
/// draw order. See the module documentation for the exact procedure.
pub fn draw<S: AsRef<str>>(seed: &[u8], entrants: &[S], count: usize) -> Vec<String> {
    let mut remaining = sorted_entrants(entrants);
    let mut drawn = Vec::with_capacity(count.min(remaining.len()));
    let mut k: u64 = 0;
    while drawn.len() < count && !remaining.is_empty() {
        let x = block(seed, k);
        k += 1;
        let n = remaining.len() as u64;
        // Reject the top of the range that n does not divide evenly, so every
        // index is equally likely.
        let limit = (1u128 << 64) / u128::from(n) * u128::from(n);
        if u128::from(x) >= limit {
            continue;
        }
        let index = usize::try_from(x % n).expect("index below the list length");
        drawn.push(remaining.remove(index));
    }
    drawn
}

fn block(seed: &[u8], k: u64) -> u64 {
    let mut mac = Hmac::<Sha256>::new_from_slice(seed).expect("HMAC takes any key length");
    mac.update(&k.to_be_bytes());
    let bytes = mac.finalize().into_bytes();
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// Splits the draw order over the prizes: the first prize takes the first
/// `winners[0]` draws, and so on. Returns (prize index, user) pairs.
pub fn assign(winners_per_prize: &[u32], order: &[String]) -> Vec<(usize, String)> {
    let mut order = order.iter();
    let mut out = Vec::new();
    for (prize, count) in winners_per_prize.iter().enumerate() {
        for _ in 0..*count {
            match order.next() {
                Some(user) => out.push((prize, user.clone())),
                None => return out,
            }
        }
    }
    out
}

/// Why a verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the seed is not hex: {0}")]
    SeedNotHex(String),
    #[error("SHA-256(seed) is {actual}, the published commitment is {published}")]
    CommitmentMismatch { actual: String, published: String },
}

/// Recomputes a draw from the revealed seed (hex): checks it against the
/// published commitment when given, and returns the first `count` draws.
pub fn verify<S: AsRef<str>>(
    seed_hex: &str,
    published: Option<&str>,
    entrants: &[S],
    count: usize,
) -> Result<Vec<String>, VerifyError> {
    let seed = hex::decode(seed_hex.trim()).map_err(|e| VerifyError::SeedNotHex(e.to_string()))?;
    if let Some(published) = published {
        let actual = commitment(&seed);
        if !actual.eq_ignore_ascii_case(published.trim()) {
            return Err(VerifyError::CommitmentMismatch {
                actual,
                published: published.trim().to_owned(),
            });
        }
    }
    Ok(draw(&seed, entrants, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn users(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("user{i:03}")).collect()
    }

    #[test]
    fn the_draw_is_a_fixed_function_of_seed_and_sorted_entrants() {
        let seed = [7u8; 32];
        let list = vec!["lisi", "zhangsan", "wangwu", "zhaoliu"];
        let mut shuffled = list.clone();
        shuffled.reverse();
        shuffled.push("lisi"); // a duplicate changes nothing
        assert_eq!(draw(&seed, &list, 2), draw(&seed, &shuffled, 2));
        // The vector docs/lottery.md's Python reproduces.
        let order = draw(&seed, &list, 4);
        assert_eq!(order.len(), 4);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, sorted_entrants(&list));
        assert_eq!(
            draw(&seed, &list, 10).len(),
            4,
            "never more than the entrants"
        );
        assert!(draw(&seed, &Vec::<String>::new(), 3).is_empty());
    }

    #[test]
    fn the_commitment_is_the_sha256_of_the_seed_and_verify_checks_it() {
        let seed = [1u8; 32];
        let hex_seed = hex::encode(seed);
        let published = commitment(&seed);
        assert_eq!(published.len(), 64);
        let list = users(5);
        assert_eq!(
            verify(&hex_seed, Some(&published), &list, 2).unwrap(),
            draw(&seed, &list, 2)
        );
        assert!(matches!(
            verify(&hex_seed, Some(&commitment(&[2u8; 32])), &list, 2),
            Err(VerifyError::CommitmentMismatch { .. })
        ));
        assert!(matches!(
            verify("zz", None, &list, 2),
            Err(VerifyError::SeedNotHex(_))
        ));
    }

    #[test]
    fn a_known_vector_pins_the_procedure() {
        // Recomputed independently with the Python in docs/lottery.md.
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
            .unwrap();
        let order = draw(&seed, &["alice", "bob", "carol", "dave", "erin"], 5);
        assert_eq!(order, KNOWN_ORDER);
    }

    const KNOWN_ORDER: [&str; 5] = ["alice", "erin", "carol", "dave", "bob"];

    #[test]
    fn replacing_one_losing_entrant_changes_the_winners() {
        // Not only the replaced entrant's fate: everyone's index shifts.
        let seed = [9u8; 32];
        let list = users(20);
        let winners = draw(&seed, &list, 3);
        let loser = list.iter().rev().find(|u| !winners.contains(u)).unwrap();
        let changed: Vec<String> = list
            .iter()
            .map(|u| {
                if u == loser {
                    "newcomer".to_owned()
                } else {
                    u.clone()
                }
            })
            .collect();
        let after = draw(&seed, &changed, 3);
        assert_ne!(winners, after);
        assert!(!after.contains(loser));
    }

    #[test]
    fn prizes_take_the_draw_order_in_turn() {
        let order: Vec<String> = ["c", "a", "b"].map(String::from).to_vec();
        assert_eq!(
            assign(&[1, 3], &order),
            vec![(0, "c".into()), (1, "a".into()), (1, "b".into())]
        );
    }

    #[test]
    fn eligibility_names_the_first_rule_broken() {
        let rules = Eligibility {
            checked_in_today: true,
            min_level: Some(2),
            joined_before: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            entry_cost: 10,
            segment: Some(SegmentRef {
                id: 1,
                name: Some("核心会员".into()),
            }),
        };
        let ok = EntrantFacts {
            in_lottery_chat: true,
            checked_in_today: true,
            level: 2,
            joined_at: Some("2025-06-01T00:00:00Z".parse().unwrap()),
            balance: 10,
            in_segment: true,
        };
        assert_eq!(check(&rules, &ok), Ok(()));
        let not = |f: fn(&mut EntrantFacts)| {
            let mut facts = ok.clone();
            f(&mut facts);
            check(&rules, &facts).unwrap_err()
        };
        assert_eq!(not(|f| f.in_lottery_chat = false), Ineligible::NotInChats);
        assert_eq!(
            not(|f| f.in_segment = false).reason(),
            "本次活动只限「核心会员」参加"
        );
        let open_to_all = Eligibility {
            segment: None,
            ..rules.clone()
        };
        let outside = EntrantFacts {
            in_segment: false,
            ..ok.clone()
        };
        assert_eq!(check(&open_to_all, &outside), Ok(()));
        assert_eq!(
            not(|f| f.checked_in_today = false),
            Ineligible::NotCheckedIn
        );
        assert_eq!(
            not(|f| f.level = 1),
            Ineligible::LevelTooLow { need: 2, have: 1 }
        );
        assert_eq!(not(|f| f.joined_at = None), Ineligible::JoinUnknown);
        assert!(matches!(
            not(|f| f.joined_at = Some("2026-02-01T00:00:00Z".parse().unwrap())),
            Ineligible::JoinedTooLate { .. }
        ));
        assert_eq!(
            not(|f| f.balance = 9),
            Ineligible::CannotPay {
                cost: 10,
                balance: 9
            }
        );
    }

    #[test]
    fn levels_count_from_one() {
        let levels = crate::rules::RuleSet::builtin().doc.points.levels.clone();
        assert_eq!(level_number(&levels, 0), 1);
        assert_eq!(level_number(&levels, 50), 2);
        assert_eq!(level_number(&levels, 10_000), levels.len() as u32);
    }

    proptest! {
        /// Changing one entrant changes the outcome: replacing any entrant
        /// with a newcomer changes the full draw order (with at least two
        /// entrants the order of the others shifts or the newcomer appears).
        #[test]
        fn changing_one_entrant_changes_the_outcome(
            seed in proptest::collection::vec(any::<u8>(), 32),
            n in 2usize..40,
            replaced in 0usize..40,
        ) {
            let list = users(n);
            let mut changed = list.clone();
            changed[replaced % n] = "newcomer".to_owned();
            let before = draw(&seed, &list, n);
            let after = draw(&seed, &changed, n);
            prop_assert_ne!(before, after);
        }

        /// Every entrant is drawn exactly once when all are drawn.
        #[test]
        fn a_full_draw_is_a_permutation(seed in proptest::collection::vec(any::<u8>(), 32), n in 0usize..60) {
            let list = users(n);
            let mut order = draw(&seed, &list, n);
            order.sort();
            prop_assert_eq!(order, list);
        }
    }
}
