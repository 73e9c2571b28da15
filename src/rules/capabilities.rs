//! What qunyun can do in a chat, feature by feature: the table a manager sees
//! on the chat's page and in `qunyun chats show`. Pure; every answer comes
//! from the decisions the engine itself uses ([`route_for`],
//! [`removal_for`], the smart bot answering its @-mentions), so the table
//! cannot promise what the engine will not do.

use serde::Serialize;

use super::route::{
    removal_for, route_for, Content, MessageKind, Removal, RouteDecision, SmartBotPush,
};
use super::ChatSnapshot;

/// A feature a manager asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    Welcome,
    CheckinReply,
    AutoReply,
    Push,
    ModerationWarning,
    ModerationRemoval,
}

impl Feature {
    pub const ALL: [Feature; 6] = [
        Feature::Welcome,
        Feature::CheckinReply,
        Feature::AutoReply,
        Feature::Push,
        Feature::ModerationWarning,
        Feature::ModerationRemoval,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Welcome => "welcome",
            Feature::CheckinReply => "checkin_reply",
            Feature::AutoReply => "auto_reply",
            Feature::Push => "push",
            Feature::ModerationWarning => "moderation_warning",
            Feature::ModerationRemoval => "moderation_removal",
        }
    }
}

/// How a feature works in a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Capability {
    /// Automatic, through this outbox route (`app_group`, `webhook`, `smart_bot`, `app_chat_remove`).
    Route {
        route: String,
    },
    /// A mass message the group owner confirms on their phone.
    OwnerConfirmation {
        owner: String,
    },
    /// qunyun sends a person a task; the person does it by hand.
    TaskForPerson,
    /// A customer group's welcome: WeCom itself posts the group welcome
    /// material qunyun keeps in sync, and the owner gets one merged digest
    /// of newcomers (a 1:1 app message) whose suggested welcome they can
    /// send as an owner-confirmed mass message (docs/wecom.md#chat-kinds).
    MaterialAndOwnerDigest {
        /// `None`: no owner on record, so no digest can be sent.
        owner: Option<String>,
    },
    NotPossible {
        reason: String,
    },
}

