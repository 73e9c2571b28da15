//! Behavioural rules as pure functions over plain values: the pipeline loads
//! the member's recent history, passes it in with `now`, and acts on the
//! answer. Nothing here reads a clock or a database.

use chrono::{DateTime, Duration, Utc};

use super::engine::Hit;

/// Why a behavioural rule was refused on save.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BehaviourRuleError {
    #[error("the message count must be at least 1")]
    ZeroCount,
    #[error("the time window must be between 1 second and 7 days")]
    BadWindow,
}

impl BehaviourRuleError {
    /// Stable code for the console.
    pub fn code(&self) -> &'static str {
        match self {
            BehaviourRuleError::ZeroCount => "zero_count",
            BehaviourRuleError::BadWindow => "bad_window",
        }
    }
}

fn check_window(window: Duration) -> Result<Duration, BehaviourRuleError> {
    if window >= Duration::seconds(1) && window <= Duration::days(7) {
        Ok(window)
    } else {
        Err(BehaviourRuleError::BadWindow)
    }
}

/// Flooding: more than `max_messages` messages within `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodRule {
    max_messages: u32,
    window: Duration,
}

impl FloodRule {
    pub fn new(max_messages: u32, window: Duration) -> Result<Self, BehaviourRuleError> {
        if max_messages == 0 {
            return Err(BehaviourRuleError::ZeroCount);
        }
        Ok(Self {
            max_messages,
            window: check_window(window)?,
        })
    }

    pub fn max_messages(&self) -> u32 {
        self.max_messages
    }

    pub fn window(&self) -> Duration {
        self.window
    }
}

/// Whether the message arriving at `now` floods: counting it, the member has
/// sent more than `rule.max_messages` within the window ending at `now`.
/// `earlier_message_times` are the member's earlier messages in the chat, in
/// any order; times outside the window (or in the future) are ignored.
pub fn is_flooding(
    earlier_message_times: &[DateTime<Utc>],
    now: DateTime<Utc>,
    rule: &FloodRule,
) -> bool {
    let since = now - rule.window;
    let in_window = earlier_message_times
        .iter()
        .filter(|&&at| at > since && at <= now)
        .count();
    in_window + 1 > rule.max_messages as usize
}

/// A stable fingerprint of a message's folded text (what the term matcher
/// sees: case, width, traditional/simplified, separators and emoji do not
/// change it). Store it with the post to detect the same text across chats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TextFingerprint(pub u64);

/// Fingerprint of already-folded text (see [`super::Engine::fingerprint`]).
/// FNV-1a: stable across builds and Rust versions, so it can be stored.
pub(crate) fn fingerprint_folded(folded: &str) -> TextFingerprint {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = folded.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    TextFingerprint(hash)
}

/// The same text posted in at least `min_chats` different chats within
/// `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrossChatRule {
    min_chats: u32,
    window: Duration,
}

impl CrossChatRule {
    pub fn new(min_chats: u32, window: Duration) -> Result<Self, BehaviourRuleError> {
        if min_chats == 0 {
            return Err(BehaviourRuleError::ZeroCount);
        }
        Ok(Self {
            min_chats,
            window: check_window(window)?,
        })
    }
}

/// One earlier post by the same person, in any chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentPost<C> {
    pub chat: C,
    pub at: DateTime<Utc>,
    pub fingerprint: TextFingerprint,
}

/// Whether posting `fingerprint` into `chat` at `now` makes the same text
/// appear in at least `rule.min_chats` distinct chats within the window.
/// `fingerprint` is `None` for messages too short to judge (see
/// [`super::Engine::fingerprint`]); those never count.
pub fn is_repeated_across_chats<C: PartialEq>(
    earlier_posts: &[RecentPost<C>],
    chat: &C,
    fingerprint: Option<TextFingerprint>,
    now: DateTime<Utc>,
    rule: &CrossChatRule,
) -> bool {
    let Some(fingerprint) = fingerprint else {
        return false;
    };
    let since = now - rule.window;
    let mut chats: Vec<&C> = vec![chat];
    for post in earlier_posts {
        if post.fingerprint == fingerprint
            && post.at > since
            && post.at <= now
            && !chats.contains(&&post.chat)
        {
            chats.push(&post.chat);
        }
    }
    chats.len() >= rule.min_chats as usize
}

/// Stricter rules for new members: until a member has sent `first_messages`
/// messages *and* been in the chat for `trusted_after`, hits in the
/// restricted categories (say `link`, `contact`) count as violations even
/// where they would otherwise be tolerated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMemberRule {
    pub first_messages: u32,
    pub trusted_after: Duration,
    pub restricted_categories: Vec<String>,
}

