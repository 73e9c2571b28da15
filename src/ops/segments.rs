//! Segments: saved filters over members (lifecycle stage, level, tags, RFM
//! segment, chats, last active day). A preview shows the count and a sample
//! before anything is sent; a push goes through the one outbound path:
//! internal members by a 1:1 app message, external contacts by one
//! owner-confirmed 1:1 mass message per owner (`add_msg_template`, chat_type
//! single: nothing reaches them until the owner confirms in WeCom), contacts
//! without a known owner in a skipped row saying why.
//!
//! Lotteries and polls limited to a segment ask [`member_of`] about one
//! member at the moment they enter or vote.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::active_rules::ActiveRules;
use crate::analytics::lifecycle::Stage;
use crate::analytics::rfm::Segment as RfmSegment;
use crate::rules::route::{is_external_contact, reasons, route_to_members};
use crate::rules::segment_limit::SegmentRef;
use crate::rules::{Content, OutRoute, Outbound, RuleSet};
use crate::store::outbox::{self, Enqueued};
use crate::store::segments::{self as store, MemberFacts, SegmentRow};
use crate::wecom::api::MAX_MASS_CONTACTS;

/// Members shown in a preview's sample.
pub const SAMPLE: usize = 10;
/// Most recipients of one app message (`message/send` touser, docs/wecom.md).
const MAX_TOUSER: usize = 1000;

/// A saved filter. Every list that is not empty must match (a member matches
/// a list when they have any of its items); an empty filter matches everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentFilter {
    /// Lifecycle stages (`new`, `active`, `core`, `at_risk`, `dormant`, `churned`).
    pub stages: Vec<String>,
    /// Level names of the rule set's `[points] levels`.
    pub levels: Vec<String>,
    /// Member tags (any).
    pub tags: Vec<String>,
    /// RFM segment labels (重要价值 …).
    pub rfm_segments: Vec<String>,
    /// Chats they are a current member of (any).
    pub chats: Vec<String>,
    /// Last active at most this many days ago.
    pub active_within_days: Option<i64>,
    /// Last active more than this many days ago, or never.
    pub inactive_for_days: Option<i64>,
}

impl SegmentFilter {
    fn normalized(mut self) -> SegmentFilter {
        for list in [
            &mut self.stages,
            &mut self.levels,
            &mut self.tags,
            &mut self.rfm_segments,
            &mut self.chats,
        ] {
            let items: Vec<String> = list
                .iter()
                .flat_map(|item| item.split(','))
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect();
            *list = items;
            list.sort();
            list.dedup();
        }
        self
    }

    /// Refuses what can never match, naming the field.
    pub fn validate(self, rules: &RuleSet) -> OpsResult<SegmentFilter> {
        let filter = self.normalized();
        if let Some(stage) = filter
            .stages
            .iter()
            .find(|s| Stage::ALL.iter().all(|k| k.as_str() != s.as_str()))
        {
            return Err(OpsError::invalid(
                "stages",
                format!("{stage}: not a lifecycle stage"),
            ));
        }
        if let Some(label) = filter
            .rfm_segments
            .iter()
            .find(|s| RfmSegment::parse(s).is_none())
        {
            return Err(OpsError::invalid(
                "rfm_segments",
                format!("{label}: not an RFM segment"),
            ));
        }
        let levels = &rules.doc.points.levels;
        if let Some(level) = filter
            .levels
            .iter()
            .find(|l| levels.iter().all(|k| &k.name != *l))
        {
            return Err(OpsError::invalid(
                "levels",
                format!("{level}: not a level of the rule set"),
            ));
        }
        for (field, days) in [
            ("active_within_days", filter.active_within_days),
            ("inactive_for_days", filter.inactive_for_days),
        ] {
            if days.is_some_and(|d| !(1..=3650).contains(&d)) {
                return Err(OpsError::invalid(field, "must be 1 to 3650 days"));
            }
        }
        Ok(filter)
    }

