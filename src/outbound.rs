//! Outgoing messages as the outbox stores them, shared by every writer and
//! the sender. Pure: no I/O, no clock.
//!
//! A writer decides where a message goes with [`crate::rules::route_for`]
//! (or names a 1:1 route), builds an [`Outbound`], and hands it to
//! `store::outbox::enqueue`. [`OutboxEntry::of`] turns it into the row's
//! columns: the route, the target, the sending app and a typed [`Payload`].
//! The sender decodes the row with [`Payload::decode`] and nothing else, so
//! the compiler checks that writers and the sender agree on every shape.
//!
//! The payload JSON is WeCom's own body for each route, as earlier releases
//! stored it, so rows written before an upgrade still send (a test decodes
//! each stored shape). New rows are byte-identical except two harmless
//! details: a robot text without mentions leaves the empty `mentioned_list`
//! out (as scheduled pushes always did), and a smart-bot answer puts
//! `msgtype` first.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::rules::route::{unsupported, Content};
use crate::rules::schedule::{ImageSource, NewsArticle};
use crate::rules::{route_for, ChatAddress, MessageKind, OutRoute, Outbound};
use crate::store::outbox::Route;
use crate::store::schedules::PushChat;
use crate::wecom::api::{
    AppMessageContent, BotResponse, MassMessageContent, MediaRef, NewsArticle as WeComArticle,
    NewsContent, TagChange, TextContent, WebhookMessage, WebhookText, WelcomeContent,
};

/// The body of an outbox row; the variant is the row's `route` column.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    AppGroup(AppMessageContent),
    Webhook(WebhookMessage),
    SmartBot(BotResponse),
    Member(AppMessageContent),
    WelcomeCode(WelcomeContent),
    CustomerGroupMass(MassMessageContent),
    AppChatRemove(Removal),
    CustomerTag(TagChange),
    CustomerMass(MassMessageContent),
}

/// The payload of an `app_chat_remove` row. Only `del_user_list` is sent
/// (the chat is the row's target); the reason is kept for the manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    #[serde(default)]
    pub chatid: String,
    pub del_user_list: Vec<String>,
    #[serde(default)]
    pub reason: String,
}

impl Payload {
    pub fn route(&self) -> Route {
        match self {
            Payload::AppGroup(_) => Route::AppGroup,
            Payload::Webhook(_) => Route::Webhook,
            Payload::SmartBot(_) => Route::SmartBot,
            Payload::Member(_) => Route::Member,
            Payload::WelcomeCode(_) => Route::WelcomeCode,
            Payload::CustomerGroupMass(_) => Route::CustomerGroupMass,
            Payload::AppChatRemove(_) => Route::AppChatRemove,
            Payload::CustomerTag(_) => Route::CustomerTag,
            Payload::CustomerMass(_) => Route::CustomerMass,
        }
    }

    /// Reads a stored payload in the shape of its row's route.
    pub fn decode(route: Route, json: &str) -> serde_json::Result<Payload> {
        Ok(match route {
            Route::AppGroup => Payload::AppGroup(serde_json::from_str(json)?),
            Route::Webhook => Payload::Webhook(serde_json::from_str(json)?),
            Route::SmartBot => Payload::SmartBot(serde_json::from_str(json)?),
            Route::Member => Payload::Member(serde_json::from_str(json)?),
            Route::WelcomeCode => Payload::WelcomeCode(serde_json::from_str(json)?),
            Route::CustomerGroupMass => Payload::CustomerGroupMass(serde_json::from_str(json)?),
            Route::AppChatRemove => Payload::AppChatRemove(serde_json::from_str(json)?),
            Route::CustomerTag => Payload::CustomerTag(serde_json::from_str(json)?),
            Route::CustomerMass => Payload::CustomerMass(serde_json::from_str(json)?),
        })
    }

