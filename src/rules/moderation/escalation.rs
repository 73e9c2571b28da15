//! The strike ladder as a pure decision: given the policy, the member's
//! recent strikes and `now`, which sanctions follow a new violation.
//!
//! What a sanction can actually do depends on the chat's route (only app
//! groups allow removal; elsewhere it becomes a task for the owner); that
//! mapping belongs to the pipeline, not here.

use chrono::{DateTime, Duration, Utc};

use super::terms::Severity;

/// What to do about a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sanction {
    /// Record the strike in the audit log only.
    Record,
    /// Tell the member (in the chat or 1:1) what rule they broke.
    Warn,
    /// Put the violation in front of a manager for review.
    NotifyManager,
    /// Remove the member from the chat (or ask the owner to).
    Remove,
}

/// One rung: from `strikes` strikes within the window on, apply `sanctions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rung {
    pub strikes: u32,
    pub sanctions: Vec<Sanction>,
}

/// One earlier strike against the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strike {
    pub at: DateTime<Utc>,
    pub severity: Severity,
}

/// Why an escalation policy was refused on save.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EscalationPolicyError {
    #[error("the ladder has no rungs")]
    NoRungs,
    #[error("rung {0} needs at least one strike")]
    ZeroStrikes(usize),
    #[error("rung {0} does not need more strikes than the rung before it")]
    NotAscending(usize),
    #[error("the strike window must be between 1 minute and 365 days")]
    BadWindow,
}

impl EscalationPolicyError {
    /// Stable code for the console.
    pub fn code(&self) -> &'static str {
        match self {
            EscalationPolicyError::NoRungs => "no_rungs",
            EscalationPolicyError::ZeroStrikes(_) => "zero_strikes",
            EscalationPolicyError::NotAscending(_) => "rungs_not_ascending",
            EscalationPolicyError::BadWindow => "bad_window",
        }
    }
}

/// A validated strike ladder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationPolicy {
    window: Duration,
    rungs: Vec<Rung>,
    /// A violation of at least this severity removes at once, whatever the
    /// count (`None`: never).
    remove_at_once_from: Option<Severity>,
}

/// The decision for one new violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationDecision {
    /// Strikes within the window, the new one included.
    pub strikes: u32,
    /// Sanctions to apply, sorted and without duplicates; at least `Record`.
    pub sanctions: Vec<Sanction>,
}

impl EscalationPolicy {
    pub fn new(
        window: Duration,
        rungs: Vec<Rung>,
        remove_at_once_from: Option<Severity>,
    ) -> Result<Self, EscalationPolicyError> {
        if window < Duration::minutes(1) || window > Duration::days(365) {
            return Err(EscalationPolicyError::BadWindow);
        }
        if rungs.is_empty() {
            return Err(EscalationPolicyError::NoRungs);
        }
        for (index, rung) in rungs.iter().enumerate() {
            if rung.strikes == 0 {
                return Err(EscalationPolicyError::ZeroStrikes(index));
            }
            if index > 0 && rung.strikes <= rungs[index - 1].strikes {
                return Err(EscalationPolicyError::NotAscending(index));
            }
        }
        Ok(Self {
            window,
            rungs,
            remove_at_once_from,
        })
    }

    /// Warn at the first strike, warn and tell a manager at the second,
    /// remove at the third within 30 days; high severity removes at once.
    pub fn standard() -> Self {
        Self {
            window: Duration::days(30),
            rungs: vec![
                Rung {
                    strikes: 1,
                    sanctions: vec![Sanction::Warn],
                },
                Rung {
                    strikes: 2,
                    sanctions: vec![Sanction::Warn, Sanction::NotifyManager],
                },
                Rung {
                    strikes: 3,
                    sanctions: vec![Sanction::Remove, Sanction::NotifyManager],
                },
            ],
            remove_at_once_from: Some(Severity::High),
        }
    }

