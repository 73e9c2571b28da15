//! Scenario files: seed state, callback targets and a list of driver steps,
//! in TOML (default) or JSON (`.json` extension). Example (TOML):
//!
//! ```toml
//! auto_confirm_mass = true
//!
//! [state]
//! members = ["zhangsan", "lisi"]
//!
//! [[state.customer_groups]]
//! chat_id = "wrGROUP1"
//! name = "春季福利群"
//! owner = "zhangsan"
//! members = [{ userid = "zhangsan" }, { userid = "wmCUSTOMER1", join_scene = 3 }]
//!
//! [[state.robots]]          # robots live in internal groups only
//! key = "robot-key-1"
//! chat_id = "wrSTAFF1"
//!
//! [[state.app_chats]]
//! chatid = "ops"
//! owner = "zhangsan"
//! userlist = ["zhangsan", "lisi"]
//!
//! [callbacks]
//! base_url = "http://127.0.0.1:8080"
//! apps = [{ name = "main", token = "...", encoding_aes_key = "...43 chars...", agent_id = 1000002 }]
//! bots = [{ name = "helper", token = "...", encoding_aes_key = "...", aibotid = "AIBOT1", bot_name = "运营助手" }]
//!
//! [[steps]]
//! action = "join"            # join | leave | add_contact | app_text | bot_mention | archive_text | verify_url | raw | confirm_pending_mass
//! chat_id = "wrGROUP1"
//! via = "qr_code"            # invite | invite_link | qr_code
//! members = [{ userid = "wmNEW1" }]
//!
//! [[steps]]
//! action = "bot_mention"    # the smart bot, too, is in internal groups only
//! chat_id = "wrSTAFF1"
//! from = "lisi"
//! content = "签到"
//! ```
//!
//! Step fields are exactly those of the matching `/sim/drive/*` request.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::driver::{
    AddContactRequest, AppTextRequest, ArchiveTextRequest, BotMentionRequest, CallbackTargets,
    DriveOutcome, JoinRequest, LeaveRequest, RawRequest, VerifyRequest,
};
use super::model::SeedState;
use super::Sim;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Confirm customer-group mass messages at once (owner always agrees).
    pub auto_confirm_mass: bool,
    pub state: SeedState,
    pub callbacks: Option<CallbackTargets>,
    pub steps: Vec<Step>,
}

/// One scripted happening, run in order by [`Sim::run_steps`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Step {
    Join(JoinRequest),
    Leave(LeaveRequest),
    AddContact(AddContactRequest),
    AppText(AppTextRequest),
    BotMention(BotMentionRequest),
    ArchiveText(ArchiveTextRequest),
    VerifyUrl(VerifyRequest),
    Raw(RawRequest),
    /// The owners confirm every mass message waiting for them.
    ConfirmPendingMass,
}

impl Step {
    pub fn action(&self) -> &'static str {
        match self {
            Step::Join(_) => "join",
            Step::Leave(_) => "leave",
            Step::AddContact(_) => "add_contact",
            Step::AppText(_) => "app_text",
            Step::BotMention(_) => "bot_mention",
            Step::ArchiveText(_) => "archive_text",
            Step::VerifyUrl(_) => "verify_url",
            Step::Raw(_) => "raw",
            Step::ConfirmPendingMass => "confirm_pending_mass",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutcome {
    /// `"{index}:{action}"`, index from 0.
    pub step: String,
    /// HTTP status qunyun answered, if a callback was sent.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub outcome: Option<DriveOutcome>,
}

impl Scenario {
    pub fn from_toml_str(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).context("parsing TOML scenario")
    }

    pub fn from_json_str(text: &str) -> anyhow::Result<Self> {
        serde_json::from_str(text).context("parsing JSON scenario")
    }

    /// JSON when the file name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let is_json = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        if is_json {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        }
        .with_context(|| format!("in scenario {}", path.display()))
    }
}

