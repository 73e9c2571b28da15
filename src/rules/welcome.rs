//! Welcome flows: joins are recorded at once and queued; everyone who joined
//! within the merge window gets one welcome (capped mentions). A burst at or above
//! the raid threshold switches the chat to raid mode: admins get one digest instead.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::actions::Action;
use super::event::{CustomerAdded, Event, JoinScene, MembersJoined, MembersLeft};
use super::route::route_to_members;
use super::templates::{
    CustomerWelcomeVars, OnboardingVars, OwnerDigestVars, OwnerWelcomeVars, RaidDigestVars,
    WelcomeVars,
};
use super::{
    ChatAddress, ChatRoute, ChatSnapshot, Content, MessageKind, OutRoute, Outbound, RuleSet,
    Snapshot,
};

/// A join waiting for its chat's merged welcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedJoin {
    pub user_id: String,
    pub name: Option<String>,
    pub joined_at: DateTime<Utc>,
    pub returning: bool,
    pub join_scene: JoinScene,
    /// Who invited them (display name), when WeCom's member record says so.
    #[serde(default)]
    pub inviter: Option<String>,
}

/// Records each join, awards first-time points once, queues the merged welcome.
pub fn on_members_joined(
    rules: &RuleSet,
    snapshot: &Snapshot,
    _event: &Event,
    joined: &MembersJoined,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let mut actions = version_actions(
        snapshot.chat.as_ref(),
        &joined.chat_id,
        joined.last_member_version.as_deref(),
        joined.current_member_version.as_deref(),
    );
    for user_id in &joined.user_ids {
        let person = snapshot.person(user_id);
        actions.push(Action::RecordJoin {
            chat_id: joined.chat_id.clone(),
            user_id: user_id.clone(),
            at: now,
            join_scene: joined.join_scene,
        });
        let new_member_points = rules.doc.points.new_member;
        if !person.seen_before && new_member_points > 0 {
            actions.push(Action::AwardPoints {
                user_id: user_id.clone(),
                delta: new_member_points,
                reason: "new_member".into(),
                // Once per person ever, whichever group they join first.
                reference: format!("new_member:{user_id}"),
                chat_id: Some(joined.chat_id.clone()),
                day: rules.community_day(now),
            });
        }
        if rules.doc.onboarding.enabled && !person.seen_before {
            actions.push(Action::ScheduleOnboarding {
                chat_id: joined.chat_id.clone(),
                user_id: user_id.clone(),
                due_at: now + Duration::seconds(rules.doc.onboarding.delay_secs),
            });
        }
        if rules.doc.welcome.enabled {
            actions.push(Action::QueueWelcome {
                chat_id: joined.chat_id.clone(),
                user_id: user_id.clone(),
                at: now,
                returning: person.seen_before,
                join_scene: joined.join_scene,
            });
        }
    }
    actions
}

pub fn on_members_left(snapshot: &Snapshot, left: &MembersLeft, now: DateTime<Utc>) -> Vec<Action> {
    let mut actions = version_actions(
        snapshot.chat.as_ref(),
        &left.chat_id,
        left.last_member_version.as_deref(),
        left.current_member_version.as_deref(),
    );
    for user_id in &left.user_ids {
        actions.push(Action::RecordLeave {
            chat_id: left.chat_id.clone(),
            user_id: user_id.clone(),
            at: now,
        });
        actions.push(Action::CancelQueuedWelcome {
            chat_id: left.chat_id.clone(),
            user_id: user_id.clone(),
        });
    }
    actions
}

/// Callbacks can be lost or reordered: when the version before this change is not
/// the one we hold, our member list is stale and must be re-pulled.
fn version_actions(
    chat: Option<&ChatSnapshot>,
    chat_id: &str,
    last: Option<&str>,
    current: Option<&str>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let stored = chat.and_then(|c| c.member_version.as_deref());
    if let (Some(stored), Some(last)) = (stored, last) {
        if stored != last {
            actions.push(Action::RequestResync {
                chat_id: chat_id.to_string(),
            });
        }
    }
    if let Some(current) = current {
        actions.push(Action::SetMemberVersion {
            chat_id: chat_id.to_string(),
            version: current.to_string(),
        });
    }
    actions
}

