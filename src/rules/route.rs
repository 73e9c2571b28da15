//! The one route decision: how a message can reach a chat (or members), or
//! why it cannot. Pure; the engine, the scheduler, manager broadcasts and a
//! per-chat capability table all ask [`route_for`], so what the console says
//! a chat can do is what the engine does. The platform facts behind each
//! answer are in `docs/wecom.md`.

use serde::{Deserialize, Serialize};

use super::actions::{OutRoute, Outbound};
use super::schedule::{ImageSource, NewsArticle, RenderedMessage};
use super::{ChatRoute, ChatSnapshot};

/// What a message says, independent of the route that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    /// Plain text; `mentions` are UserIDs to @ where the route supports it
    /// (group robots do; app messages and smart-bot answers do not).
    Text {
        text: String,
        mentions: Vec<String>,
    },
    Markdown {
        text: String,
    },
    News {
        articles: Vec<NewsArticle>,
    },
    Image {
        source: ImageSource,
    },
}

impl Content {
    pub fn text(text: impl Into<String>) -> Self {
        Content::Text {
            text: text.into(),
            mentions: Vec::new(),
        }
    }

    pub fn text_mentioning(text: impl Into<String>, mentions: Vec<String>) -> Self {
        Content::Text {
            text: text.into(),
            mentions,
        }
    }

    /// The readable words of the message (text, markdown, first news title).
    pub fn summary(&self) -> &str {
        match self {
            Content::Text { text, .. } | Content::Markdown { text } => text,
            Content::News { articles } => articles.first().map_or("", |a| a.title.as_str()),
            Content::Image { .. } => "",
        }
    }

    pub fn mentions(&self) -> &[String] {
        match self {
            Content::Text { mentions, .. } => mentions,
            _ => &[],
        }
    }
}

impl From<RenderedMessage> for Content {
    fn from(message: RenderedMessage) -> Self {
        match message {
            RenderedMessage::Text { content } => Content::text(content),
            RenderedMessage::Markdown { content } => Content::Markdown { text: content },
            RenderedMessage::News { articles } => Content::News { articles },
            RenderedMessage::Image { source } => Content::Image { source },
        }
    }
}

/// Why a message goes to a chat. It decides whether the message may wait
/// for a person: a welcome or an answer is pointless hours later, a planned
/// announcement is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// The merged welcome (or raid digest) of a join window.
    Welcome,
    /// A first-time member's onboarding tip.
    Onboarding,
    /// An answer to a member's message: check-ins, commands, auto-replies.
    Reply,
    /// A moderation warning in the chat.
    ModerationWarning,
    /// A scheduled push.
    Push,
    /// A manager's "send now" to chosen chats.
    Broadcast,
}

impl MessageKind {
    pub const ALL: [MessageKind; 6] = [
        MessageKind::Welcome,
        MessageKind::Onboarding,
        MessageKind::Reply,
        MessageKind::ModerationWarning,
        MessageKind::Push,
        MessageKind::Broadcast,
    ];

    /// Whether the message may go out as a customer-group mass message that
    /// the group owner confirms on their phone (minutes or days later). The
    /// onboarding tip may: it is one merged post per chat and day, already a
    /// day after the joins.
    pub fn may_wait_for_owner(self) -> bool {
        matches!(
            self,
            MessageKind::Push | MessageKind::Broadcast | MessageKind::Onboarding
        )
    }
}

/// Whether the smart bot sitting in a chat can post on its own
/// (docs/wecom.md#smart-bot-long-connection): only a bot on a long
/// connection can push (`aibot_send_msg`), and WeCom takes a push only into
/// a conversation where a member has written to the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmartBotPush {
    /// A callback-mode bot (or nothing known): it only answers @-mentions.
    #[default]
    AnswersOnly,
    /// On a long connection, but no member has written to it in this chat yet.
    NobodyWroteYet,
    /// On a long connection, and a member has written to it in this chat.
    Ready,
}

