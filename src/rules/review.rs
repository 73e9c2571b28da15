//! Review in tiers (`[moderation.review]`): fuzzy hits and reported messages
//! wait for an operator, who confirms, dismisses or escalates them to an
//! owner; appeals (`申诉`) go to the owner tier directly. Each tier has a
//! service-level time; an item still open past it raises one alert per tier.
//! Pure: times arrive as values.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::ruleset::FieldError;

/// `[moderation.review]` as a manager writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewDoc {
    /// Hours an item may wait in the operator tier before an alert.
    pub operator_sla_hours: u32,
    /// Hours an item may wait in the owner tier before an alert.
    pub owner_sla_hours: u32,
    /// UserIDs of the owner tier, told (app message) about escalations and
    /// appeals. Empty: `[alerts] admins`, else `[moderation] managers`.
    pub owners: Vec<String>,
    /// The word that starts an appeal (`申诉 <why>`) to the bot or the app.
    pub appeal_keyword: String,
}

impl Default for ReviewDoc {
    fn default() -> Self {
        Self {
            operator_sla_hours: 2,
            owner_sla_hours: 24,
            owners: Vec::new(),
            appeal_keyword: "申诉".into(),
        }
    }
}

pub fn validate(doc: &ReviewDoc) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut push = |path: &str, reason: &str| {
        errors.push(FieldError {
            path: format!("moderation.review.{path}"),
            reason: reason.into(),
        })
    };
    for (path, hours) in [
        ("operator_sla_hours", doc.operator_sla_hours),
        ("owner_sla_hours", doc.owner_sla_hours),
    ] {
        if !(1..=24 * 30).contains(&hours) {
            push(path, "must be between 1 and 720 hours");
        }
    }
    if doc.appeal_keyword.trim().is_empty() {
        push("appeal_keyword", "must not be empty");
    }
    for (i, owner) in doc.owners.iter().enumerate() {
        if owner.trim().is_empty() {
            push(&format!("owners[{i}]"), "must not be empty");
        }
    }
    errors
}

/// Who holds an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Operator,
    Owner,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Operator => "operator",
            Tier::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Option<Tier> {
        match text {
            "operator" => Some(Tier::Operator),
            "owner" => Some(Tier::Owner),
            _ => None,
        }
    }

    pub fn sla(self, doc: &ReviewDoc) -> Duration {
        Duration::hours(i64::from(match self {
            Tier::Operator => doc.operator_sla_hours,
            Tier::Owner => doc.owner_sla_hours,
        }))
    }

    fn chinese(self) -> &'static str {
        match self {
            Tier::Operator => "运营复核",
            Tier::Owner => "负责人复核",
        }
    }
}

/// When an item that reached `tier` at `since` breaches its SLA.
pub fn due_by(doc: &ReviewDoc, tier: Tier, since: DateTime<Utc>) -> DateTime<Utc> {
    since + tier.sla(doc)
}

/// An open item raises its alert once its tier's SLA has passed and no alert
/// was raised for this tier yet (an escalated item can alert again, once,
/// for the owner tier).
pub fn needs_alert(
    doc: &ReviewDoc,
    tier: Tier,
    since: DateTime<Utc>,
    alerted_tier: Option<Tier>,
    now: DateTime<Utc>,
) -> bool {
    alerted_tier != Some(tier) && now >= due_by(doc, tier, since)
}

/// The alert's text for admins.
pub fn sla_alert_text(
    community: &str,
    item_id: i64,
    kind: &str,
    tier: Tier,
    user_id: &str,
    hours: i64,
) -> String {
    format!(
        "【{community}·复核超时】#{item_id}（{kind}，成员 {user_id}）在{}已等待超过 {hours} 小时，请尽快处理。",
        tier.chinese()
    )
}

/// Who hears about the owner tier: `[moderation.review] owners`, else
/// `[alerts] admins`, else `[moderation] managers`.
pub fn owner_tier(rules: &super::RuleSet) -> Vec<String> {
    let doc = &rules.doc;
    [
        &doc.moderation.review.owners,
        &doc.alerts.admins,
        &doc.moderation.managers,
    ]
    .into_iter()
    .find(|people| !people.is_empty())
    .cloned()
    .unwrap_or_default()
}