    /// `stages=at_risk; tags=vip,…` (`everyone` when empty).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, list) in [
            ("stages", &self.stages),
            ("levels", &self.levels),
            ("tags", &self.tags),
            ("rfm_segments", &self.rfm_segments),
            ("chats", &self.chats),
        ] {
            if !list.is_empty() {
                parts.push(format!("{name}={}", list.join(",")));
            }
        }
        if let Some(days) = self.active_within_days {
            parts.push(format!("active_within_days={days}"));
        }
        if let Some(days) = self.inactive_for_days {
            parts.push(format!("inactive_for_days={days}"));
        }
        if parts.is_empty() {
            "everyone".to_owned()
        } else {
            parts.join("; ")
        }
    }

    /// Whether one member matches, on `today` (pure).
    pub fn matches(&self, member: &MemberFacts, level: &str, today: NaiveDate) -> bool {
        let any = |wanted: &[String], have: &[String]| {
            wanted.is_empty() || wanted.iter().any(|w| have.contains(w))
        };
        let one = |wanted: &[String], have: Option<&str>| {
            wanted.is_empty() || have.is_some_and(|h| wanted.iter().any(|w| w == h))
        };
        let days_inactive = member
            .last_active_day
            .as_deref()
            .and_then(|d| d.parse::<NaiveDate>().ok())
            .map(|day| (today - day).num_days());
        one(&self.stages, member.stage.as_deref())
            && one(&self.levels, Some(level))
            && any(&self.tags, &member.tags)
            && one(&self.rfm_segments, member.rfm_segment.as_deref())
            && any(&self.chats, &member.chats)
            && self
                .active_within_days
                .is_none_or(|n| days_inactive.is_some_and(|d| d <= n))
            && self
                .inactive_for_days
                .is_none_or(|n| days_inactive.is_none_or(|d| d > n))
    }
}

/// Whether `filter` selects `member` as of `now`, their level named by the rule set.
fn selects(
    rules: &RuleSet,
    now: DateTime<Utc>,
    filter: &SegmentFilter,
    member: &MemberFacts,
) -> bool {
    let level = crate::rules::points::level_name(rules, member.lifetime_points);
    filter.matches(member, &level, rules.community_day(now))
}

/// The members `filter` selects, by user id.
fn select(
    rules: &RuleSet,
    now: DateTime<Utc>,
    filter: &SegmentFilter,
    people: Vec<MemberFacts>,
) -> Vec<MemberFacts> {
    people
        .into_iter()
        .filter(|member| selects(rules, now, filter, member))
        .collect()
}

fn filter_of(row: &SegmentRow) -> anyhow::Result<SegmentFilter> {
    serde_json::from_str(&row.filter_json).context("reading a stored segment filter")
}

/// The members of saved segment `segment_id` as of `now`, by user id (a
/// preview or a push).
pub async fn segment_members(
    conn: &mut SqliteConnection,
    segment_id: i64,
    now: DateTime<Utc>,
) -> OpsResult<Vec<MemberFacts>> {
    let row = store::get(conn, segment_id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("segment {segment_id}")))?;
    let filter = filter_of(&row)?;
    let rules = ActiveRules::new().in_force(conn).await?.rules;
    let people = store::member_facts(conn).await?;
    Ok(select(&rules, now, &filter, people))
}

/// Whether `user_id` is in `segment` at `now` (lottery entry, poll ballot):
/// the saved filter on that member's stored facts, as a preview judges
/// everyone. False when there is no segment, or it was deleted.
pub async fn member_of(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    segment: Option<&SegmentRef>,
    user_id: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let Some(segment) = segment else {
        return Ok(false);
    };
    let Some(row) = store::get(conn, segment.id).await? else {
        return Ok(false);
    };
    let filter = filter_of(&row)?;
    let member = store::member_facts_of(conn, user_id)
        .await?
        .unwrap_or_else(|| MemberFacts {
            user_id: user_id.to_owned(),
            ..MemberFacts::default()
        });
    Ok(selects(rules, now, &filter, &member))
}

/// Refuses a lottery or poll naming a segment that does not exist (field `segment_id`).
pub async fn require(conn: &mut SqliteConnection, segment_id: Option<i64>) -> OpsResult<()> {
    match segment_id {
        Some(id) if store::get(conn, id).await?.is_none() => Err(OpsError::invalid(
            "segment_id",
            format!("no saved segment {id}"),
        )),
        _ => Ok(()),
    }
}

