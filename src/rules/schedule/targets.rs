//! Who a push goes to: chats (by tag, by id, or all) and internal members by
//! department or tag (1:1 app messages).

use std::collections::BTreeSet;

/// How the bot reaches a chat (docs/wecom.md#chat-kinds). Passed through untouched: what a
/// route can carry is the sender's decision, not the schedule's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatRoute {
    /// Internal group created by the app (`appchat/send`).
    AppGroup,
    /// Customer group: an owner-confirmed mass message.
    CustomerGroup,
    /// A group with a webhook robot.
    WebhookRobot,
    /// A group with the smart bot.
    SmartBot,
}

/// What target selection needs to know about a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatInfo {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub route: ChatRoute,
}

/// Validated targets: the union of everything listed, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    pub(super) all_chats: bool,
    pub(super) chat_tags: BTreeSet<String>,
    pub(super) chat_ids: BTreeSet<String>,
    pub(super) members: Option<MemberRecipients>,
}

/// Internal members to message 1:1 (`message/send` with `toparty` / `totag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecipients {
    pub departments: Vec<u32>,
    pub tags: Vec<u32>,
}

impl Targets {
    /// Whether any chat can be selected (as opposed to members only).
    pub fn includes_chats(&self) -> bool {
        self.all_chats || !self.chat_tags.is_empty() || !self.chat_ids.is_empty()
    }

    /// The members to message 1:1, if the schedule names any.
    pub fn members(&self) -> Option<&MemberRecipients> {
        self.members.as_ref()
    }

    fn selects(&self, chat: &ChatInfo) -> bool {
        self.all_chats
            || self.chat_ids.contains(&chat.id)
            || chat.tags.iter().any(|tag| self.chat_tags.contains(tag))
    }
}

/// The chats a push goes to, in the order given, each at most once.
pub fn select_targets<'a>(targets: &Targets, chats: &'a [ChatInfo]) -> Vec<&'a ChatInfo> {
    let mut seen = BTreeSet::new();
    chats
        .iter()
        .filter(|chat| targets.selects(chat) && seen.insert(chat.id.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: &str, tags: &[&str]) -> ChatInfo {
        ChatInfo {
            id: id.to_owned(),
            name: format!("群 {id}"),
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            route: ChatRoute::AppGroup,
        }
    }

    fn targets(all_chats: bool, tags: &[&str], ids: &[&str]) -> Targets {
        Targets {
            all_chats,
            chat_tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            chat_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            members: None,
        }
    }

    fn ids<'a>(chats: &[&'a ChatInfo]) -> Vec<&'a str> {
        chats.iter().map(|chat| chat.id.as_str()).collect()
    }

    fn community() -> Vec<ChatInfo> {
        vec![
            chat("wr1", &["vip", "beijing"]),
            chat("wr2", &["beijing"]),
            chat("wr3", &[]),
            chat("wr4", &["vip"]),
        ]
    }

    #[test]
    fn tags_and_ids_select_their_union_once_each() {
        let chats = community();
        let selected = select_targets(&targets(false, &["vip"], &["wr3", "wr4"]), &chats);
        assert_eq!(ids(&selected), ["wr1", "wr3", "wr4"]);
    }

    #[test]
    fn all_chats_selects_every_chat() {
        let chats = community();
        assert_eq!(
            ids(&select_targets(&targets(true, &[], &[]), &chats)),
            ["wr1", "wr2", "wr3", "wr4"]
        );
    }

    #[test]
    fn unknown_tags_and_ids_select_nothing() {
        let chats = community();
        assert!(select_targets(&targets(false, &["shanghai"], &["wr9"]), &chats).is_empty());
    }

    #[test]
    fn member_only_targets_select_no_chats() {
        let chats = community();
        let members_only = Targets {
            members: Some(MemberRecipients {
                departments: vec![2],
                tags: Vec::new(),
            }),
            ..targets(false, &[], &[])
        };
        assert!(!members_only.includes_chats());
        assert!(select_targets(&members_only, &chats).is_empty());
    }

    #[test]
    fn a_chat_listed_twice_is_selected_once() {
        let mut chats = community();
        chats.push(chat("wr1", &["vip"]));
        let selected = select_targets(&targets(false, &["vip"], &[]), &chats);
        assert_eq!(ids(&selected), ["wr1", "wr4"]);
    }
}