    /// The JSON stored in `outbox.payload_json`.
    pub fn to_json(&self) -> serde_json::Result<String> {
        match self {
            Payload::AppGroup(body) | Payload::Member(body) => serde_json::to_string(body),
            Payload::Webhook(body) => serde_json::to_string(body),
            Payload::SmartBot(body) => serde_json::to_string(body),
            Payload::WelcomeCode(body) => serde_json::to_string(body),
            Payload::CustomerGroupMass(body) | Payload::CustomerMass(body) => {
                serde_json::to_string(body)
            }
            Payload::AppChatRemove(body) => serde_json::to_string(body),
            Payload::CustomerTag(body) => serde_json::to_string(body),
        }
    }

    /// `content` in the shape `route` sends, or `None` when the route cannot
    /// carry it (`rules::route::unsupported` says why).
    pub fn build(route: &OutRoute, content: &Content) -> Option<Payload> {
        if unsupported(route, content).is_some() {
            return None;
        }
        Some(match route {
            OutRoute::AppGroup { .. } => Payload::AppGroup(app_content(content)?),
            OutRoute::Member { .. } => Payload::Member(app_content(content)?),
            OutRoute::Webhook { .. } => Payload::Webhook(webhook_content(content)?),
            OutRoute::SmartBotResponse { .. }
            | OutRoute::SmartBotChat { .. }
            | OutRoute::SmartBotPush { .. } => Payload::SmartBot(match content {
                Content::Text { text, .. } | Content::Markdown { text } => BotResponse::Markdown {
                    markdown: TextContent::new(text.clone()),
                },
                Content::News { .. } | Content::Image { .. } => return None,
            }),
            OutRoute::WelcomeCode { .. } => {
                let (text, attachments) = customer_content(content);
                Payload::WelcomeCode(WelcomeContent { text, attachments })
            }
            OutRoute::CustomerGroupMass { chat_ids, .. } => {
                let (text, attachments) = customer_content(content);
                Payload::CustomerGroupMass(MassMessageContent {
                    chat_id_list: chat_ids.clone(),
                    external_userid: Vec::new(),
                    text,
                    attachments,
                })
            }
            OutRoute::CustomerMass {
                external_user_ids, ..
            } => {
                let (text, attachments) = customer_content(content);
                Payload::CustomerMass(MassMessageContent {
                    chat_id_list: Vec::new(),
                    external_userid: external_user_ids.clone(),
                    text,
                    attachments,
                })
            }
            OutRoute::CustomerTag {
                staff,
                external_user_id,
                add,
                remove,
            } => Payload::CustomerTag(TagChange {
                userid: staff.clone().unwrap_or_default(),
                external_userid: external_user_id.clone(),
                add: add.clone(),
                remove: remove.clone(),
                note: content.summary().to_owned(),
            }),
            OutRoute::AppChatRemove { chat_id, user_id } => Payload::AppChatRemove(Removal {
                chatid: chat_id.clone(),
                del_user_list: vec![user_id.clone()],
                reason: content.summary().to_owned(),
            }),
        })
    }
}

/// The route column for a route decision.
pub fn route_of(route: &OutRoute) -> Route {
    match route {
        OutRoute::AppGroup { .. } => Route::AppGroup,
        OutRoute::Webhook { .. } => Route::Webhook,
        OutRoute::SmartBotResponse { .. }
        | OutRoute::SmartBotChat { .. }
        | OutRoute::SmartBotPush { .. } => Route::SmartBot,
        OutRoute::Member { .. } => Route::Member,
        OutRoute::WelcomeCode { .. } => Route::WelcomeCode,
        OutRoute::CustomerGroupMass { .. } => Route::CustomerGroupMass,
        OutRoute::AppChatRemove { .. } => Route::AppChatRemove,
        OutRoute::CustomerTag { .. } => Route::CustomerTag,
        OutRoute::CustomerMass { .. } => Route::CustomerMass,
    }
}