/// What a segment selects right now.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub count: usize,
    /// Internal members (reached by a 1:1 app message).
    pub internal: usize,
    /// External contacts (all of them).
    pub external: usize,
    /// External contacts reached by an owner-confirmed 1:1 mass message …
    pub external_by_owner: usize,
    /// … from this many owners (one message each to confirm).
    pub owners: usize,
    /// External contacts with no known owner: not sent, with the reason.
    pub external_no_owner: usize,
    pub sample: Vec<MemberFacts>,
}

/// A segment's external contacts by the member who has each (pure): the
/// contacts per owner, and those without a known owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExternalPlan {
    pub by_owner: BTreeMap<String, Vec<String>>,
    pub no_owner: Vec<String>,
}

impl ExternalPlan {
    pub fn of<'a>(
        external: impl IntoIterator<Item = &'a str>,
        owners: &HashMap<String, String>,
    ) -> ExternalPlan {
        let mut plan = ExternalPlan::default();
        for id in external {
            match owners.get(id) {
                Some(owner) => plan
                    .by_owner
                    .entry(owner.clone())
                    .or_default()
                    .push(id.to_owned()),
                None => plan.no_owner.push(id.to_owned()),
            }
        }
        plan
    }

    fn reached(&self) -> usize {
        self.by_owner.values().map(Vec::len).sum()
    }
}

fn preview_of(members: &[MemberFacts], owners: &HashMap<String, String>) -> Preview {
    let plan = ExternalPlan::of(
        members
            .iter()
            .map(|m| m.user_id.as_str())
            .filter(|id| is_external_contact(id)),
        owners,
    );
    let external = plan.reached() + plan.no_owner.len();
    Preview {
        count: members.len(),
        internal: members.len() - external,
        external,
        external_by_owner: plan.reached(),
        owners: plan.by_owner.len(),
        external_no_owner: plan.no_owner.len(),
        sample: members.iter().take(SAMPLE).cloned().collect(),
    }
}

/// Count and sample of an unsaved filter (the console's live preview).
pub async fn preview(ops: &Ops, now: DateTime<Utc>, filter: SegmentFilter) -> OpsResult<Preview> {
    let rules = ops.in_force().await?.rules;
    let filter = filter.validate(&rules)?;
    let mut conn = ops.pool.acquire().await?;
    let people = store::member_facts(&mut conn).await?;
    let owners = crate::store::customer_tags::owners(&mut conn).await?;
    Ok(preview_of(&select(&rules, now, &filter, people), &owners))
}

/// Count and sample of a saved segment.
pub async fn preview_saved(ops: &Ops, now: DateTime<Utc>, segment_id: i64) -> OpsResult<Preview> {
    let mut conn = ops.pool.acquire().await?;
    let members = segment_members(&mut conn, segment_id, now).await?;
    let owners = crate::store::customer_tags::owners(&mut conn).await?;
    Ok(preview_of(&members, &owners))
}

/// A saved segment with its filter.
#[derive(Debug, Clone, Serialize)]
pub struct SavedSegment {
    pub id: i64,
    pub name: String,
    pub filter: SegmentFilter,
    /// The filter in one line, for the console.
    pub summary: String,
    pub created_by: String,
    pub updated_at: i64,
}

fn saved(row: SegmentRow) -> OpsResult<SavedSegment> {
    let filter = filter_of(&row)?;
    Ok(SavedSegment {
        id: row.id,
        name: row.name,
        summary: filter.describe(),
        filter,
        created_by: row.created_by,
        updated_at: row.updated_at,
    })
}

pub async fn list(ops: &Ops) -> OpsResult<Vec<SavedSegment>> {
    let mut conn = ops.pool.acquire().await?;
    store::list(&mut conn)
        .await?
        .into_iter()
        .map(saved)
        .collect()
}

pub async fn get(ops: &Ops, segment_id: i64) -> OpsResult<SavedSegment> {
    let mut conn = ops.pool.acquire().await?;
    let row = store::get(&mut conn, segment_id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("segment {segment_id}")))?;
    saved(row)
}

