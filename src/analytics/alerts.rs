//! Alerts: measure each kind, decide its level from the manager's thresholds,
//! and step its episode: open on crossing yellow (or higher), escalate when a
//! higher level is crossed, close when the condition clears. Only opening and
//! escalating send a message; a persisting or easing condition sends nothing.

use std::fmt;

use serde::Serialize;

use crate::rules::analytics::{AlertsDoc, Levels};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    LeaveSpike,
    ViolationSpike,
    CheckinDrop,
    DeliveryFailures,
    ParkedEvents,
    /// The newest stored rule set no longer validates (its version is the
    /// value); the last good one keeps running. Always red, not configurable.
    RulesInvalid,
}

impl AlertKind {
    pub const ALL: [AlertKind; 6] = [
        AlertKind::LeaveSpike,
        AlertKind::ViolationSpike,
        AlertKind::CheckinDrop,
        AlertKind::DeliveryFailures,
        AlertKind::ParkedEvents,
        AlertKind::RulesInvalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::LeaveSpike => "leave_spike",
            AlertKind::ViolationSpike => "violation_spike",
            AlertKind::CheckinDrop => "checkin_drop",
            AlertKind::DeliveryFailures => "delivery_failures",
            AlertKind::ParkedEvents => "parked_events",
            AlertKind::RulesInvalid => "rules_invalid",
        }
    }

    pub fn parse(text: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// What the value measures, for the message to admins.
    fn describe(self, value: i64) -> String {
        match self {
            AlertKind::LeaveSpike => format!("今日退群 {value} 人"),
            AlertKind::ViolationSpike => format!("今日违规 {value} 次"),
            AlertKind::CheckinDrop => format!("昨日签到比前几日平均下降 {value}%"),
            AlertKind::DeliveryFailures => format!("今日发送失败 {value} 条"),
            AlertKind::ParkedEvents => format!("当前搁置事件 {value} 个"),
            AlertKind::RulesInvalid => {
                format!("规则版本 {value} 已无法通过校验，仍按上一个有效版本运行")
            }
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    Yellow,
    Orange,
    Red,
}

impl AlertLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertLevel::Yellow => "yellow",
            AlertLevel::Orange => "orange",
            AlertLevel::Red => "red",
        }
    }

    pub fn parse(text: &str) -> Option<AlertLevel> {
        [AlertLevel::Yellow, AlertLevel::Orange, AlertLevel::Red]
            .into_iter()
            .find(|l| l.as_str() == text)
    }

    fn chinese(self) -> &'static str {
        match self {
            AlertLevel::Yellow => "黄色",
            AlertLevel::Orange => "橙色",
            AlertLevel::Red => "红色",
        }
    }
}

impl fmt::Display for AlertLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The highest level whose threshold `value` reaches.
pub fn level_for(levels: &Levels, value: i64) -> Option<AlertLevel> {
    [
        (AlertLevel::Red, levels.red),
        (AlertLevel::Orange, levels.orange),
        (AlertLevel::Yellow, levels.yellow),
    ]
    .into_iter()
    .find_map(|(level, threshold)| threshold.is_some_and(|t| value >= t).then_some(level))
}

fn threshold(levels: &Levels, level: AlertLevel) -> Option<i64> {
    match level {
        AlertLevel::Yellow => levels.yellow,
        AlertLevel::Orange => levels.orange,
        AlertLevel::Red => levels.red,
    }
}

/// The numbers alerts are measured on (community-wide).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    pub leaves_today: i64,
    pub violations_today: i64,
    /// Check-ins of the last full community day (yesterday).
    pub checkins_last_day: i64,
    /// Check-ins of the days before it, newest first (up to `trailing_days`).
    pub checkins_trailing: Vec<i64>,
    pub failures_today: i64,
    pub parked_now: i64,
    /// The stored rule-set version that no longer validates, if any.
    pub invalid_rules_version: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Measurement {
    pub kind: AlertKind,
    pub value: i64,
    pub level: Option<AlertLevel>,
}