/// The registry facts the decision needs about a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatAddress<'a> {
    pub chat_id: &'a str,
    /// `None`: the chat is not registered (yet).
    pub route: Option<&'a ChatRoute>,
    pub owner: Option<&'a str>,
    /// What the chat's smart bot (if any) can do beyond answering.
    pub smart_bot_push: SmartBotPush,
}

impl<'a> ChatAddress<'a> {
    /// A chat we know nothing about.
    pub fn unknown(chat_id: &'a str) -> Self {
        Self {
            chat_id,
            route: None,
            owner: None,
            smart_bot_push: SmartBotPush::AnswersOnly,
        }
    }

    /// The same chat, its smart bot able to push as `push` says.
    pub fn with_smart_bot_push(self, push: SmartBotPush) -> Self {
        Self {
            smart_bot_push: push,
            ..self
        }
    }

    /// `chat` if registered, else the bare id.
    pub fn of(chat: Option<&'a ChatSnapshot>, chat_id: &'a str) -> Self {
        chat.map_or_else(|| Self::unknown(chat_id), ChatSnapshot::address)
    }
}

impl ChatSnapshot {
    pub fn address(&self) -> ChatAddress<'_> {
        ChatAddress {
            chat_id: &self.chat_id,
            route: Some(&self.route),
            owner: self.owner.as_deref(),
            // The rules answer through the smart bot's reply; pushes are
            // decided where the bot's mode is known (see `SmartBotPush`).
            smart_bot_push: SmartBotPush::AnswersOnly,
        }
    }
}

/// The answer of [`route_for`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum RouteDecision {
    /// Posted automatically through this route.
    Send { route: OutRoute },
    /// Only the group owner can post it: a mass message they confirm.
    NeedsOwnerConfirmation { owner: String, chat_id: String },
    /// Nothing can post it. `route` is where the row is filed (it is still
    /// stored, as skipped with the reason, so a manager sees it).
    Skip { route: OutRoute, reason: String },
}

impl RouteDecision {
    /// The outbox route name the message is filed under.
    pub fn route_name(&self) -> &'static str {
        match self {
            RouteDecision::Send { route } | RouteDecision::Skip { route, .. } => route.name(),
            RouteDecision::NeedsOwnerConfirmation { .. } => "customer_group_mass",
        }
    }

    pub fn skip_reason(&self) -> Option<&str> {
        match self {
            RouteDecision::Skip { reason, .. } => Some(reason),
            _ => None,
        }
    }

    fn skip(route: OutRoute, reason: &str) -> Self {
        RouteDecision::Skip {
            route,
            reason: reason.to_owned(),
        }
    }
}

/// Skip reasons callers and tests may look for.
pub mod reasons {
    pub const UNKNOWN_CHAT: &str = "unknown chat: not in the registry yet";
    pub const CUSTOMER_GROUP_AUTOMATIC: &str = "customer group: nothing can post automatically \
         (no robot or smart bot can join one), the group owner must send it";
    pub const CUSTOMER_GROUP_NO_OWNER: &str =
        "customer group has no known owner to confirm a mass message";
    pub const SMART_BOT_ONLY: &str = "internal group with the smart bot but no robot: a smart \
         bot can only answer @-mentions; add a webhook robot to post here";
    pub const SMART_BOT_NOBODY_WROTE: &str =
        "no member has written to the bot in this chat yet: WeCom lets a smart bot on a long \
         connection push only into a conversation where a member wrote to it";
    pub const INTERNAL_NO_ROBOT: &str =
        "internal group without robot: add a webhook robot (its key) to post here";
    pub const APP_GROUP_IMAGE_URL: &str =
        "app groups need an uploaded media id for images, not a URL";
    pub const WEBHOOK_IMAGE: &str = "webhook robots cannot post an image by URL or media id";
    pub const SMART_BOT_CONTENT: &str = "a smart bot answers in markdown only";
    pub const CUSTOMER_NO_OWNER: &str = "no known owner for this external contact: qunyun \
         learns who has a customer from the add_external_contact event, and only that member \
         may tag the customer or confirm a 1:1 mass message to them";
    pub const EXTERNAL_MEMBER: &str =
        "外部联系人收不到应用消息（app messages reach internal members only）：请群主或客服人工联系";
}