/// 1:1 welcome to a new customer through the one-shot welcome code.
pub fn on_customer_added(rules: &RuleSet, event: &Event, added: &CustomerAdded) -> Vec<Action> {
    let owner = Action::RecordCustomerOwner {
        external_user_id: added.external_user_id.clone(),
        staff_user_id: added.staff_user_id.clone(),
        at: added.at,
    };
    let Some(code) = &added.welcome_code else {
        return vec![owner];
    };
    let text = rules.render(
        &rules.doc.welcome.customer_template,
        &CustomerWelcomeVars {
            staff: added.staff_user_id.clone(),
            name: added.external_user_id.clone(),
        },
    );
    vec![
        owner,
        Action::Send(Outbound::new(
            format!("welcome_code:{}", event.id),
            OutRoute::WelcomeCode {
                code: code.clone(),
                event_at: added.at,
            },
            Content::text(text),
        )),
    ]
}

/// What keeping the group welcome material in WeCom takes, given the
/// rule set's text and what WeCom holds (template id, text) since the last sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaterialSync {
    /// WeCom holds it already, or the rule set keeps no material (an old
    /// template is left alone: an owner may still have it picked).
    UpToDate,
    /// First time: `group_welcome_template/add`.
    Add { text: String },
    /// The text changed: `group_welcome_template/edit` of the same template.
    Edit { template_id: String, text: String },
}

pub fn material_sync(rules: &RuleSet, synced: Option<(&str, &str)>) -> MaterialSync {
    let wanted = rules.doc.welcome.group_material.trim();
    match synced {
        _ if wanted.is_empty() => MaterialSync::UpToDate,
        None => MaterialSync::Add {
            text: wanted.to_string(),
        },
        Some((_, held)) if held == wanted => MaterialSync::UpToDate,
        Some((template_id, _)) => MaterialSync::Edit {
            template_id: template_id.to_string(),
            text: wanted.to_string(),
        },
    }
}

/// A member named in a merged group post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newcomer {
    pub user_id: String,
    pub name: Option<String>,
}

/// The onboarding tip for everyone whose tip fell due in one chat: **one**
/// post naming them (capped mentions, "等 N 人"), so a morning brings a chat
/// one tip, not one per newcomer. `batch_start` (the first tip's due time)
/// keys the post, so a replayed batch is not posted twice.
pub fn compose_onboarding(
    rules: &RuleSet,
    chat: Option<&ChatSnapshot>,
    chat_id: &str,
    newcomers: &[Newcomer],
    batch_start: DateTime<Utc>,
) -> Option<Outbound> {
    let first = newcomers.first()?;
    let cap = rules.doc.welcome.max_mentions;
    let names = mention_names(newcomers.iter().map(display), newcomers.len(), cap);
    let text = rules.render(
        &rules.doc.onboarding.template,
        &OnboardingVars {
            name: names.clone(),
            names,
            count: newcomers.len(),
            group_name: chat.map(|c| c.name.clone()).unwrap_or_default(),
        },
    );
    let mentions = newcomers
        .iter()
        .take(cap)
        .map(|n| n.user_id.clone())
        .collect();
    Some(Outbound::to_chat(
        format!(
            "onboarding:{chat_id}:{}:{}",
            batch_start.timestamp(),
            first.user_id
        ),
        ChatAddress::of(chat, chat_id),
        MessageKind::Onboarding,
        Content::text_mentioning(text, mentions),
    ))
}

fn display(newcomer: &Newcomer) -> String {
    newcomer
        .name
        .clone()
        .unwrap_or_else(|| newcomer.user_id.clone())
}