/// Saves a segment under `name` (a new one, or a new filter for that name;
/// operator or owner); its id.
pub async fn save(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    name: &str,
    filter: SegmentFilter,
) -> OpsResult<i64> {
    actor.require(Role::Operator)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 50 {
        return Err(OpsError::invalid("name", "must be 1 to 50 characters"));
    }
    let rules = ops.in_force().await?.rules;
    let filter = filter.validate(&rules)?;
    let json = serde_json::to_string(&filter).context("encoding a segment filter")?;
    let mut tx = ops.begin().await?;
    let id = store::save(&mut tx, name, &json, &actor.name, now.timestamp()).await?;
    audit(
        &mut tx,
        actor,
        now,
        "segment.save",
        &format!("segment:{id}"),
        &json,
    )
    .await?;
    tx.commit().await.context("committing a segment")?;
    Ok(id)
}

pub async fn delete(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    segment_id: i64,
) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    let mut tx = ops.begin().await?;
    if !store::delete(&mut tx, segment_id).await? {
        return Err(OpsError::not_found(format!("segment {segment_id}")));
    }
    audit(
        &mut tx,
        actor,
        now,
        "segment.delete",
        &format!("segment:{segment_id}"),
        "",
    )
    .await?;
    tx.commit().await.context("committing a segment deletion")?;
    Ok(())
}

/// What a segment push queued.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub id: String,
    /// Internal members the app messages go to.
    pub internal: Vec<String>,
    /// Every external contact of the segment.
    pub external: Vec<String>,
    /// External contacts per owner who must confirm the 1:1 mass message
    /// (waiting for the owner until then), and those without a known owner.
    pub external_plan: ExternalPlan,
    /// Why the contacts without an owner are not sent (when there are any).
    pub external_reason: Option<String>,
    /// Outbox rows added.
    pub rows: Vec<i64>,
}