impl Sim {
    /// Run `steps` in order; a failing step is reported and the rest still run.
    pub async fn run_steps(&self, steps: &[Step]) -> Vec<StepOutcome> {
        let mut outcomes = Vec::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            let result = match step.clone() {
                Step::Join(request) => self.drive_join(request).await,
                Step::Leave(request) => self.drive_leave(request).await,
                Step::AddContact(request) => self.drive_add_contact(request).await,
                Step::AppText(request) => self.drive_app_text(request).await,
                Step::BotMention(request) => self.drive_bot_mention(request).await,
                Step::ArchiveText(request) => self.drive_archive_text(request).await,
                Step::VerifyUrl(request) => self.drive_verify_url(request).await,
                Step::Raw(request) => self.drive_raw(request).await,
                Step::ConfirmPendingMass => {
                    for msgid in self.pending_mass() {
                        self.confirm_mass(&msgid);
                    }
                    Ok(DriveOutcome::default())
                }
            };
            let step = format!("{index}:{}", step.action());
            outcomes.push(match result {
                Ok(outcome) => StepOutcome {
                    step,
                    status: outcome.status,
                    error: None,
                    outcome: Some(outcome),
                },
                Err(error) => StepOutcome {
                    step,
                    status: None,
                    error: Some(error.to_string()),
                    outcome: None,
                },
            });
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::driver::JoinVia;

    const EXAMPLE: &str = r#"
auto_confirm_mass = true

[state]
members = ["zhangsan", "lisi"]

[[state.customer_groups]]
chat_id = "wrGROUP1"
name = "春季福利群"
owner = "zhangsan"
members = [{ userid = "zhangsan" }, { userid = "wmCUSTOMER1", join_scene = 3 }]

[[state.robots]]
key = "robot-key-1"
chat_id = "wrSTAFF1"

[[state.app_chats]]
chatid = "ops"
owner = "zhangsan"
userlist = ["zhangsan", "lisi"]

[callbacks]
base_url = "http://127.0.0.1:8080"
apps = [{ name = "main", token = "t", encoding_aes_key = "k", agent_id = 1000002 }]

[[steps]]
action = "join"
chat_id = "wrGROUP1"
via = "qr_code"
members = [{ userid = "wmNEW1" }]

[[steps]]
action = "bot_mention"
chat_id = "wrSTAFF1"
from = "lisi"
content = "签到"

[[steps]]
action = "confirm_pending_mass"
"#;

    #[test]
    fn documented_toml_example_parses() {
        let scenario = Scenario::from_toml_str(EXAMPLE).unwrap();
        assert!(scenario.auto_confirm_mass);
        assert_eq!(scenario.state.members, ["zhangsan", "lisi"]);
        let group = &scenario.state.customer_groups[0];
        assert_eq!(group.members[1].join_scene, 3);
        assert_eq!(group.members[1].resolved_type(), 2);
        assert_eq!(scenario.state.robots[0].key, "robot-key-1");
        assert_eq!(scenario.callbacks.unwrap().apps[0].agent_id, 1_000_002);
        assert_eq!(scenario.steps.len(), 3);
        match &scenario.steps[0] {
            Step::Join(join) => {
                assert_eq!(join.via, JoinVia::QrCode);
                assert_eq!(join.members[0].userid, "wmNEW1");
            }
            other => panic!("unexpected step {other:?}"),
        }
        assert_eq!(scenario.steps[2], Step::ConfirmPendingMass);
    }

    #[test]
    fn json_round_trip() {
        let scenario = Scenario::from_toml_str(EXAMPLE).unwrap();
        let json = serde_json::to_string(&scenario).unwrap();
        assert_eq!(Scenario::from_json_str(&json).unwrap(), scenario);
    }

    #[test]
    fn a_robot_in_a_customer_group_is_refused_when_loading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("world.toml");
        let impossible = EXAMPLE.replace("chat_id = \"wrSTAFF1\"", "chat_id = \"wrGROUP1\"");
        std::fs::write(&path, impossible).unwrap();
        let error = crate::sim::SimConfig::from_args("ww", "s", None, Some(&path)).unwrap_err();
        assert!(
            format!("{error:#}").contains("wrGROUP1 is a customer group"),
            "{error:#}"
        );
        std::fs::write(&path, EXAMPLE).unwrap();
        assert!(crate::sim::SimConfig::from_args("ww", "s", None, Some(&path)).is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(Scenario::from_toml_str("[state]\nmember = [\"x\"]\n").is_err());
    }
}
