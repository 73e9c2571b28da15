//! The rule set's `[lifecycle]` and `[alerts]` sections: member lifecycle
//! thresholds and the manager's alert thresholds. Validated with the rest of
//! the rule set; errors name the field (`alerts.leave_spike.orange: …`).
//! The computation that uses them lives in `crate::analytics`.

use serde::{Deserialize, Serialize};

use super::ruleset::FieldError;

/// What happens when a member becomes at risk (once per stage change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AtRiskAction {
    /// A personal app message (`message/send`) to the member. Only internal
    /// members can receive app messages; for external contacts the outbox row
    /// is recorded as skipped with the reason.
    Nudge,
    /// An app message to `[alerts] admins` naming the member, so a person can
    /// reach out (works for external contacts too).
    NotifyAdmins,
    /// Only record the stage change.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleDoc {
    pub enabled: bool,
    /// A member who joined fewer than this many days ago is `new`.
    pub new_days: i64,
    /// `core`: active on at least `core_min_active_days` of the last `core_window_days` days.
    pub core_window_days: i64,
    pub core_min_active_days: i64,
    /// `at_risk`: was active, but silent (no post, no check-in) for this many days.
    pub at_risk_silent_days: i64,
    pub at_risk_action: AtRiskAction,
    /// Template of the nudge (variables: `name`, `silent_days`, `group_name`).
    pub nudge_template: String,
}

impl Default for LifecycleDoc {
    fn default() -> Self {
        Self {
            enabled: true,
            new_days: 7,
            core_window_days: 14,
            core_min_active_days: 5,
            at_risk_silent_days: 14,
            at_risk_action: AtRiskAction::Nudge,
            nudge_template: "lifecycle_nudge".into(),
        }
    }
}

/// Thresholds of one alert: crossing `yellow` opens an episode, `orange` and
/// `red` escalate it. A level left out is not used; all left out = alert off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Levels {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yellow: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orange: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub red: Option<i64>,
}

impl Levels {
    pub const fn new(yellow: i64, orange: i64, red: i64) -> Self {
        Self {
            yellow: Some(yellow),
            orange: Some(orange),
            red: Some(red),
        }
    }

    pub fn is_off(&self) -> bool {
        self.yellow.is_none() && self.orange.is_none() && self.red.is_none()
    }
}

/// Check-ins of the last full community day against the average of the
/// `trailing_days` days before it; the levels are percentages of drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckinDropDoc {
    // A level left out of a written table is off (the whole table left out
    // means the defaults), as for [`Levels`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yellow: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orange: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub red: Option<i64>,
    pub trailing_days: i64,
    /// Below this trailing average the community is too small to compare.
    pub min_average: i64,
}

impl Default for CheckinDropDoc {
    fn default() -> Self {
        Self {
            yellow: Some(30),
            orange: Some(50),
            red: Some(80),
            trailing_days: 7,
            min_average: 5,
        }
    }
}