/// Check-in drop in percent of the trailing average (0 for a rise, `None`
/// when the average is below `min_average`).
pub fn checkin_drop_percent(last: i64, trailing: &[i64], min_average: i64) -> Option<i64> {
    if trailing.is_empty() {
        return None;
    }
    let n = trailing.len() as i64;
    let sum: i64 = trailing.iter().sum();
    if sum < min_average * n || sum <= 0 {
        return None;
    }
    Some(((sum - last * n) * 100 / sum).max(0))
}

/// Every alert kind's value and level under `doc`.
pub fn measure(doc: &AlertsDoc, inputs: &Inputs) -> Vec<Measurement> {
    let drop = &doc.checkin_drop;
    let trailing: Vec<i64> = inputs
        .checkins_trailing
        .iter()
        .take(usize::try_from(drop.trailing_days).unwrap_or(0))
        .copied()
        .collect();
    let drop_value = checkin_drop_percent(inputs.checkins_last_day, &trailing, drop.min_average);
    [
        (
            AlertKind::LeaveSpike,
            doc.leave_spike,
            Some(inputs.leaves_today),
        ),
        (
            AlertKind::ViolationSpike,
            doc.violation_spike,
            Some(inputs.violations_today),
        ),
        (AlertKind::CheckinDrop, drop.levels(), drop_value),
        (
            AlertKind::DeliveryFailures,
            doc.delivery_failures,
            Some(inputs.failures_today),
        ),
        (
            AlertKind::ParkedEvents,
            doc.parked_events,
            Some(inputs.parked_now),
        ),
        (
            AlertKind::RulesInvalid,
            levels_of(doc, AlertKind::RulesInvalid),
            inputs.invalid_rules_version,
        ),
    ]
    .into_iter()
    .map(|(kind, levels, value)| Measurement {
        kind,
        value: value.unwrap_or(0),
        level: value.and_then(|v| level_for(&levels, v)),
    })
    .collect()
}

/// The thresholds of one kind under `doc`.
pub fn levels_of(doc: &AlertsDoc, kind: AlertKind) -> Levels {
    match kind {
        AlertKind::LeaveSpike => doc.leave_spike,
        AlertKind::ViolationSpike => doc.violation_spike,
        AlertKind::CheckinDrop => doc.checkin_drop.levels(),
        AlertKind::DeliveryFailures => doc.delivery_failures,
        AlertKind::ParkedEvents => doc.parked_events,
        // Any version number is red: there is nothing to tune.
        AlertKind::RulesInvalid => Levels {
            red: Some(i64::MIN),
            ..Levels::default()
        },
    }
}

/// What to do with a kind's episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStep {
    /// No episode and nothing crossed, or an episode persisting at or below
    /// the highest level already announced (its value is refreshed silently).
    Nothing,
    /// Open an episode at this level and announce it.
    Open(AlertLevel),
    /// The open episode crossed a higher level: announce it.
    Escalate(AlertLevel),
    /// The condition cleared.
    Close,
}

/// `announced`: the highest level the open episode announced (`None`: no open episode).
pub fn step(announced: Option<AlertLevel>, now: Option<AlertLevel>) -> AlertStep {
    match (announced, now) {
        (None, None) => AlertStep::Nothing,
        (None, Some(level)) => AlertStep::Open(level),
        (Some(_), None) => AlertStep::Close,
        (Some(high), Some(level)) if level > high => AlertStep::Escalate(level),
        (Some(_), Some(_)) => AlertStep::Nothing,
    }
}