/// How `content` of this `kind` can reach the chat: through its route, by
/// the owner's confirmation, or not at all (with the reason).
pub fn route_for(chat: ChatAddress<'_>, kind: MessageKind, content: &Content) -> RouteDecision {
    let chat_id = chat.chat_id.to_owned();
    let Some(route) = chat.route else {
        return RouteDecision::skip(
            OutRoute::CustomerGroupMass {
                owner: None,
                chat_ids: vec![chat_id],
            },
            reasons::UNKNOWN_CHAT,
        );
    };
    let decided = match route {
        ChatRoute::AppGroup => OutRoute::AppGroup { chat_id },
        ChatRoute::InternalGroup { .. } => match (route.robot_key(), route.smart_bot()) {
            (Some(key), _) => OutRoute::Webhook {
                key: key.to_owned(),
            },
            (None, Some(bot)) => match chat.smart_bot_push {
                SmartBotPush::Ready if !bot.is_empty() => OutRoute::SmartBotPush {
                    bot: bot.to_owned(),
                    chat_id,
                },
                SmartBotPush::NobodyWroteYet if !bot.is_empty() => {
                    return RouteDecision::skip(
                        OutRoute::SmartBotPush {
                            bot: bot.to_owned(),
                            chat_id,
                        },
                        reasons::SMART_BOT_NOBODY_WROTE,
                    )
                }
                _ => {
                    return RouteDecision::skip(
                        OutRoute::SmartBotChat { chat_id },
                        reasons::SMART_BOT_ONLY,
                    )
                }
            },
            (None, None) => {
                return RouteDecision::skip(
                    OutRoute::Webhook { key: String::new() },
                    reasons::INTERNAL_NO_ROBOT,
                )
            }
        },
        ChatRoute::CustomerGroup => {
            let filed = OutRoute::CustomerGroupMass {
                owner: chat.owner.map(str::to_owned),
                chat_ids: vec![chat_id.clone()],
            };
            if !kind.may_wait_for_owner() {
                return RouteDecision::skip(filed, reasons::CUSTOMER_GROUP_AUTOMATIC);
            }
            return match chat.owner.filter(|owner| !owner.is_empty()) {
                Some(owner) => RouteDecision::NeedsOwnerConfirmation {
                    owner: owner.to_owned(),
                    chat_id,
                },
                None => RouteDecision::skip(filed, reasons::CUSTOMER_GROUP_NO_OWNER),
            };
        }
    };
    match unsupported(&decided, content) {
        Some(reason) => RouteDecision::skip(decided, reason),
        None => RouteDecision::Send { route: decided },
    }
}

/// How a member who broke the rules can be removed from a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// `appchat/update` removes them: only for groups the app created.
    AppChat,
    /// No API can: a person (owner or manager) gets the task
    /// (docs/wecom.md#chat-kinds).
    TaskForPerson,
}

/// The one removal decision, for the moderation engine and the capability table.
pub fn removal_for(route: Option<&ChatRoute>) -> Removal {
    match route {
        Some(ChatRoute::AppGroup) => Removal::AppChat,
        _ => Removal::TaskForPerson,
    }
}

/// An app message to members: skipped when nobody is left to receive it.
/// External contacts are dropped (app messages reach internal members only);
/// `if_nobody` says why an empty list is empty.
pub fn route_to_members(app: &str, user_ids: &[String], if_nobody: &str) -> RouteDecision {
    let internal: Vec<String> = user_ids
        .iter()
        .filter(|user| !is_external_contact(user))
        .cloned()
        .collect();
    let reason = if !internal.is_empty() {
        None
    } else if user_ids.is_empty() {
        Some(if_nobody)
    } else {
        Some(reasons::EXTERNAL_MEMBER)
    };
    let route = OutRoute::Member {
        app: app.to_owned(),
        user_ids: if internal.is_empty() {
            user_ids.to_vec()
        } else {
            internal
        },
    };
    match reason {
        Some(reason) => RouteDecision::skip(route, reason),
        None => RouteDecision::Send { route },
    }
}