/// Who hears about a breached SLA: `[alerts] admins`, else the owner tier.
pub fn sla_recipients(rules: &super::RuleSet) -> Vec<String> {
    if rules.doc.alerts.admins.is_empty() {
        owner_tier(rules)
    } else {
        rules.doc.alerts.admins.clone()
    }
}

/// Why an owner-tier message went nowhere.
pub const NO_OWNER_TIER: &str =
    "[moderation.review] owners, [alerts] admins and [moderation] managers are all empty";

/// An app message to the owner tier (skipped with the reason when nobody is
/// configured or all are external contacts).
pub fn to_owner_tier(rules: &super::RuleSet, key: String, text: String) -> super::Outbound {
    let app = rules.doc.community.app.clone();
    super::Outbound::decided(
        key,
        super::route::route_to_members(&app, &owner_tier(rules), NO_OWNER_TIER),
        super::Content::text(text),
    )
}

/// `申诉 <why>`: an appeal for the owner tier. Whether the member has a
/// punishment to appeal is the store's to check (it opens the item).
pub fn on_appeal(cx: &super::MessageContext, why: &str) -> Vec<super::Action> {
    use super::commands::reply;
    let person = cx.snapshot.person(&cx.message.sender);
    let name = person.display_name();
    let why: String = why.chars().take(200).collect();
    let hours = cx.rules.doc.moderation.review.owner_sla_hours;
    let opened = reply(
        cx.snapshot,
        cx.event,
        cx.message,
        format!("{name}，已收到你的申诉，负责人会在 {hours} 小时内复核并答复。"),
    );
    let mut refused = reply(
        cx.snapshot,
        cx.event,
        cx.message,
        format!("{name}，你目前没有可申诉的处罚，或已有一条申诉在处理中。"),
    );
    // One answer per message: exactly one of the two is queued.
    refused.idempotency_key = opened.idempotency_key.clone();
    let shown = if why.is_empty() {
        "（未写理由）"
    } else {
        why.as_str()
    };
    let notify = to_owner_tier(
        cx.rules,
        format!("review:appeal:{}", cx.event.id),
        format!(
            "【申诉待复核】{name}（{}）对处罚提出申诉：{shown}。请在运营后台「风控审核」页复核。",
            cx.message.sender
        ),
    );
    vec![super::Action::Appeal {
        user_id: cx.message.sender.clone(),
        chat_id: cx.message.chat_id.clone(),
        why,
        reference: format!("appeal:{}", cx.event.id),
        at: cx.now,
        opened: Box::new(opened),
        refused: Box::new(refused),
        notify: Box::new(notify),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_770_000_000 + hours * 3600, 0).unwrap()
    }

    #[test]
    fn an_item_alerts_once_per_tier_after_its_sla() {
        let doc = ReviewDoc::default();
        let since = at(0);
        assert!(!needs_alert(&doc, Tier::Operator, since, None, at(1)));
        assert!(needs_alert(&doc, Tier::Operator, since, None, at(2)));
        assert!(!needs_alert(
            &doc,
            Tier::Operator,
            since,
            Some(Tier::Operator),
            at(30)
        ));
        // Escalated at hour 3: the owner tier has its own, longer clock.
        assert!(!needs_alert(
            &doc,
            Tier::Owner,
            at(3),
            Some(Tier::Operator),
            at(26)
        ));
        assert!(needs_alert(
            &doc,
            Tier::Owner,
            at(3),
            Some(Tier::Operator),
            at(27)
        ));
    }

    #[test]
    fn bad_settings_name_their_field() {
        let doc = ReviewDoc {
            operator_sla_hours: 0,
            appeal_keyword: " ".into(),
            ..ReviewDoc::default()
        };
        let paths: Vec<String> = validate(&doc).into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            vec![
                "moderation.review.operator_sla_hours",
                "moderation.review.appeal_keyword"
            ]
        );
    }
}