/// The columns of an outbox row for an [`Outbound`].
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub route: Route,
    /// Chat id, webhook key, response_url, `|`-joined UserIDs, welcome code,
    /// or the owner who must confirm a mass message.
    pub target: String,
    /// The configured app whose secret/agent sends it (`None`: webhook,
    /// smart bot, and contact routes using the contacts secret).
    pub app: Option<String>,
    /// `None` only on skipped rows whose content the route cannot carry
    /// (stored as `{}`).
    pub payload: Option<Payload>,
    pub skip_reason: Option<String>,
    /// When the event this row answers happened (unix seconds), for routes
    /// whose validity runs from it: a welcome code's 20 s.
    pub event_at: Option<i64>,
}

/// Why a message that was meant to send is skipped after all.
const CANNOT_CARRY: &str = "this route cannot carry this kind of message";

impl OutboxEntry {
    /// `default_app` is the configured app that posts to app groups and
    /// removes members from them (member rows name their own app).
    pub fn of(message: &Outbound, default_app: &str) -> Self {
        let (target, app) = match &message.route {
            OutRoute::AppGroup { chat_id } => (chat_id.clone(), Some(default_app.to_owned())),
            OutRoute::Webhook { key } => (key.clone(), None),
            OutRoute::SmartBotResponse { response_url } => (response_url.clone(), None),
            OutRoute::SmartBotChat { chat_id } => (chat_id.clone(), None),
            OutRoute::SmartBotPush { bot, chat_id } => (
                crate::wecom::longconn::PushAddress {
                    bot: bot.clone(),
                    conversation: chat_id.clone(),
                }
                .render(),
                None,
            ),
            OutRoute::Member { app, user_ids } => (user_ids.join("|"), Some(app.clone())),
            OutRoute::WelcomeCode { code, .. } => (code.clone(), None),
            OutRoute::CustomerGroupMass { owner, .. } => (owner.clone().unwrap_or_default(), None),
            OutRoute::AppChatRemove { chat_id, .. } => {
                (chat_id.clone(), Some(default_app.to_owned()))
            }
            // One lane per contact, so its tag changes go out in order.
            OutRoute::CustomerTag {
                external_user_id, ..
            } => (external_user_id.clone(), None),
            OutRoute::CustomerMass {
                owner,
                external_user_ids,
            } => match owner {
                Some(owner) => (owner.clone(), None),
                // Never sent (skipped for want of an owner): the target names
                // the contacts, so the manager's list says who was not reached.
                None => (external_user_ids.join("|"), None),
            },
        };
        let payload = Payload::build(&message.route, &message.content);
        let mut skip_reason = message.skipped.clone();
        // The sender can only send what it can decode: a message no payload
        // fits, or a route that can never send on its own, is skipped.
        if skip_reason.is_none() {
            skip_reason = match (&message.route, &payload) {
                (_, None) => Some(
                    unsupported(&message.route, &message.content)
                        .unwrap_or(CANNOT_CARRY)
                        .to_owned(),
                ),
                (OutRoute::SmartBotChat { .. }, _) => {
                    Some(crate::rules::route::reasons::SMART_BOT_ONLY.to_owned())
                }
                (OutRoute::CustomerGroupMass { owner, .. }, _)
                    if owner.as_deref().unwrap_or_default().is_empty() =>
                {
                    Some(crate::rules::route::reasons::CUSTOMER_GROUP_NO_OWNER.to_owned())
                }
                (OutRoute::CustomerMass { owner, .. }, _)
                | (OutRoute::CustomerTag { staff: owner, .. }, _)
                    if owner.as_deref().unwrap_or_default().is_empty() =>
                {
                    Some(crate::rules::route::reasons::CUSTOMER_NO_OWNER.to_owned())
                }
                _ => None,
            };
        }
        let event_at = match &message.route {
            OutRoute::WelcomeCode { event_at, .. } => Some(event_at.timestamp()),
            _ => None,
        };
        OutboxEntry {
            route: route_of(&message.route),
            target,
            app,
            payload,
            skip_reason,
            event_at,
        }
    }