/// Pushes `text` to a saved segment's members as of now (operator or
/// owner): internal members by 1:1 app messages (at most 1000 a row),
/// external contacts by one mass message per owner for the owner to confirm
/// (at most 10000 contacts a row), those without a known owner in one
/// skipped row naming why, all in one transaction with its audit row.
pub async fn push(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    segment_id: i64,
    text: &str,
) -> OpsResult<Pushed> {
    actor.require(Role::Operator)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(OpsError::invalid("text", "the message is empty"));
    }
    let mut tx = ops.begin().await?;
    let members = segment_members(&mut tx, segment_id, now).await?;
    if members.is_empty() {
        return Err(OpsError::invalid("segment", "the segment has no members"));
    }
    let app = ops.rules.get(&mut tx).await?.doc.community.app.clone();
    let (external, internal): (Vec<String>, Vec<String>) = members
        .into_iter()
        .map(|m| m.user_id)
        .partition(|id| is_external_contact(id));
    let id = format!("{}-{:08x}", now.timestamp_millis(), rand::random::<u32>());
    let content = Content::text(text);
    let mut rows = Vec::new();
    for (chunk, ids) in internal.chunks(MAX_TOUSER).enumerate() {
        let decision = route_to_members(&app, ids, "");
        let message = Outbound::decided(
            format!("segment:{segment_id}:{id}:{chunk}"),
            decision,
            content.clone(),
        );
        if let Enqueued::New(row) = outbox::enqueue(&mut tx, &message, &app, now).await? {
            rows.push(row);
        }
    }
    let owners = crate::store::customer_tags::owners(&mut tx).await?;
    let plan = ExternalPlan::of(external.iter().map(String::as_str), &owners);
    let mut messages = Vec::new();
    for (owner, contacts) in &plan.by_owner {
        for (chunk, ids) in contacts.chunks(MAX_MASS_CONTACTS).enumerate() {
            messages.push(Outbound::new(
                format!("segment:{segment_id}:{id}:owner:{owner}:{chunk}"),
                OutRoute::CustomerMass {
                    owner: Some(owner.clone()),
                    external_user_ids: ids.to_vec(),
                },
                content.clone(),
            ));
        }
    }
    // Without an owner the row is stored as skipped with the reason.
    if !plan.no_owner.is_empty() {
        messages.push(Outbound::new(
            format!("segment:{segment_id}:{id}:external"),
            OutRoute::CustomerMass {
                owner: None,
                external_user_ids: plan.no_owner.clone(),
            },
            content,
        ));
    }
    for message in &messages {
        if let Enqueued::New(row) = outbox::enqueue(&mut tx, message, &app, now).await? {
            rows.push(row);
        }
    }
    let external_reason =
        (!plan.no_owner.is_empty()).then(|| reasons::CUSTOMER_NO_OWNER.to_owned());
    let detail = format!(
        "push {id}: {} internal, {} external to {} owners to confirm, {} without owner not sent",
        internal.len(),
        plan.reached(),
        plan.by_owner.len(),
        plan.no_owner.len()
    );
    audit(
        &mut tx,
        actor,
        now,
        "segment.push",
        &format!("segment:{segment_id}"),
        &detail,
    )
    .await?;
    tx.commit().await.context("committing a segment push")?;
    Ok(Pushed {
        id,
        internal,
        external,
        external_plan: plan,
        external_reason,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> MemberFacts {
        MemberFacts {
            user_id: id.into(),
            stage: Some("at_risk".into()),
            last_active_day: Some("2026-07-01".into()),
            tags: vec!["vip".into()],
            chats: vec!["wrA".into()],
            rfm_segment: Some("重要唤回".into()),
            ..MemberFacts::default()
        }
    }

    #[test]
    fn every_non_empty_condition_must_match() {
        let today: NaiveDate = "2026-07-11".parse().unwrap();
        let m = member("u1");
        let f = |edit: fn(&mut SegmentFilter)| {
            let mut filter = SegmentFilter::default();
            edit(&mut filter);
            filter.matches(&m, "新手", today)
        };
        assert!(f(|_| {}));
        assert!(f(|f| f.stages = vec!["at_risk".into(), "new".into()]));
        assert!(!f(|f| f.stages = vec!["core".into()]));
        assert!(f(|f| f.tags = vec!["vip".into(), "x".into()]));
        assert!(!f(|f| f.tags = vec!["x".into()]));
        assert!(f(|f| f.rfm_segments = vec!["重要唤回".into()]));
        assert!(!f(|f| f.chats = vec!["wrB".into()]));
        assert!(f(|f| f.levels = vec!["新手".into()]));
        assert!(f(|f| f.active_within_days = Some(10)));
        assert!(!f(|f| f.active_within_days = Some(9)));
        assert!(f(|f| f.inactive_for_days = Some(9)));
        assert!(!f(|f| f.inactive_for_days = Some(10)));
        let never = MemberFacts::default();
        let inactive = SegmentFilter {
            inactive_for_days: Some(30),
            ..SegmentFilter::default()
        };
        assert!(inactive.matches(&never, "", today));
    }

    #[test]
    fn external_contacts_go_to_their_owner_or_are_counted_without_one() {
        let owners: HashMap<String, String> = [("wmA", "lisi"), ("wmB", "wangwu"), ("wmC", "lisi")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let plan = ExternalPlan::of(["wmA", "wmB", "wmC", "wmD"], &owners);
        assert_eq!(plan.by_owner["lisi"], ["wmA", "wmC"]);
        assert_eq!(plan.by_owner["wangwu"], ["wmB"]);
        assert_eq!(plan.no_owner, ["wmD"]);
        let members: Vec<MemberFacts> = ["u1", "wmA", "wmB", "wmC", "wmD"]
            .into_iter()
            .map(member)
            .collect();
        let preview = preview_of(&members, &owners);
        assert_eq!(
            (
                preview.internal,
                preview.external,
                preview.external_by_owner,
                preview.owners,
                preview.external_no_owner
            ),
            (1, 4, 3, 2, 1)
        );
    }

    #[test]
    fn a_filter_naming_what_cannot_exist_is_refused() {
        let rules = RuleSet::builtin();
        let bad = |filter: SegmentFilter| filter.validate(&rules).unwrap_err().to_string();
        assert!(bad(SegmentFilter {
            stages: vec!["sleepy".into()],
            ..Default::default()
        })
        .starts_with("stages:"));
        assert!(bad(SegmentFilter {
            rfm_segments: vec!["vip".into()],
            ..Default::default()
        })
        .starts_with("rfm_segments:"));
        let ok = SegmentFilter {
            tags: vec![" a, b ".into(), "a".into()],
            ..Default::default()
        }
        .validate(&rules)
        .unwrap();
        assert_eq!(ok.tags, ["a", "b"]);
    }
}