    /// Decide what follows a new violation of `severity` at `now`.
    /// `earlier_strikes` are the member's strikes in any order; those outside
    /// the window (or in the future) do not count.
    pub fn decide(
        &self,
        earlier_strikes: &[Strike],
        severity: Severity,
        now: DateTime<Utc>,
    ) -> EscalationDecision {
        let since = now - self.window;
        let earlier = earlier_strikes
            .iter()
            .filter(|strike| strike.at > since && strike.at <= now)
            .count();
        let strikes = u32::try_from(earlier).unwrap_or(u32::MAX).saturating_add(1);
        let mut sanctions = vec![Sanction::Record];
        if let Some(rung) = self.rungs.iter().rev().find(|rung| rung.strikes <= strikes) {
            sanctions.extend(rung.sanctions.iter().copied());
        }
        if self
            .remove_at_once_from
            .is_some_and(|from| severity >= from)
        {
            sanctions.push(Sanction::Remove);
            sanctions.push(Sanction::NotifyManager);
        }
        sanctions.sort();
        sanctions.dedup();
        EscalationDecision { strikes, sanctions }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + days * 86_400, 0).expect("valid time")
    }

    fn strike(days: i64) -> Strike {
        Strike {
            at: at(days),
            severity: Severity::Low,
        }
    }

    #[test]
    fn ladder_climbs_with_strikes_in_the_window() {
        let policy = EscalationPolicy::standard();
        let now = at(100);
        let first = policy.decide(&[], Severity::Low, now);
        assert_eq!(first.strikes, 1);
        assert_eq!(first.sanctions, vec![Sanction::Record, Sanction::Warn]);

        let second = policy.decide(&[strike(95)], Severity::Medium, now);
        assert_eq!(
            second.sanctions,
            vec![Sanction::Record, Sanction::Warn, Sanction::NotifyManager]
        );

        let third = policy.decide(&[strike(95), strike(99)], Severity::Low, now);
        assert_eq!(third.strikes, 3);
        assert!(third.sanctions.contains(&Sanction::Remove));
        let tenth = policy.decide(&[strike(99); 9], Severity::Low, now);
        assert!(tenth.sanctions.contains(&Sanction::Remove));
    }

    #[test]
    fn old_strikes_expire() {
        let policy = EscalationPolicy::standard();
        let decision = policy.decide(
            &[strike(10), strike(60), strike(70)],
            Severity::Low,
            at(100),
        );
        assert_eq!(decision.strikes, 1);
        assert!(!decision.sanctions.contains(&Sanction::Remove));
    }

    #[test]
    fn high_severity_removes_at_once() {
        let policy = EscalationPolicy::standard();
        let decision = policy.decide(&[], Severity::High, at(100));
        assert_eq!(
            decision.sanctions,
            vec![
                Sanction::Record,
                Sanction::Warn,
                Sanction::NotifyManager,
                Sanction::Remove
            ]
        );
    }

    #[test]
    fn a_ladder_may_start_above_one_strike() {
        let policy = EscalationPolicy::new(
            Duration::days(7),
            vec![Rung {
                strikes: 2,
                sanctions: vec![Sanction::Warn],
            }],
            None,
        )
        .expect("valid");
        assert_eq!(
            policy.decide(&[], Severity::High, at(0)).sanctions,
            vec![Sanction::Record]
        );
        assert_eq!(
            policy.decide(&[strike(0)], Severity::Low, at(0)).sanctions,
            vec![Sanction::Record, Sanction::Warn]
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let rung = |strikes| Rung {
            strikes,
            sanctions: vec![Sanction::Warn],
        };
        let week = Duration::days(7);
        assert_eq!(
            EscalationPolicy::new(week, vec![], None),
            Err(EscalationPolicyError::NoRungs)
        );
        assert_eq!(
            EscalationPolicy::new(week, vec![rung(0)], None),
            Err(EscalationPolicyError::ZeroStrikes(0))
        );
        assert_eq!(
            EscalationPolicy::new(week, vec![rung(2), rung(2)], None),
            Err(EscalationPolicyError::NotAscending(1))
        );
        assert_eq!(
            EscalationPolicy::new(Duration::seconds(5), vec![rung(1)], None),
            Err(EscalationPolicyError::BadWindow)
        );
    }
}