    pub fn payload_json(&self) -> serde_json::Result<String> {
        match &self.payload {
            Some(payload) => payload.to_json(),
            None => Ok("{}".to_owned()),
        }
    }
}

/// A manager's "send now": one message to chosen chats and to every chat
/// carrying one of the tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    /// Unique per broadcast (e.g. the audit id); with the chat id it is the
    /// idempotency key, so enqueueing the same broadcast twice adds nothing.
    pub id: String,
    pub chats: Vec<String>,
    pub tags: Vec<String>,
    pub content: Content,
}

/// One [`Outbound`] per addressed chat, in registry order, then chosen chats
/// that are not registered (recorded as skipped). Each goes through
/// [`route_for`]: customer groups without a robot become a mass message for
/// their owner to confirm.
pub fn plan_broadcast(broadcast: &Broadcast, registered: &[PushChat]) -> Vec<Outbound> {
    let chosen = |chat: &PushChat| {
        broadcast.chats.contains(&chat.chat_id)
            || chat.tags.iter().any(|tag| broadcast.tags.contains(tag))
    };
    let key = |chat_id: &str| format!("broadcast:{}:{chat_id}", broadcast.id);
    let mut plan: Vec<Outbound> = registered
        .iter()
        .filter(|chat| chosen(chat))
        .map(|chat| {
            let decision = route_for(chat.address(), MessageKind::Broadcast, &broadcast.content);
            Outbound::decided(key(&chat.chat_id), decision, broadcast.content.clone())
        })
        .collect();
    let mut unknown: Vec<&String> = broadcast
        .chats
        .iter()
        .filter(|id| !registered.iter().any(|chat| &chat.chat_id == *id))
        .collect();
    unknown.sort();
    unknown.dedup();
    for chat_id in unknown {
        let decision = route_for(
            ChatAddress::unknown(chat_id),
            MessageKind::Broadcast,
            &broadcast.content,
        );
        plan.push(Outbound::decided(
            key(chat_id),
            decision,
            broadcast.content.clone(),
        ));
    }
    plan
}

fn wecom_articles(articles: &[NewsArticle]) -> Vec<WeComArticle> {
    articles
        .iter()
        .map(|article| WeComArticle {
            title: article.title.clone(),
            description: article.description.clone(),
            url: Some(article.url.clone()),
            picurl: article.picurl.clone(),
        })
        .collect()
}

fn app_content(content: &Content) -> Option<AppMessageContent> {
    Some(match content {
        Content::Text { text, .. } => AppMessageContent::Text {
            text: TextContent::new(text.clone()),
        },
        Content::Markdown { text } => AppMessageContent::Markdown {
            markdown: TextContent::new(text.clone()),
        },
        Content::News { articles } => AppMessageContent::News {
            news: NewsContent {
                articles: wecom_articles(articles),
            },
        },
        Content::Image {
            source: ImageSource::MediaId(media_id),
        } => AppMessageContent::Image {
            image: MediaRef {
                media_id: media_id.clone(),
            },
        },
        Content::Image {
            source: ImageSource::Url(_),
        } => return None,
    })
}

fn webhook_content(content: &Content) -> Option<WebhookMessage> {
    Some(match content {
        Content::Text { text, mentions } => WebhookMessage::Text {
            text: WebhookText {
                content: text.clone(),
                mentioned_list: mentions.clone(),
                mentioned_mobile_list: Vec::new(),
            },
        },
        Content::Markdown { text } => WebhookMessage::Markdown {
            markdown: TextContent::new(text.clone()),
        },
        Content::News { articles } => WebhookMessage::News {
            news: NewsContent {
                articles: wecom_articles(articles),
            },
        },
        Content::Image { .. } => return None,
    })
}