/// What a closed merge window turns into: one welcome, a raid digest, or nothing
/// (raid still going). Also returns the new raid deadline, if any.
pub fn compose_batch(
    rules: &RuleSet,
    chat: Option<&ChatSnapshot>,
    chat_id: &str,
    batch: &[QueuedJoin],
    now: DateTime<Utc>,
) -> (Vec<Outbound>, Option<DateTime<Utc>>) {
    let Some(first) = batch.first() else {
        return (Vec::new(), None);
    };
    let config = &rules.doc.welcome;
    let quiet = Duration::seconds(config.raid_quiet_secs);
    let last_join = batch
        .iter()
        .map(|j| j.joined_at)
        .max()
        .unwrap_or(first.joined_at);
    let key = format!(
        "welcome:{chat_id}:{}:{}",
        first.joined_at.timestamp(),
        first.user_id
    );
    let group_name = chat.map(|c| c.name.clone()).unwrap_or_default();
    let names = name_list(batch, config.max_mentions);

    let raid_active = chat
        .and_then(|c| c.raid_until)
        .is_some_and(|until| now < until);
    if raid_active {
        // Individual welcomes stay off; the raid lasts while joins keep coming.
        return (Vec::new(), Some(last_join + quiet));
    }
    if batch.len() >= config.raid_joins {
        let text = rules.render(
            &config.raid_template,
            &RaidDigestVars {
                group_name,
                count: batch.len(),
                names,
            },
        );
        let admins: Vec<String> = chat
            .map(|c| c.owner.iter().chain(c.admins.iter()).cloned().collect())
            .unwrap_or_default();
        let digest = Outbound::decided(
            format!("raid:{key}"),
            route_to_members(
                &rules.doc.community.app,
                &admins,
                "raid digest: chat has no owner or admins on record",
            ),
            Content::text(text),
        );
        return (vec![digest], Some(last_join + quiet));
    }

    let template = if batch.iter().all(|j| j.returning) {
        config.returning_template.clone()
    } else {
        choose_template(rules, chat, first.join_scene)
    };
    let member_count = chat.map(|c| c.member_count).unwrap_or(batch.len() as u32);
    let ordinal = member_count.saturating_sub(batch.len() as u32) + 1;
    let text = rules.render(
        &template,
        &WelcomeVars {
            name: names.clone(),
            names,
            count: batch.len(),
            group_name,
            member_count,
            ordinal,
            points: rules.doc.points.new_member,
            inviter: inviter_names(batch),
        },
    );
    let mentions: Vec<String> = batch
        .iter()
        .take(config.max_mentions)
        .map(|j| j.user_id.clone())
        .collect();
    let welcome = Outbound::to_chat(
        key,
        ChatAddress::of(chat, chat_id),
        MessageKind::Welcome,
        Content::text_mentioning(text, mentions),
    );
    (vec![welcome], None)
}

/// A closed merge window's outcome: messages to queue, the new raid deadline,
/// and for a customer group the owner digest to record.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowPlan {
    pub messages: Vec<Outbound>,
    pub raid_until: Option<DateTime<Utc>>,
    pub owner_digest: Option<OwnerDigestPlan>,
}

/// The owner digest of a customer group's window: the newcomers and the
/// suggested welcome the owner can later send as a mass message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerDigestPlan {
    pub chat_id: String,
    pub owner: String,
    pub newcomers: Vec<Newcomer>,
    pub suggestion: String,
}