impl CheckinDropDoc {
    pub fn levels(&self) -> Levels {
        Levels {
            yellow: self.yellow,
            orange: self.orange,
            red: self.red,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsDoc {
    /// UserIDs (internal members) who get an app message when an alert opens
    /// or escalates. Empty: alerts show on the dashboard only, and their
    /// messages are recorded as skipped with the reason.
    pub admins: Vec<String>,
    /// Leaves today (community-wide).
    pub leave_spike: Levels,
    /// Moderation violations today.
    pub violation_spike: Levels,
    /// Check-in drop, in percent.
    pub checkin_drop: CheckinDropDoc,
    /// Outbox messages that failed or went dead today.
    pub delivery_failures: Levels,
    /// Inbox events parked right now.
    pub parked_events: Levels,
}

impl Default for AlertsDoc {
    fn default() -> Self {
        Self {
            admins: Vec::new(),
            leave_spike: Levels::new(5, 10, 20),
            violation_spike: Levels::new(10, 20, 50),
            checkin_drop: CheckinDropDoc::default(),
            delivery_failures: Levels::new(1, 5, 20),
            parked_events: Levels::new(1, 10, 50),
        }
    }
}

/// Problems in `[lifecycle]` and `[alerts]`, each naming its field.
pub fn validate(lifecycle: &LifecycleDoc, alerts: &AlertsDoc) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut push = |path: &str, reason: String| {
        errors.push(FieldError {
            path: path.to_string(),
            reason,
        })
    };
    for (path, value, min, max) in [
        ("lifecycle.new_days", lifecycle.new_days, 0, 365),
        (
            "lifecycle.core_window_days",
            lifecycle.core_window_days,
            1,
            90,
        ),
        (
            "lifecycle.core_min_active_days",
            lifecycle.core_min_active_days,
            1,
            90,
        ),
        (
            "lifecycle.at_risk_silent_days",
            lifecycle.at_risk_silent_days,
            1,
            365,
        ),
    ] {
        if !(min..=max).contains(&value) {
            push(path, format!("must be between {min} and {max}"));
        }
    }
    if lifecycle.core_min_active_days > lifecycle.core_window_days {
        push(
            "lifecycle.core_min_active_days",
            format!(
                "must not exceed core_window_days ({})",
                lifecycle.core_window_days
            ),
        );
    }
    if lifecycle.nudge_template.trim().is_empty() {
        push("lifecycle.nudge_template", "must not be empty".into());
    }

    for (i, admin) in alerts.admins.iter().enumerate() {
        if admin.trim().is_empty() || admin.contains('|') {
            push(
                &format!("alerts.admins[{i}]"),
                "must be a UserID (not empty, no '|')".into(),
            );
        } else if admin.starts_with("wm") || admin.starts_with("wo") {
            push(
                &format!("alerts.admins[{i}]"),
                "is an external contact's id: app messages reach internal members only".into(),
            );
        }
    }
    let drop = &alerts.checkin_drop;
    for (name, levels, max) in [
        ("leave_spike", alerts.leave_spike, None),
        ("violation_spike", alerts.violation_spike, None),
        ("checkin_drop", drop.levels(), Some(100)),
        ("delivery_failures", alerts.delivery_failures, None),
        ("parked_events", alerts.parked_events, None),
    ] {
        let mut previous: Option<(&str, i64)> = None;
        for (level, value) in [
            ("yellow", levels.yellow),
            ("orange", levels.orange),
            ("red", levels.red),
        ] {
            let Some(value) = value else { continue };
            let path = format!("alerts.{name}.{level}");
            if value < 1 {
                push(&path, "must be at least 1".into());
            }
            if let Some(max) = max {
                if value > max {
                    push(&path, format!("must be at most {max} (percent)"));
                }
            }
            if let Some((below, below_value)) = previous {
                if value <= below_value {
                    push(
                        &path,
                        format!("must be greater than {below} ({below_value})"),
                    );
                }
            }
            previous = Some((level, value));
        }
    }
    if !(1..=60).contains(&drop.trailing_days) {
        push(
            "alerts.checkin_drop.trailing_days",
            "must be between 1 and 60".into(),
        );
    }
    if drop.min_average < 1 {
        push(
            "alerts.checkin_drop.min_average",
            "must be at least 1".into(),
        );
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(lifecycle: LifecycleDoc, alerts: AlertsDoc) -> Vec<String> {
        validate(&lifecycle, &alerts)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(problems(LifecycleDoc::default(), AlertsDoc::default()).is_empty());
    }

    #[test]
    fn a_written_table_without_a_level_turns_that_level_off() {
        let rules = crate::rules::RuleSet::from_toml(
            "[alerts]\ncheckin_drop = { trailing_days = 3 }\nleave_spike = { red = 9 }\n",
        )
        .unwrap();
        let alerts = &rules.doc.alerts;
        assert!(alerts.checkin_drop.levels().is_off());
        assert_eq!(alerts.checkin_drop.trailing_days, 3);
        assert_eq!(alerts.leave_spike.yellow, None);
        assert_eq!(alerts.violation_spike, AlertsDoc::default().violation_spike);
    }

    #[test]
    fn lifecycle_errors_name_the_field() {
        let lifecycle = LifecycleDoc {
            core_window_days: 7,
            core_min_active_days: 8,
            at_risk_silent_days: 0,
            ..LifecycleDoc::default()
        };
        assert_eq!(
            problems(lifecycle, AlertsDoc::default()),
            [
                "lifecycle.at_risk_silent_days: must be between 1 and 365",
                "lifecycle.core_min_active_days: must not exceed core_window_days (7)"
            ]
        );
    }

    #[test]
    fn alert_levels_must_rise_and_percentages_stay_below_100() {
        let alerts = AlertsDoc {
            leave_spike: Levels::new(5, 5, 20),
            checkin_drop: CheckinDropDoc {
                red: Some(120),
                ..CheckinDropDoc::default()
            },
            parked_events: Levels {
                yellow: Some(0),
                orange: None,
                red: Some(3),
            },
            admins: vec!["boss".into(), "wmCustomer".into()],
            ..AlertsDoc::default()
        };
        assert_eq!(
            problems(LifecycleDoc::default(), alerts),
            [
                "alerts.admins[1]: is an external contact's id: app messages reach internal members only",
                "alerts.leave_spike.orange: must be greater than yellow (5)",
                "alerts.checkin_drop.red: must be at most 100 (percent)",
                "alerts.parked_events.yellow: must be at least 1",
            ]
        );
    }
}