impl Capability {
    /// One line for the CLI and the console.
    pub fn describe(&self) -> String {
        match self {
            Capability::Route { route } => format!("automatic via {route}"),
            Capability::OwnerConfirmation { owner } => {
                format!("needs the owner's confirmation ({owner})")
            }
            Capability::TaskForPerson => "task for a person".to_owned(),
            Capability::MaterialAndOwnerDigest { owner: Some(owner) } => format!(
                "group welcome material (posted by WeCom) + newcomer digest to the owner ({owner}), \
                 who can send the suggested welcome as a mass message"
            ),
            Capability::MaterialAndOwnerDigest { owner: None } => {
                "group welcome material (posted by WeCom); no owner on record for the newcomer \
                 digest"
                    .to_owned()
            }
            Capability::NotPossible { reason } => format!("not possible: {reason}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilityRow {
    pub feature: Feature,
    #[serde(flatten)]
    pub capability: Capability,
    pub summary: String,
}

/// The smart bot answers the @-mentions it receives through their
/// response_url, whatever else the chat has (docs/wecom.md#chat-kinds).
const SMART_BOT_ANSWER: &str = "smart_bot";

/// Why an internal group gets no welcome.
const NO_JOIN_EVENTS: &str = "WeCom reports no joins in internal groups";

/// Every feature's answer for `chat` whose smart bot (if any) only answers,
/// in [`Feature::ALL`] order.
pub fn capabilities(chat: &ChatSnapshot) -> Vec<CapabilityRow> {
    capabilities_with_push(chat, SmartBotPush::AnswersOnly)
}

/// [`capabilities`] for a chat whose smart bot can push as `push` says (a
/// bot on a long connection, docs/wecom.md#smart-bot-long-connection).
pub fn capabilities_with_push(chat: &ChatSnapshot, push: SmartBotPush) -> Vec<CapabilityRow> {
    Feature::ALL
        .into_iter()
        .map(|feature| {
            let capability = capability_with_push(chat, push, feature);
            CapabilityRow {
                feature,
                summary: capability.describe(),
                capability,
            }
        })
        .collect()
}

pub fn capability(chat: &ChatSnapshot, feature: Feature) -> Capability {
    capability_with_push(chat, SmartBotPush::AnswersOnly, feature)
}

pub fn capability_with_push(
    chat: &ChatSnapshot,
    push: SmartBotPush,
    feature: Feature,
) -> Capability {
    let answers_mentions = chat.route.smart_bot().is_some();
    let kind = match feature {
        // The engine's own rule (rules::welcome::compose_window): a customer
        // group's welcome window becomes the owner digest.
        Feature::Welcome if matches!(chat.route, super::ChatRoute::CustomerGroup) => {
            return Capability::MaterialAndOwnerDigest {
                owner: chat.owner.clone(),
            }
        }
        // WeCom reports no joins or leaves in internal groups (only customer
        // groups raise change_external_chat), so the engine never sees a
        // newcomer there to welcome (docs/wecom.md#chat-kinds).
        Feature::Welcome if matches!(chat.route, super::ChatRoute::InternalGroup { .. }) => {
            return Capability::NotPossible {
                reason: NO_JOIN_EVENTS.to_owned(),
            }
        }
        Feature::Welcome => MessageKind::Welcome,
        Feature::Push => MessageKind::Push,
        Feature::CheckinReply | Feature::AutoReply | Feature::ModerationWarning
            if answers_mentions =>
        {
            return Capability::Route {
                route: SMART_BOT_ANSWER.to_owned(),
            }
        }
        Feature::CheckinReply | Feature::AutoReply => MessageKind::Reply,
        Feature::ModerationWarning => MessageKind::ModerationWarning,
        Feature::ModerationRemoval => {
            return match removal_for(Some(&chat.route)) {
                Removal::AppChat => Capability::Route {
                    route: "app_chat_remove".to_owned(),
                },
                Removal::TaskForPerson => Capability::TaskForPerson,
            }
        }
    };
    let address = chat.address().with_smart_bot_push(push);
    match route_for(address, kind, &Content::text("")) {
        RouteDecision::Send { route } => Capability::Route {
            route: route.name().to_owned(),
        },
        RouteDecision::NeedsOwnerConfirmation { owner, .. } => {
            Capability::OwnerConfirmation { owner }
        }
        RouteDecision::Skip { reason, .. } => Capability::NotPossible { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ChatRoute;

    fn chat(route: ChatRoute) -> ChatSnapshot {
        ChatSnapshot {
            chat_id: "wr1".into(),
            name: "群".into(),
            route,
            tags: vec![],
            owner: Some("boss".into()),
            admins: vec![],
            member_count: 3,
            member_version: None,
            raid_until: None,
        }
    }

    fn table(route: ChatRoute) -> Vec<String> {
        capabilities(&chat(route))
            .into_iter()
            .map(|row| format!("{}: {}", row.feature.name(), row.summary))
            .collect()
    }

    #[test]
    fn app_groups_do_everything_themselves() {
        assert_eq!(
            table(ChatRoute::AppGroup),
            [
                "welcome: automatic via app_group",
                "checkin_reply: automatic via app_group",
                "auto_reply: automatic via app_group",
                "push: automatic via app_group",
                "moderation_warning: automatic via app_group",
                "moderation_removal: automatic via app_chat_remove",
            ]
        );
    }

    #[test]
    fn customer_groups_need_the_owner_or_a_person() {
        let rows = table(ChatRoute::CustomerGroup);
        assert_eq!(
            rows[0],
            "welcome: group welcome material (posted by WeCom) + newcomer digest to the owner \
             (boss), who can send the suggested welcome as a mass message"
        );
        assert!(rows[1].starts_with("checkin_reply: not possible"));
        assert_eq!(rows[3], "push: needs the owner's confirmation (boss)");
        assert_eq!(rows[5], "moderation_removal: task for a person");
    }

    #[test]
    fn internal_groups_post_through_the_robot_and_answer_through_the_smart_bot() {
        let both = ChatRoute::InternalGroup {
            robot_key: Some("K".into()),
            smart_bot: Some("helper".into()),
        };
        assert_eq!(
            table(both),
            [
                "welcome: not possible: WeCom reports no joins in internal groups",
                "checkin_reply: automatic via smart_bot",
                "auto_reply: automatic via smart_bot",
                "push: automatic via webhook",
                "moderation_warning: automatic via smart_bot",
                "moderation_removal: task for a person",
            ]
        );
        let bot_only = table(ChatRoute::internal_with_smart_bot("helper"));
        assert!(bot_only[3].starts_with("push: not possible: internal group with the smart bot"));
        assert_eq!(bot_only[1], "checkin_reply: automatic via smart_bot");
    }

    #[test]
    fn a_smart_bot_on_a_long_connection_pushes_once_a_member_wrote_to_it() {
        let bot_only = chat(ChatRoute::internal_with_smart_bot("helper"));
        let push_row = |push| {
            capabilities_with_push(&bot_only, push)
                .into_iter()
                .find(|row| row.feature == Feature::Push)
                .unwrap()
                .summary
        };
        assert_eq!(push_row(SmartBotPush::Ready), "automatic via smart_bot");
        assert_eq!(
            push_row(SmartBotPush::NobodyWroteYet),
            format!(
                "not possible: {}",
                crate::rules::route::reasons::SMART_BOT_NOBODY_WROTE
            )
        );
        assert!(push_row(SmartBotPush::AnswersOnly)
            .starts_with("not possible: internal group with the smart bot"));
    }
}