/// Whether a WeCom id is an external contact's (`wm…`/`wo…`).
pub fn is_external_contact(user_id: &str) -> bool {
    user_id.starts_with("wm") || user_id.starts_with("wo")
}

/// Why `route` cannot carry `content`, if it cannot. The outbox payload
/// builder (`outbound::Payload::build`) follows the same table; a test keeps
/// the two in step.
pub fn unsupported(route: &OutRoute, content: &Content) -> Option<&'static str> {
    match (route, content) {
        (
            OutRoute::AppGroup { .. } | OutRoute::Member { .. },
            Content::Image {
                source: ImageSource::Url(_),
            },
        ) => Some(reasons::APP_GROUP_IMAGE_URL),
        (OutRoute::Webhook { .. }, Content::Image { .. }) => Some(reasons::WEBHOOK_IMAGE),
        (
            OutRoute::SmartBotResponse { .. }
            | OutRoute::SmartBotChat { .. }
            | OutRoute::SmartBotPush { .. },
            Content::News { .. } | Content::Image { .. },
        ) => Some(reasons::SMART_BOT_CONTENT),
        _ => None,
    }
}

impl Outbound {
    /// A message on a route decided elsewhere (a 1:1 answer, a member notice).
    pub fn new(key: impl Into<String>, route: OutRoute, content: Content) -> Self {
        Outbound {
            idempotency_key: key.into(),
            route,
            content,
            not_before: None,
            skipped: None,
        }
    }

    /// The message a decision gives: sent on its route, a one-chat mass
    /// message for the owner to confirm, or a skipped row with the reason.
    pub fn decided(key: impl Into<String>, decision: RouteDecision, content: Content) -> Self {
        let (route, skipped) = match decision {
            RouteDecision::Send { route } => (route, None),
            RouteDecision::NeedsOwnerConfirmation { owner, chat_id } => (
                OutRoute::CustomerGroupMass {
                    owner: Some(owner),
                    chat_ids: vec![chat_id],
                },
                None,
            ),
            RouteDecision::Skip { route, reason } => (route, Some(reason)),
        };
        Outbound {
            skipped,
            ..Outbound::new(key, route, content)
        }
    }

    /// A message into a chat, through [`route_for`].
    pub fn to_chat(
        key: impl Into<String>,
        chat: ChatAddress<'_>,
        kind: MessageKind,
        content: Content,
    ) -> Self {
        let decision = route_for(chat, kind, &content);
        Outbound::decided(key, decision, content)
    }