/// [`compose_batch`], except that in a customer group — where no bot may
/// post — the welcome becomes **one** merged 1:1 app message to the group's
/// owner listing the newcomers with a suggested personal welcome
/// (WeCom itself posts the static group welcome material).
pub fn compose_window(
    rules: &RuleSet,
    chat: Option<&ChatSnapshot>,
    chat_id: &str,
    batch: &[QueuedJoin],
    now: DateTime<Utc>,
) -> WindowPlan {
    let (messages, raid_until) = compose_batch(rules, chat, chat_id, batch, now);
    let customer_group = chat.is_some_and(|c| matches!(c.route, ChatRoute::CustomerGroup));
    let welcomed = messages
        .iter()
        .any(|m| m.idempotency_key.starts_with("welcome:"));
    if !customer_group || !welcomed {
        return WindowPlan {
            messages,
            raid_until,
            owner_digest: None,
        };
    }
    let owner = chat.and_then(|c| c.owner.clone()).unwrap_or_default();
    let newcomers: Vec<Newcomer> = batch
        .iter()
        .map(|j| Newcomer {
            user_id: j.user_id.clone(),
            name: j.name.clone(),
        })
        .collect();
    let config = &rules.doc.welcome;
    let names = name_list(batch, config.max_mentions);
    let group_name = chat.map(|c| c.name.clone()).unwrap_or_default();
    let suggestion = rules.render(
        &config.owner_welcome_template,
        &OwnerWelcomeVars {
            names: names.clone(),
            count: batch.len(),
            group_name: group_name.clone(),
            inviter: inviter_names(batch),
        },
    );
    let text = rules.render(
        &config.owner_digest_template,
        &OwnerDigestVars {
            names,
            count: batch.len(),
            group_name,
            inviter: inviter_names(batch),
            suggestion: suggestion.clone(),
        },
    );
    let key = messages
        .iter()
        .find(|m| m.idempotency_key.starts_with("welcome:"))
        .map(|m| format!("owner_digest:{}", m.idempotency_key))
        .unwrap_or_default();
    let recipients: Vec<String> = chat.and_then(|c| c.owner.clone()).into_iter().collect();
    let digest = Outbound::decided(
        key,
        route_to_members(
            &rules.doc.community.app,
            &recipients,
            "owner digest: customer group has no owner on record",
        ),
        Content::text(text),
    );
    WindowPlan {
        messages: vec![digest],
        raid_until,
        owner_digest: (!owner.is_empty()).then(|| OwnerDigestPlan {
            chat_id: chat_id.to_string(),
            owner,
            newcomers,
            suggestion,
        }),
    }
}

/// The distinct inviters of a batch, in join order ("小张、小李"); empty when
/// WeCom named none.
fn inviter_names(batch: &[QueuedJoin]) -> String {
    let mut inviters: Vec<&str> = Vec::new();
    for inviter in batch.iter().filter_map(|j| j.inviter.as_deref()) {
        if !inviter.is_empty() && !inviters.contains(&inviter) {
            inviters.push(inviter);
        }
    }
    inviters.join("、")
}

fn choose_template(rules: &RuleSet, chat: Option<&ChatSnapshot>, scene: JoinScene) -> String {
    let config = &rules.doc.welcome;
    if let Some(chat) = chat {
        for tag in &chat.tags {
            if let Some(template) = config.by_tag.get(tag) {
                return template.clone();
            }
        }
    }
    config
        .by_scene
        .get(scene.as_str())
        .cloned()
        .unwrap_or_else(|| config.template.clone())
}

/// "小王、小李、小张 等 12 人" — capped so a big batch stays readable.
fn name_list(batch: &[QueuedJoin], cap: usize) -> String {
    let names = batch
        .iter()
        .map(|j| j.name.clone().unwrap_or_else(|| j.user_id.clone()));
    mention_names(names, batch.len(), cap)
}