/// Text and attachments of the customer-contact routes (mass messages,
/// welcome codes), which have no markdown: markdown goes as its text.
fn customer_content(content: &Content) -> (Option<TextContent>, Vec<serde_json::Value>) {
    match content {
        Content::Text { text, .. } | Content::Markdown { text } => {
            (Some(TextContent::new(text.clone())), Vec::new())
        }
        Content::News { articles } => (
            None,
            articles
                .iter()
                .map(|article| {
                    json!({"msgtype": "link", "link": {
                        "title": article.title,
                        "desc": article.description,
                        "url": article.url,
                        "picurl": article.picurl,
                    }})
                })
                .collect(),
        ),
        Content::Image { source } => (
            None,
            vec![match source {
                ImageSource::MediaId(media_id) => {
                    json!({"msgtype": "image", "image": {"media_id": media_id}})
                }
                ImageSource::Url(url) => json!({"msgtype": "image", "image": {"pic_url": url}}),
            }],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ChatRoute;

    /// What the previous release's writers stored, per route (pipeline
    /// `json!` shapes and the scheduler's typed ones).
    const STORED: [(Route, &str); 10] = [
        (
            Route::AppGroup,
            r#"{"msgtype":"text","text":{"content":"你好"}}"#,
        ),
        (
            Route::Member,
            r#"{"msgtype":"text","text":{"content":"你好"}}"#,
        ),
        (
            Route::Webhook,
            r#"{"msgtype":"text","text":{"content":"你好","mentioned_list":["u1"]}}"#,
        ),
        (
            Route::SmartBot,
            r#"{"markdown":{"content":"你好"},"msgtype":"markdown"}"#,
        ),
        (Route::WelcomeCode, r#"{"text":{"content":"你好"}}"#),
        (
            Route::CustomerGroupMass,
            r#"{"chat_id_list":["wr2"],"text":{"content":"你好"}}"#,
        ),
        (
            Route::AppChatRemove,
            r#"{"chatid":"wr1","del_user_list":["u1"],"reason":"广告（ad）"}"#,
        ),
        (
            Route::AppGroup,
            r#"{"msgtype":"news","news":{"articles":[{"title":"t","url":"https://e.com"}]}}"#,
        ),
        (
            Route::Webhook,
            r#"{"msgtype":"markdown","markdown":{"content":"**早**"}}"#,
        ),
        (
            Route::CustomerGroupMass,
            r#"{"chat_id_list":["a","b"],"attachments":[{"msgtype":"image","image":{"pic_url":"https://e.com/a.png"}}]}"#,
        ),
    ];

    fn welcome_code(code: &str) -> OutRoute {
        OutRoute::WelcomeCode {
            code: code.into(),
            event_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn only_a_welcome_code_carries_its_event_time_to_the_row() {
        let text = || Content::text("你好");
        let welcome = OutboxEntry::of(&outbound(welcome_code("C"), text()), "ops");
        assert_eq!(welcome.event_at, Some(1_700_000_000));
        let robot = OutboxEntry::of(
            &outbound(OutRoute::Webhook { key: "K".into() }, text()),
            "ops",
        );
        assert_eq!(robot.event_at, None);
    }

    fn outbound(route: OutRoute, content: Content) -> Outbound {
        Outbound::new("k", route, content)
    }

    fn canonical(json: &str) -> serde_json::Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rows_stored_by_the_previous_release_still_decode_and_keep_their_shape() {
        for (route, json) in STORED {
            let payload = Payload::decode(route, json)
                .unwrap_or_else(|error| panic!("{route} {json}: {error}"));
            assert_eq!(payload.route(), route);
            assert_eq!(
                canonical(&payload.to_json().unwrap()),
                canonical(json),
                "{route}"
            );
        }
        // The pipeline wrote an empty mention list; it still decodes.
        let old = r#"{"msgtype":"text","text":{"content":"hi","mentioned_list":[]}}"#;
        assert!(matches!(
            Payload::decode(Route::Webhook, old).unwrap(),
            Payload::Webhook(WebhookMessage::Text { .. })
        ));
        // A payload of the wrong shape for its route is refused.
        assert!(Payload::decode(Route::WelcomeCode, "42").is_err());
        assert!(Payload::decode(Route::AppChatRemove, STORED[0].1).is_err());
    }

    #[test]
    fn new_rows_are_byte_identical_to_what_the_previous_writers_stored() {
        let text = || Content::text_mentioning("你好", vec!["u1".into()]);
        let cases = [
            (
                outbound(
                    OutRoute::AppGroup {
                        chat_id: "wr1".into(),
                    },
                    text(),
                ),
                STORED[0].1,
            ),
            (
                outbound(
                    OutRoute::Member {
                        app: "ops".into(),
                        user_ids: vec!["a".into()],
                    },
                    text(),
                ),
                STORED[1].1,
            ),
            (
                outbound(OutRoute::Webhook { key: "K".into() }, text()),
                STORED[2].1,
            ),
            (outbound(welcome_code("C"), text()), STORED[4].1),
            (
                outbound(
                    OutRoute::CustomerGroupMass {
                        owner: Some("boss".into()),
                        chat_ids: vec!["wr2".into()],
                    },
                    text(),
                ),
                STORED[5].1,
            ),
            (
                outbound(
                    OutRoute::AppChatRemove {
                        chat_id: "wr1".into(),
                        user_id: "u1".into(),
                    },
                    Content::text("广告（ad）"),
                ),
                STORED[6].1,
            ),
        ];
        for (message, stored) in cases {
            let entry = OutboxEntry::of(&message, "main");
            assert_eq!(entry.payload_json().unwrap(), stored, "{:?}", message.route);
        }
        // serde_json (without preserve_order) sorted the pipeline's keys.
        let bot = OutboxEntry::of(
            &outbound(
                OutRoute::SmartBotResponse {
                    response_url: "http://127.0.0.1/r".into(),
                },
                text(),
            ),
            "main",
        );
        assert_eq!(
            canonical(&bot.payload_json().unwrap()),
            canonical(STORED[3].1)
        );
    }

    #[test]
    fn entries_name_target_and_app_per_route() {
        let text = Content::text("hi");
        let entry = |route: OutRoute| {
            let e = OutboxEntry::of(&outbound(route, text.clone()), "main");
            (e.route, e.target, e.app, e.skip_reason)
        };
        assert_eq!(
            entry(OutRoute::Member {
                app: "ops".into(),
                user_ids: vec!["a".into(), "b".into()]
            }),
            (Route::Member, "a|b".into(), Some("ops".into()), None)
        );
        assert_eq!(
            entry(OutRoute::AppGroup {
                chat_id: "wr1".into()
            }),
            (Route::AppGroup, "wr1".into(), Some("main".into()), None)
        );
        assert_eq!(
            entry(OutRoute::CustomerGroupMass {
                owner: Some("boss".into()),
                chat_ids: vec!["wr2".into()]
            }),
            (Route::CustomerGroupMass, "boss".into(), None, None)
        );
        assert_eq!(
            entry(OutRoute::Webhook { key: "K".into() }),
            (Route::Webhook, "K".into(), None, None)
        );
        // Routes that cannot send on their own are skipped even if a writer forgot.
        let (route, target, _, reason) = entry(OutRoute::SmartBotChat {
            chat_id: "wr3".into(),
        });
        assert_eq!((route, target.as_str()), (Route::SmartBot, "wr3"));
        assert!(reason.is_some());
        assert!(entry(OutRoute::CustomerGroupMass {
            owner: None,
            chat_ids: vec!["wr2".into()]
        })
        .3
        .is_some());
    }

    #[test]
    fn the_payload_builder_and_the_route_decision_agree_on_what_each_route_carries() {
        let routes = [
            OutRoute::AppGroup {
                chat_id: "c".into(),
            },
            OutRoute::Webhook { key: "k".into() },
            OutRoute::SmartBotResponse {
                response_url: "u".into(),
            },
            OutRoute::SmartBotChat {
                chat_id: "c".into(),
            },
            OutRoute::Member {
                app: "a".into(),
                user_ids: vec!["u".into()],
            },
            welcome_code("w"),
            OutRoute::CustomerGroupMass {
                owner: Some("o".into()),
                chat_ids: vec!["c".into()],
            },
            OutRoute::AppChatRemove {
                chat_id: "c".into(),
                user_id: "u".into(),
            },
        ];
        let contents = [
            Content::text("t"),
            Content::Markdown { text: "m".into() },
            Content::News {
                articles: vec![NewsArticle {
                    title: "t".into(),
                    description: None,
                    url: "https://e.com".into(),
                    picurl: None,
                }],
            },
            Content::Image {
                source: ImageSource::MediaId("M".into()),
            },
            Content::Image {
                source: ImageSource::Url("https://e.com/a.png".into()),
            },
        ];
        for route in &routes {
            for content in &contents {
                let built = Payload::build(route, content);
                assert_eq!(
                    built.is_some(),
                    unsupported(route, content).is_none(),
                    "{route:?} {content:?}"
                );
                if let Some(payload) = built {
                    assert_eq!(payload.route(), route_of(route));
                    let json = payload.to_json().unwrap();
                    assert_eq!(Payload::decode(payload.route(), &json).unwrap(), payload);
                }
            }
        }
    }

    fn push_chat(chat_id: &str, route: ChatRoute, owner: Option<&str>, tags: &[&str]) -> PushChat {
        PushChat {
            chat_id: chat_id.into(),
            name: chat_id.into(),
            route,
            owner: owner.map(str::to_owned),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            member_count: 3,
            smart_bot_push: Default::default(),
        }
    }

    #[test]
    fn a_broadcast_plans_one_message_per_addressed_chat() {
        let registered = [
            push_chat("wrA", ChatRoute::AppGroup, None, &["vip"]),
            push_chat("wrB", ChatRoute::internal_with_robot("K"), None, &[]),
            push_chat("wrC", ChatRoute::CustomerGroup, Some("boss"), &["vip"]),
            push_chat(
                "wrD",
                ChatRoute::internal_with_smart_bot("bot"),
                None,
                &["vip"],
            ),
            push_chat("wrE", ChatRoute::AppGroup, None, &["other"]),
        ];
        let broadcast = Broadcast {
            id: "7".into(),
            chats: vec!["wrB".into(), "wrGONE".into(), "wrA".into()],
            tags: vec!["vip".into()],
            content: Content::text("上新了"),
        };
        let plan = plan_broadcast(&broadcast, &registered);
        let summary: Vec<(&str, &str, Option<&str>)> = plan
            .iter()
            .map(|m| {
                (
                    m.idempotency_key.as_str(),
                    m.route.name(),
                    m.skipped.as_deref(),
                )
            })
            .collect();
        use crate::rules::route::reasons;
        assert_eq!(
            summary,
            [
                ("broadcast:7:wrA", "app_group", None),
                ("broadcast:7:wrB", "webhook", None),
                ("broadcast:7:wrC", "customer_group_mass", None),
                (
                    "broadcast:7:wrD",
                    "smart_bot",
                    Some(reasons::SMART_BOT_ONLY)
                ),
                (
                    "broadcast:7:wrGONE",
                    "customer_group_mass",
                    Some(reasons::UNKNOWN_CHAT)
                ),
            ]
        );
        assert_eq!(
            plan[2].route,
            OutRoute::CustomerGroupMass {
                owner: Some("boss".into()),
                chat_ids: vec!["wrC".into()]
            }
        );
    }
}
