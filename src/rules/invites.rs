//! Invite rewards: the inviter earns points once the person they invited has
//! stayed long enough; if the invitee leaves first, nothing is earned. A person
//! earns their inviter a reward once per community, whatever chat they joined.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::RuleSet;

/// A member who joined through someone's invitation and has not been rewarded yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteCandidate {
    pub chat_id: String,
    pub invitee: String,
    pub inviter: String,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteReward {
    pub inviter: String,
    pub invitee: String,
    pub chat_id: String,
    pub points: i64,
    /// Ledger reference: one reward per invitee, ever.
    pub reference: String,
    pub day: NaiveDate,
}

pub const REASON: &str = "invite";

pub fn reference_for(invitee: &str) -> String {
    format!("invite:{invitee}")
}

/// Which candidates earn their inviter points now. `earned_today` holds what
/// each inviter already earned for invites on the current community day.
pub fn due_rewards(
    rules: &RuleSet,
    candidates: &[InviteCandidate],
    earned_today: &BTreeMap<String, i64>,
    now: DateTime<Utc>,
) -> Vec<InviteReward> {
    let points = &rules.doc.points;
    if points.invite <= 0 {
        return Vec::new();
    }
    let stay = Duration::hours(i64::from(points.invite_min_stay_hours));
    let cap = points.daily_caps.get(REASON).copied();
    let day = rules.community_day(now);
    let mut earned = earned_today.clone();
    let mut rewards = Vec::new();
    for candidate in candidates {
        let stayed_until = candidate.joined_at + stay;
        let self_invite = candidate.inviter == candidate.invitee;
        let too_early = now < stayed_until;
        let left_first = candidate.left_at.is_some_and(|left| left < stayed_until);
        if self_invite || too_early || left_first {
            continue;
        }
        let so_far = earned.entry(candidate.inviter.clone()).or_insert(0);
        let award = match cap {
            Some(cap) => points.invite.min((cap - *so_far).max(0)),
            None => points.invite,
        };
        if award == 0 {
            // Over today's cap: it stays a candidate and is paid on a later day.
            continue;
        }
        *so_far += award;
        rewards.push(InviteReward {
            inviter: candidate.inviter.clone(),
            invitee: candidate.invitee.clone(),
            chat_id: candidate.chat_id.clone(),
            points: award,
            reference: reference_for(&candidate.invitee),
            day,
        });
    }
    rewards
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hour: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap() + Duration::hours(hour)
    }

    fn candidate(invitee: &str, inviter: &str, joined: i64, left: Option<i64>) -> InviteCandidate {
        InviteCandidate {
            chat_id: "wrA".into(),
            invitee: invitee.into(),
            inviter: inviter.into(),
            joined_at: at(joined),
            left_at: left.map(at),
        }
    }

    fn rules(extra: &str) -> RuleSet {
        RuleSet::from_toml(&format!(
            "[points]\ninvite = 20\ninvite_min_stay_hours = 24\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn inviter_is_rewarded_once_the_invitee_has_stayed() {
        let rules = rules("");
        let candidates = [candidate("wmB", "wmA", 0, None)];
        assert!(due_rewards(&rules, &candidates, &BTreeMap::new(), at(23)).is_empty());
        let rewards = due_rewards(&rules, &candidates, &BTreeMap::new(), at(24));
        assert_eq!(rewards.len(), 1);
        assert_eq!(rewards[0].inviter, "wmA");
        assert_eq!(rewards[0].points, 20);
        assert_eq!(rewards[0].reference, "invite:wmB");
    }

    #[test]
    fn nothing_is_earned_when_the_invitee_leaves_first() {
        let rules = rules("");
        let left_early = [candidate("wmB", "wmA", 0, Some(10))];
        assert!(due_rewards(&rules, &left_early, &BTreeMap::new(), at(48)).is_empty());
        let left_after_staying = [candidate("wmB", "wmA", 0, Some(30))];
        assert_eq!(
            due_rewards(&rules, &left_after_staying, &BTreeMap::new(), at(48)).len(),
            1
        );
    }

    #[test]
    fn the_daily_cap_limits_an_inviter_and_the_rest_waits() {
        let rules = rules("[points.daily_caps]\ninvite = 50\n");
        let candidates: Vec<_> = ["wmB", "wmC", "wmD", "wmE"]
            .iter()
            .map(|invitee| candidate(invitee, "wmA", 0, None))
            .collect();
        let rewards = due_rewards(&rules, &candidates, &BTreeMap::new(), at(30));
        let points: Vec<i64> = rewards.iter().map(|r| r.points).collect();
        assert_eq!(points, [20, 20, 10], "50 a day; the fourth waits");
        let already = BTreeMap::from([("wmA".to_string(), 50)]);
        assert!(due_rewards(&rules, &candidates, &already, at(30)).is_empty());
    }

    #[test]
    fn self_invites_and_disabled_rewards_earn_nothing() {
        let self_invite = [candidate("wmA", "wmA", 0, None)];
        assert!(due_rewards(&rules(""), &self_invite, &BTreeMap::new(), at(48)).is_empty());
        let off = RuleSet::from_toml("[points]\ninvite = 0\n").unwrap();
        let candidates = [candidate("wmB", "wmA", 0, None)];
        assert!(due_rewards(&off, &candidates, &BTreeMap::new(), at(48)).is_empty());
    }

    #[test]
    fn validation_names_the_invite_fields() {
        let err = RuleSet::from_toml("[points]\ninvite = -1\n").unwrap_err();
        assert!(err.to_string().contains("points.invite"), "{err}");
        let err =
            RuleSet::from_toml("[points]\ninvite = 5\ninvite_min_stay_hours = 0\n").unwrap_err();
        assert!(
            err.to_string().contains("points.invite_min_stay_hours"),
            "{err}"
        );
    }
}