/// The app message to admins when an episode opens or escalates.
pub fn message_text(
    community: &str,
    doc: &AlertsDoc,
    kind: AlertKind,
    level: AlertLevel,
    value: i64,
    escalated: bool,
) -> String {
    let limit = threshold(&levels_of(doc, kind), level)
        .filter(|_| kind != AlertKind::RulesInvalid)
        .map(|t| {
            if kind == AlertKind::CheckinDrop {
                format!("（阈值 {t}%）")
            } else {
                format!("（阈值 {t}）")
            }
        })
        .unwrap_or_default();
    let verb = if escalated { "升级为" } else { "" };
    format!(
        "【{community}】{verb}{}预警：{}{limit}。请到运营后台查看。",
        level.chinese(),
        kind.describe(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::analytics::CheckinDropDoc;

    #[test]
    fn level_is_the_highest_threshold_reached() {
        let levels = Levels::new(5, 10, 20);
        assert_eq!(level_for(&levels, 4), None);
        assert_eq!(level_for(&levels, 5), Some(AlertLevel::Yellow));
        assert_eq!(level_for(&levels, 19), Some(AlertLevel::Orange));
        assert_eq!(level_for(&levels, 200), Some(AlertLevel::Red));
        let only_red = Levels {
            red: Some(3),
            ..Levels::default()
        };
        assert_eq!(level_for(&only_red, 2), None);
        assert_eq!(level_for(&only_red, 3), Some(AlertLevel::Red));
        assert_eq!(level_for(&Levels::default(), 1_000), None, "off");
    }

    #[test]
    fn an_episode_opens_escalates_persists_and_closes() {
        use AlertLevel::*;
        // Walk a value over time: 0, 6 (yellow), 7, 12 (orange), 6 (eases), 25 (red), 25, 0.
        let levels = Levels::new(5, 10, 20);
        let mut announced = None;
        let mut steps = Vec::new();
        for value in [0, 6, 7, 12, 6, 25, 25, 0, 0] {
            let s = step(announced, level_for(&levels, value));
            match s {
                AlertStep::Open(l) | AlertStep::Escalate(l) => announced = Some(l),
                AlertStep::Close => announced = None,
                AlertStep::Nothing => {}
            }
            steps.push(s);
        }
        assert_eq!(
            steps,
            [
                AlertStep::Nothing,
                AlertStep::Open(Yellow),
                AlertStep::Nothing,
                AlertStep::Escalate(Orange),
                AlertStep::Nothing,
                AlertStep::Escalate(Red),
                AlertStep::Nothing,
                AlertStep::Close,
                AlertStep::Nothing,
            ]
        );
        // Jumping straight to red opens at red.
        assert_eq!(step(None, Some(Red)), AlertStep::Open(Red));
    }

    #[test]
    fn checkin_drop_compares_with_the_trailing_average() {
        assert_eq!(checkin_drop_percent(5, &[10, 10, 10], 5), Some(50));
        assert_eq!(checkin_drop_percent(12, &[10, 10], 5), Some(0), "a rise");
        assert_eq!(checkin_drop_percent(0, &[4, 4], 5), None, "too small");
        assert_eq!(checkin_drop_percent(0, &[], 1), None);
        let doc = AlertsDoc {
            checkin_drop: CheckinDropDoc {
                trailing_days: 2,
                ..CheckinDropDoc::default()
            },
            ..AlertsDoc::default()
        };
        let inputs = Inputs {
            checkins_last_day: 2,
            // Only the 2 newest trailing days count.
            checkins_trailing: vec![10, 10, 1000],
            ..Inputs::default()
        };
        let drop = measure(&doc, &inputs)
            .into_iter()
            .find(|m| m.kind == AlertKind::CheckinDrop)
            .unwrap();
        assert_eq!((drop.value, drop.level), (80, Some(AlertLevel::Red)));
    }

    #[test]
    fn an_invalid_stored_rule_set_is_a_red_alert_until_it_is_replaced() {
        let doc = AlertsDoc::default();
        let rules_alert = |version| {
            let inputs = Inputs {
                invalid_rules_version: version,
                ..Inputs::default()
            };
            measure(&doc, &inputs)
                .into_iter()
                .find(|m| m.kind == AlertKind::RulesInvalid)
                .unwrap()
        };
        let broken = rules_alert(Some(7));
        assert_eq!((broken.value, broken.level), (7, Some(AlertLevel::Red)));
        assert_eq!(rules_alert(None).level, None);
        assert_eq!(
            message_text("好物社群", &doc, AlertKind::RulesInvalid, AlertLevel::Red, 7, false),
            "【好物社群】红色预警：规则版本 7 已无法通过校验，仍按上一个有效版本运行。请到运营后台查看。"
        );
    }

    #[test]
    fn message_names_level_value_and_threshold() {
        let text = message_text(
            "好物社群",
            &AlertsDoc::default(),
            AlertKind::LeaveSpike,
            AlertLevel::Orange,
            12,
            true,
        );
        assert_eq!(
            text,
            "【好物社群】升级为橙色预警：今日退群 12 人（阈值 10）。请到运营后台查看。"
        );
    }
}