/// The first `cap` of `total` names joined with "、", then " 等 N 人" when
/// some were left out. Every merged group post names its members this way.
pub fn mention_names(names: impl Iterator<Item = String>, total: usize, cap: usize) -> String {
    let mut text = names.take(cap).collect::<Vec<_>>().join("、");
    if total > cap {
        text.push_str(&format!(" 等 {total} 人"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::event::EventKind;
    use crate::rules::{ChatRoute, PersonSnapshot};
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
    }

    fn chat(route: ChatRoute) -> ChatSnapshot {
        ChatSnapshot {
            chat_id: "wrCHAT".into(),
            name: "好物分享群".into(),
            route,
            tags: Vec::new(),
            owner: Some("owner1".into()),
            admins: vec!["admin1".into()],
            member_count: 40,
            member_version: Some("v1".into()),
            raid_until: None,
        }
    }

    fn joins(n: usize) -> Vec<QueuedJoin> {
        (0..n)
            .map(|i| QueuedJoin {
                user_id: format!("wm{i}"),
                name: Some(format!("成员{i}")),
                joined_at: at(i as i64),
                returning: false,
                join_scene: JoinScene::QrCode,
                inviter: None,
            })
            .collect()
    }

    fn joined_event(users: &[&str], last: &str) -> (Event, MembersJoined) {
        let joined = MembersJoined {
            chat_id: "wrCHAT".into(),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
            join_scene: JoinScene::QrCode,
            last_member_version: Some(last.into()),
            current_member_version: Some("v2".into()),
        };
        (
            Event {
                id: "sha256:x".into(),
                kind: EventKind::MembersJoined(joined.clone()),
            },
            joined,
        )
    }

    #[test]
    fn three_joins_in_one_window_get_one_welcome_naming_all() {
        let rules = RuleSet::builtin();
        let chat = chat(ChatRoute::AppGroup);
        let (out, raid) = compose_batch(&rules, Some(&chat), "wrCHAT", &joins(3), at(10));
        assert_eq!(out.len(), 1);
        assert!(raid.is_none());
        assert!(
            out[0].text().contains("成员0、成员1、成员2"),
            "{}",
            out[0].text()
        );
        assert_eq!(out[0].content.mentions(), vec!["wm0", "wm1", "wm2"]);
        assert_eq!(
            out[0].route,
            OutRoute::AppGroup {
                chat_id: "wrCHAT".into()
            }
        );
        assert!(out[0].skipped.is_none());
    }

    #[test]
    fn mentions_are_capped() {
        let rules = RuleSet::from_toml("[welcome]\nmax_mentions = 2\n").unwrap();
        let (out, _) = compose_batch(
            &rules,
            Some(&chat(ChatRoute::AppGroup)),
            "wrCHAT",
            &joins(5),
            at(10),
        );
        assert_eq!(out[0].content.mentions().len(), 2);
        assert!(out[0].text().contains("等 5 人"));
    }

    #[test]
    fn burst_switches_to_raid_mode_with_one_admin_digest() {
        let rules = RuleSet::builtin(); // raid at 15 joins
        let chat = chat(ChatRoute::AppGroup);
        let (out, raid) = compose_batch(&rules, Some(&chat), "wrCHAT", &joins(20), at(20));
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].route,
            OutRoute::Member {
                app: "main".into(),
                user_ids: vec!["owner1".into(), "admin1".into()]
            }
        );
        assert!(out[0].text().contains("20 人"));
        assert_eq!(raid, Some(at(19) + Duration::seconds(300)));

        // While the raid lasts, later windows are not welcomed individually.
        let mut raided = chat.clone();
        raided.raid_until = raid;
        let (out, extended) = compose_batch(&rules, Some(&raided), "wrCHAT", &joins(2), at(60));
        assert!(out.is_empty());
        assert!(extended.is_some());
        // After the quiet period, welcomes resume.
        let (out, _) = compose_batch(&rules, Some(&raided), "wrCHAT", &joins(2), at(1000));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn customer_group_welcome_is_recorded_as_skipped_with_reason() {
        let rules = RuleSet::builtin();
        let chat = chat(ChatRoute::CustomerGroup);
        let (out, _) = compose_batch(&rules, Some(&chat), "wrCHAT", &joins(1), at(10));
        assert_eq!(out.len(), 1);
        assert!(out[0]
            .skipped
            .as_deref()
            .unwrap()
            .contains("the group owner must send it"));
        assert_eq!(out[0].route.name(), "customer_group_mass");
    }

    #[test]
    fn vip_tag_picks_vip_template_and_returning_members_are_greeted_back() {
        let rules = RuleSet::builtin();
        let mut vip = chat(ChatRoute::AppGroup);
        vip.tags = vec!["vip".into()];
        let (out, _) = compose_batch(&rules, Some(&vip), "wrCHAT", &joins(1), at(10));
        assert!(out[0].text().contains("VIP"), "{}", out[0].text());

        let mut back = joins(1);
        back[0].returning = true;
        let (out, _) = compose_batch(
            &rules,
            Some(&chat(ChatRoute::AppGroup)),
            "wrCHAT",
            &back,
            at(10),
        );
        assert!(out[0].text().contains("欢迎回来"), "{}", out[0].text());
    }

    #[test]
    fn onboarding_tips_of_one_chat_are_one_post_with_capped_mentions() {
        let rules = RuleSet::from_toml("[welcome]\nmax_mentions = 3\n").unwrap();
        let newcomers: Vec<Newcomer> = (0..19)
            .map(|i| Newcomer {
                user_id: format!("wm{i}"),
                name: Some(format!("成员{i}")),
            })
            .collect();
        let tip = compose_onboarding(
            &rules,
            Some(&chat(ChatRoute::AppGroup)),
            "wrCHAT",
            &newcomers,
            at(0),
        )
        .unwrap();
        assert!(
            tip.text().starts_with("成员0、成员1、成员2 等 19 人"),
            "{}",
            tip.text()
        );
        assert_eq!(tip.content.mentions(), vec!["wm0", "wm1", "wm2"]);
        assert!(tip.skipped.is_none());
        assert!(compose_onboarding(&rules, None, "wrCHAT", &[], at(0)).is_none());
    }

    #[test]
    fn group_material_is_added_once_then_edited_only_when_it_changes() {
        let rules =
            RuleSet::from_toml("[welcome]\ngroup_material = \"欢迎 %NICKNAME%\"\n").unwrap();
        assert_eq!(
            material_sync(&rules, None),
            MaterialSync::Add {
                text: "欢迎 %NICKNAME%".into()
            }
        );
        assert_eq!(
            material_sync(&rules, Some(("tpl1", "欢迎 %NICKNAME%"))),
            MaterialSync::UpToDate
        );
        assert_eq!(
            material_sync(&rules, Some(("tpl1", "旧的"))),
            MaterialSync::Edit {
                template_id: "tpl1".into(),
                text: "欢迎 %NICKNAME%".into()
            }
        );
        assert_eq!(
            material_sync(&RuleSet::builtin(), Some(("tpl1", "旧的"))),
            MaterialSync::UpToDate
        );
    }

    #[test]
    fn join_scene_picks_its_template() {
        let rules =
            RuleSet::from_toml("[welcome.by_scene]\ninvited = \"welcome_returning\"\n").unwrap();
        let mut invited = joins(1);
        invited[0].join_scene = JoinScene::Invited;
        let (out, _) = compose_batch(
            &rules,
            Some(&chat(ChatRoute::AppGroup)),
            "wrCHAT",
            &invited,
            at(10),
        );
        assert!(out[0].text().contains("欢迎回来"), "{}", out[0].text());
        let (out, _) = compose_batch(
            &rules,
            Some(&chat(ChatRoute::AppGroup)),
            "wrCHAT",
            &joins(1),
            at(10),
        );
        assert!(!out[0].text().contains("欢迎回来"), "{}", out[0].text());
    }

    #[test]
    fn join_awards_new_member_points_once_and_queues_welcome() {
        let rules = RuleSet::builtin();
        let mut snapshot = Snapshot {
            chat: Some(chat(ChatRoute::AppGroup)),
            ..Snapshot::default()
        };
        let mut returning = PersonSnapshot::new("old");
        returning.seen_before = true;
        snapshot.people.insert("old".into(), returning);
        let (event, joined) = joined_event(&["new", "old"], "v1");
        let actions = on_members_joined(&rules, &snapshot, &event, &joined, at(0));
        let awards: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::AwardPoints { user_id, delta, .. } => Some((user_id.as_str(), *delta)),
                _ => None,
            })
            .collect();
        assert_eq!(awards, vec![("new", 10)]);
        assert!(actions.iter().any(|a| matches!(a, Action::QueueWelcome { user_id, returning: true, .. } if user_id == "old")));
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::RequestResync { .. })));
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::SetMemberVersion { version, .. } if version == "v2")));
    }

    #[test]
    fn member_version_gap_requests_a_resync() {
        let rules = RuleSet::builtin();
        let snapshot = Snapshot {
            chat: Some(chat(ChatRoute::AppGroup)),
            ..Snapshot::default()
        };
        let (event, joined) = joined_event(&["new"], "v0-lost");
        let actions = on_members_joined(&rules, &snapshot, &event, &joined, at(0));
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::RequestResync { chat_id } if chat_id == "wrCHAT")));
    }
}