    /// The message's readable text (see [`Content::summary`]).
    pub fn text(&self) -> &str {
        self.content.summary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> Content {
        Content::text_mentioning("hi", vec!["u1".into()])
    }

    fn contents() -> [Content; 5] {
        [
            text(),
            Content::Markdown {
                text: "**hi**".into(),
            },
            Content::News {
                articles: vec![NewsArticle {
                    title: "t".into(),
                    description: None,
                    url: "https://example.com".into(),
                    picurl: None,
                }],
            },
            Content::Image {
                source: ImageSource::MediaId("MEDIA".into()),
            },
            Content::Image {
                source: ImageSource::Url("https://example.com/a.png".into()),
            },
        ]
    }

    fn chat<'a>(route: &'a ChatRoute, owner: Option<&'a str>) -> ChatAddress<'a> {
        ChatAddress {
            chat_id: "wr1",
            route: Some(route),
            owner,
            smart_bot_push: SmartBotPush::AnswersOnly,
        }
    }

    #[test]
    fn a_smart_bot_on_a_long_connection_pushes_once_a_member_wrote_to_it() {
        let bot = ChatRoute::internal_with_smart_bot("helper");
        let push = OutRoute::SmartBotPush {
            bot: "helper".into(),
            chat_id: "wr1".into(),
        };
        for kind in MessageKind::ALL {
            for content in contents() {
                let ready = chat(&bot, None).with_smart_bot_push(SmartBotPush::Ready);
                let expected = if matches!(content, Content::News { .. } | Content::Image { .. }) {
                    RouteDecision::skip(push.clone(), reasons::SMART_BOT_CONTENT)
                } else {
                    RouteDecision::Send {
                        route: push.clone(),
                    }
                };
                assert_eq!(route_for(ready, kind, &content), expected);
                let nobody = chat(&bot, None).with_smart_bot_push(SmartBotPush::NobodyWroteYet);
                assert_eq!(
                    route_for(nobody, kind, &content),
                    RouteDecision::skip(push.clone(), reasons::SMART_BOT_NOBODY_WROTE)
                );
            }
        }
        // A robot still posts where there is one; a bot whose name was not
        // recorded cannot be addressed.
        let both = ChatRoute::InternalGroup {
            robot_key: Some("K".into()),
            smart_bot: Some("helper".into()),
        };
        let ready = chat(&both, None).with_smart_bot_push(SmartBotPush::Ready);
        assert_eq!(
            route_for(ready, MessageKind::Push, &text()),
            RouteDecision::Send {
                route: OutRoute::Webhook { key: "K".into() }
            }
        );
        let unnamed = ChatRoute::internal_with_smart_bot("");
        let ready = chat(&unnamed, None).with_smart_bot_push(SmartBotPush::Ready);
        assert_eq!(
            route_for(ready, MessageKind::Push, &text()).skip_reason(),
            Some(reasons::SMART_BOT_ONLY)
        );
    }

    #[test]
    fn app_groups_post_everything_but_images_by_url() {
        let route = ChatRoute::AppGroup;
        for kind in MessageKind::ALL {
            for content in contents() {
                let decision = route_for(chat(&route, None), kind, &content);
                let app_group = OutRoute::AppGroup {
                    chat_id: "wr1".into(),
                };
                let expected = if matches!(
                    content,
                    Content::Image {
                        source: ImageSource::Url(_)
                    }
                ) {
                    RouteDecision::skip(app_group, reasons::APP_GROUP_IMAGE_URL)
                } else {
                    RouteDecision::Send { route: app_group }
                };
                assert_eq!(decision, expected, "{kind:?} {content:?}");
            }
        }
    }

    #[test]
    fn a_robot_key_posts_through_the_webhook_with_or_without_smart_bot() {
        for route in [
            ChatRoute::internal_with_robot("K"),
            ChatRoute::InternalGroup {
                robot_key: Some("K".into()),
                smart_bot: Some("helper".into()),
            },
        ] {
            for kind in MessageKind::ALL {
                for content in contents() {
                    let decision = route_for(chat(&route, Some("boss")), kind, &content);
                    let webhook = OutRoute::Webhook { key: "K".into() };
                    let expected = if matches!(content, Content::Image { .. }) {
                        RouteDecision::skip(webhook, reasons::WEBHOOK_IMAGE)
                    } else {
                        RouteDecision::Send { route: webhook }
                    };
                    assert_eq!(decision, expected, "{route:?} {kind:?} {content:?}");
                }
            }
        }
    }

    #[test]
    fn customer_groups_without_robot_need_the_owner_for_announcements_only() {
        let route = ChatRoute::CustomerGroup;
        for content in contents() {
            for kind in MessageKind::ALL {
                let decision = route_for(chat(&route, Some("boss")), kind, &content);
                if kind.may_wait_for_owner() {
                    assert_eq!(
                        decision,
                        RouteDecision::NeedsOwnerConfirmation {
                            owner: "boss".into(),
                            chat_id: "wr1".into()
                        }
                    );
                } else {
                    assert_eq!(
                        decision.skip_reason(),
                        Some(reasons::CUSTOMER_GROUP_AUTOMATIC)
                    );
                    assert_eq!(decision.route_name(), "customer_group_mass");
                }
            }
            let no_owner = route_for(chat(&route, None), MessageKind::Push, &content);
            assert_eq!(
                no_owner.skip_reason(),
                Some(reasons::CUSTOMER_GROUP_NO_OWNER)
            );
            let empty_owner = route_for(chat(&route, Some("")), MessageKind::Broadcast, &content);
            assert_eq!(
                empty_owner.skip_reason(),
                Some(reasons::CUSTOMER_GROUP_NO_OWNER)
            );
        }
    }

    #[test]
    fn internal_groups_without_robot_are_skipped_with_the_reason() {
        let bot = ChatRoute::internal_with_smart_bot("helper");
        let bare = ChatRoute::InternalGroup {
            robot_key: None,
            smart_bot: None,
        };
        let empty_robot = ChatRoute::internal_with_robot("");
        for kind in MessageKind::ALL {
            for content in contents() {
                let decision = route_for(chat(&bot, Some("boss")), kind, &content);
                assert_eq!(
                    decision,
                    RouteDecision::skip(
                        OutRoute::SmartBotChat {
                            chat_id: "wr1".into()
                        },
                        reasons::SMART_BOT_ONLY
                    )
                );
                assert_eq!(decision.route_name(), "smart_bot");
                for no_robot in [&bare, &empty_robot] {
                    let decision = route_for(chat(no_robot, None), kind, &content);
                    assert_eq!(decision.skip_reason(), Some(reasons::INTERNAL_NO_ROBOT));
                }
            }
        }
    }

    #[test]
    fn unknown_chats_are_skipped_with_the_reason() {
        let decision = route_for(ChatAddress::unknown("wrX"), MessageKind::Welcome, &text());
        assert_eq!(decision.skip_reason(), Some(reasons::UNKNOWN_CHAT));
        assert_eq!(
            decision,
            RouteDecision::skip(
                OutRoute::CustomerGroupMass {
                    owner: None,
                    chat_ids: vec!["wrX".into()]
                },
                reasons::UNKNOWN_CHAT
            )
        );
    }

    #[test]
    fn decided_messages_carry_route_and_reason() {
        let route = ChatRoute::CustomerGroup;
        let mass = Outbound::to_chat("k", chat(&route, Some("boss")), MessageKind::Push, text());
        assert_eq!(
            (mass.route.name(), mass.skipped.as_deref()),
            ("customer_group_mass", None)
        );
        let welcome = Outbound::to_chat(
            "k",
            chat(&route, Some("boss")),
            MessageKind::Welcome,
            text(),
        );
        assert_eq!(
            welcome.skipped.as_deref(),
            Some(reasons::CUSTOMER_GROUP_AUTOMATIC)
        );
        assert_eq!(welcome.text(), "hi");
        assert_eq!(welcome.content.mentions(), ["u1".to_owned()]);
    }

    #[test]
    fn member_messages_drop_external_contacts_and_say_why_when_nobody_is_left() {
        let to = |ids: &[&str]| -> Vec<String> { ids.iter().map(|s| (*s).to_owned()).collect() };
        assert_eq!(
            route_to_members("ops", &to(&["zhangsan", "wmX"]), "nobody"),
            RouteDecision::Send {
                route: OutRoute::Member {
                    app: "ops".into(),
                    user_ids: to(&["zhangsan"])
                }
            }
        );
        assert_eq!(
            route_to_members("ops", &to(&["wmX"]), "nobody").skip_reason(),
            Some(reasons::EXTERNAL_MEMBER)
        );
        assert_eq!(
            route_to_members("ops", &[], "no admins configured").skip_reason(),
            Some("no admins configured")
        );
    }
}