impl NewMemberRule {
    /// Whether a member is still new. `messages_before` counts their earlier
    /// messages in this chat.
    pub fn is_new(
        &self,
        messages_before: u32,
        joined_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        messages_before < self.first_messages || now - joined_at < self.trusted_after
    }

    /// The hits a new member may not post.
    pub fn restricted_hits<'a>(&self, hits: &'a [Hit]) -> Vec<&'a Hit> {
        hits.iter()
            .filter(|hit| {
                self.restricted_categories
                    .iter()
                    .any(|category| category.as_str() == &*hit.category)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::moderation::{Engine, MatchOptions, RegexRuleSpec, RegexRules, TermList};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("valid time")
    }

    #[test]
    fn flooding_counts_the_current_message_within_the_window() {
        let rule = FloodRule::new(3, Duration::seconds(10)).expect("valid");
        let now = at(100);
        assert!(!is_flooding(&[at(95), at(99)], now, &rule)); // 3 messages: allowed
        assert!(is_flooding(&[at(91), at(95), at(99)], now, &rule)); // 4th in 10 s
                                                                     // At exactly now - window the old message has left the window.
        assert!(!is_flooding(&[at(90), at(95), at(99)], now, &rule));
        // Future times (clock skew) are ignored.
        assert!(!is_flooding(&[at(101), at(102), at(99)], now, &rule));
    }

    #[test]
    fn flood_rule_is_validated() {
        assert_eq!(
            FloodRule::new(0, Duration::seconds(10)),
            Err(BehaviourRuleError::ZeroCount)
        );
        assert_eq!(
            FloodRule::new(3, Duration::zero()),
            Err(BehaviourRuleError::BadWindow)
        );
    }

    #[test]
    fn same_text_in_several_chats_is_detected_through_folding() {
        let engine = Engine::build(
            &TermList::default(),
            &TermList::default(),
            MatchOptions::default(),
        )
        .expect("engine");
        let rule = CrossChatRule::new(3, Duration::minutes(10)).expect("valid");
        let first = engine.fingerprint("限時優惠！點擊鏈接領取紅包");
        let second = engine.fingerprint("限时优惠 点击链接领取红包 🎉");
        assert_eq!(first, second);
        let posts = vec![
            RecentPost {
                chat: "a",
                at: at(0),
                fingerprint: first.expect("long enough"),
            },
            RecentPost {
                chat: "b",
                at: at(60),
                fingerprint: first.expect("long enough"),
            },
            RecentPost {
                chat: "b",
                at: at(70),
                fingerprint: first.expect("long enough"),
            },
        ];
        assert!(is_repeated_across_chats(
            &posts,
            &"c",
            second,
            at(120),
            &rule
        ));
        // Same chat again: only two distinct chats.
        assert!(!is_repeated_across_chats(
            &posts,
            &"b",
            second,
            at(120),
            &rule
        ));
        // Outside the window.
        assert!(!is_repeated_across_chats(
            &posts,
            &"c",
            second,
            at(601),
            &rule
        ));
        // A different text.
        let other = engine.fingerprint("今天的打卡活动大家都参加了吗");
        assert!(!is_repeated_across_chats(
            &posts,
            &"c",
            other,
            at(120),
            &rule
        ));
    }

    #[test]
    fn short_messages_have_no_fingerprint() {
        let engine = Engine::build(
            &TermList::default(),
            &TermList::default(),
            MatchOptions::default(),
        )
        .expect("engine");
        assert_eq!(engine.fingerprint("好的 👍"), None);
        assert_eq!(engine.fingerprint("收到！"), None);
    }

    #[test]
    fn new_members_may_not_post_links_until_trusted() {
        let rule = NewMemberRule {
            first_messages: 5,
            trusted_after: Duration::days(1),
            restricted_categories: vec!["link".to_owned()],
        };
        let joined = at(0);
        assert!(rule.is_new(0, joined, at(60)));
        assert!(rule.is_new(10, joined, at(60))); // chatty but joined a minute ago
        assert!(rule.is_new(2, joined, at(2 * 86_400))); // old but silent
        assert!(!rule.is_new(5, joined, at(86_400)));

        let regex = RegexRules::compile(&RegexRuleSpec::presets()).expect("presets");
        let engine = Engine::build(
            &TermList::default(),
            &TermList::default(),
            MatchOptions::default(),
        )
        .expect("engine")
        .with_regex_rules(regex);
        let hits = engine.scan("看这里 https://shop.example.com/x 电话13800138000");
        let restricted = rule.restricted_hits(&hits);
        assert_eq!(restricted.len(), 1);
        assert_eq!(&*restricted[0].category, "link");
    }
}
