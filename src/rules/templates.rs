//! Template variable contracts: for every kind of message template, the one
//! declaration of the variables it receives, with their type and a sample.
//!
//! The declaration is a struct: run time builds exactly that struct with real
//! values (the compiler refuses a variable the contract lacks), validation
//! renders each template with the struct's sample (strict undefined) and refuses
//! any variable outside the contract, and previews show the same sample.

use serde::Serialize;

/// A template's variables, as one value: [`super::RuleSet::render`] takes only these.
pub trait TemplateVars: Serialize {
    const KIND: TemplateKind;
}

/// One variable of a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variable {
    pub name: &'static str,
    /// "text", "integer", or the shape of a list.
    pub kind: &'static str,
    pub sample: serde_json::Value,
}

/// One leaderboard line (`{% for entry in entries %}{{ entry.name }} {{ entry.points }}`).
pub use super::LeaderboardEntry as RankEntry;

/// One section of the honour board: a metric's title, its unit and its top members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HonourSection {
    pub title: String,
    /// Written after each value (" 天", " 分", " 条").
    pub unit: String,
    pub entries: Vec<RankEntry>,
}

fn type_label(rust_type: &'static str) -> &'static str {
    match rust_type {
        "String" => "text",
        "i64" | "u32" | "usize" => "integer",
        "Vec<RankEntry>" => "list of {name, points}",
        "Vec<HonourSection>" => "list of {title, unit, entries: list of {name, points}}",
        other => other,
    }
}

macro_rules! contracts {
    ($(
        $(#[$doc:meta])*
        $kind:ident($label:literal) => $vars:ident {
            $( $(#[$field_doc:meta])* $field:ident : $ty:ty = $sample:expr ),* $(,)?
        }
    )*) => {
        /// The kinds of message template; each has its own variables.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum TemplateKind { $($kind),* }

        impl TemplateKind {
            pub const ALL: &'static [TemplateKind] = &[$(TemplateKind::$kind),*];

            /// How managers and error messages call this kind.
            pub fn label(self) -> &'static str {
                match self { $(TemplateKind::$kind => $label),* }
            }

            /// The contract: every variable with its type and sample value.
            pub fn variables(self) -> Vec<Variable> {
                match self {
                    $(TemplateKind::$kind => {
                        let sample = $vars::sample();
                        vec![$(Variable {
                            name: stringify!($field),
                            kind: type_label(stringify!($ty)),
                            sample: serde_json::to_value(&sample.$field).unwrap_or_default(),
                        }),*]
                    })*
                }
            }

            /// The sample values as one context (validation and preview).
            pub fn sample_context(self) -> serde_json::Value {
                match self {
                    $(TemplateKind::$kind => serde_json::to_value($vars::sample()).unwrap_or_default()),*
                }
            }
        }

        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Serialize)]
            pub struct $vars { $( $(#[$field_doc])* pub $field: $ty ),* }

            impl $vars {
                pub fn sample() -> Self {
                    Self { $($field: $sample.into()),* }
                }
            }

            impl TemplateVars for $vars {
                const KIND: TemplateKind = TemplateKind::$kind;
            }
        )*
    };
}

contracts! {
    /// `welcome.template`, `returning_template`, `by_tag.*`, `by_scene.*`: one
    /// merged group welcome for everyone who joined within the merge window.
    Welcome("welcome") => WelcomeVars {
        /// Who is welcomed, capped at `max_mentions` ("小王、小李 等 12 人").
        names: String = "小王、小李",
        /// Same as `names`.
        name: String = "小王、小李",
        count: usize = 2usize,
        group_name: String = "好物分享群",
        member_count: u32 = 128u32,
        /// The first newcomer's place in the chat.
        ordinal: u32 = 127u32,
        /// `[points] new_member` (0: no joining gift).
        points: i64 = 10,
        /// Who invited them, when WeCom said so; empty otherwise.
        inviter: String = "小张",
    }
    /// `welcome.customer_template`: 1:1 to a newly added customer.
    CustomerWelcome("customer welcome") => CustomerWelcomeVars {
        /// The staff member the customer added.
        staff: String = "运营小美",
        name: String = "小王",
    }
    /// `welcome.raid_template`: to the chat's admins during a join burst.
    RaidDigest("raid digest") => RaidDigestVars {
        group_name: String = "好物分享群",
        count: usize = 23usize,
        names: String = "小王、小李 等 23 人",
    }
    /// `welcome.owner_digest_template`: 1:1 to a customer group's owner.
    OwnerDigest("owner digest") => OwnerDigestVars {
        names: String = "小王、小李",
        count: usize = 2usize,
        group_name: String = "好物分享群",
        /// Who invited them, when WeCom's member record says so; empty otherwise.
        inviter: String = "小张",
        /// The rendered `owner_welcome_template`.
        suggestion: String = "欢迎小王、小李加入好物分享群🎉",
    }
    /// `welcome.owner_welcome_template`: the welcome suggested to the owner.
    OwnerWelcome("owner welcome") => OwnerWelcomeVars {
        names: String = "小王、小李",
        count: usize = 2usize,
        group_name: String = "好物分享群",
        /// Who invited them, when WeCom's member record says so; empty otherwise.
        inviter: String = "小张",
    }
    /// `onboarding.template`: one tip naming everyone whose tip fell due.
    Onboarding("onboarding") => OnboardingVars {
        name: String = "小王、小李",
        names: String = "小王、小李",
        count: usize = 2usize,
        group_name: String = "好物分享群",
    }
    /// `checkin_ok`: reply to a check-in.
    CheckinOk("check-in ok") => CheckinOkVars {
        name: String = "小王",
        points: i64 = 7,
        streak: u32 = 3u32,
        /// Place among today's check-ins.
        rank: u32 = 12u32,
        balance: i64 = 86,
        /// A badge unlocked by this check-in; empty otherwise.
        badge: String = "三日之约",
        /// The level this check-in reached; empty when the level did not change.
        level_up: String = "活跃成员",
    }
    /// `checkin_already`: reply to a second check-in on the same day.
    CheckinAlready("check-in already") => CheckinAlreadyVars {
        name: String = "小王",
        streak: u32 = 3u32,
    }
    /// `makeup_ok`: reply to a 补签.
    MakeupOk("make-up ok") => MakeupOkVars {
        name: String = "小王",
        /// The day filled.
        day: String = "2026-01-01",
        cost: i64 = 20,
        /// The streak now running (through today if checked in today).
        streak: u32 = 3u32,
        /// Make-ups left this month.
        remaining: u32 = 1u32,
    }
    /// `makeup_denied`: reply when a 补签 cannot happen.
    MakeupDenied("make-up denied") => MakeupDeniedVars {
        name: String = "小王",
        reason: String = "本月补签次数已用完",
    }
    /// `points`: reply to 积分.
    Points("points") => PointsVars {
        name: String = "小王",
        balance: i64 = 86,
        lifetime: i64 = 120,
        level: String = "活跃成员",
    }
    /// `level`: reply to 等级.
    Level("level") => LevelVars {
        name: String = "小王",
        level: String = "活跃成员",
        lifetime: i64 = 120,
        /// Empty at the top level.
        next_level: String = "铁杆粉丝",
        next_needed: i64 = 80,
    }
    /// `rank`: reply to 排行.
    Rank("rank") => RankVars {
        title: String = "本周积分排行",
        entries: Vec<RankEntry> = vec![
            RankEntry { name: "小王".into(), points: 120 },
            RankEntry { name: "小李".into(), points: 95 },
        ],
    }
    /// `redeem_ok`: reply to a redemption.
    RedeemOk("redeem ok") => RedeemOkVars {
        name: String = "小王",
        item: String = "保温杯",
        cost: i64 = 50,
        balance: i64 = 36,
    }
    /// `redeem_failed`: reply when a redemption cannot happen.
    RedeemFailed("redeem failed") => RedeemFailedVars {
        name: String = "小王",
        item: String = "保温杯",
        reason: String = "积分不足，需要 50 积分，当前 36 积分",
    }
    /// `redeem_cancelled`: to a member whose redemption a manager cancelled.
    RedeemCancelled("redeem cancelled") => RedeemCancelledVars {
        name: String = "小王",
        item: String = "保温杯",
        /// Points given back.
        refund: i64 = 50,
        balance: i64 = 86,
    }
    /// `help`: reply to 帮助.
    Help("help") => HelpVars {
        /// The catalog's items ("保温杯、帆布袋"); empty without a catalog.
        items: String = "保温杯、帆布袋",
        /// `[ugc] helpful`: members may mark a quoted message 有用.
        helpful: bool = true,
    }
    /// `autoreply[].template`: an FAQ reply, with the asker's real numbers.
    Faq("FAQ reply") => FaqVars {
        name: String = "小王",
        /// The chat asked in; empty in a 1:1 message.
        group_name: String = "好物分享群",
        balance: i64 = 86,
        lifetime: i64 = 120,
        level: String = "活跃成员",
        /// Check-in streak running through today or yesterday.
        streak: u32 = 3u32,
    }
    /// `lifecycle.nudge_template`: 1:1 to a member who went silent.
    Nudge("nudge") => NudgeVars {
        name: String = "小王",
        silent_days: i64 = 14,
        /// `[community] name`.
        group_name: String = "好物分享群",
    }
    /// `honour_board`: the honour board (荣誉榜), published and asked for.
    HonourBoard("honour board") => HonourBoardVars {
        /// The board's title (`[[honour.boards]] title`).
        title: String = "本周荣誉榜",
        /// The period it covers ("2026-11-16 ~ 2026-11-22").
        period: String = "2026-11-16 ~ 2026-11-22",
        sections: Vec<HonourSection> = vec![HonourSection {
            title: "连续签到".into(),
            unit: " 天".into(),
            entries: vec![RankEntry { name: "小王".into(), points: 7 }],
        }],
    }
    /// `badges`: reply to 勋章.
    Badges("badges") => BadgesVars {
        name: String = "小王",
        /// Badges held, joined with "、"; empty when none.
        badges: String = "三日之约、精华作者",
        /// What the next badges need ("连续签到 7 天 →「七日之星」"); empty when none is left.
        next: String = "连续签到 7 天 →「七日之星」",
    }
    /// `ugc_reward`: a 精华, 晒单 or 有用 reward, in the reply that caused it.
    UgcReward("content reward") => UgcRewardVars {
        name: String = "小王",
        /// "精华", "晒单" or "热心回答" (a 有用 mark).
        what: String = "精华",
        points: i64 = 20,
        balance: i64 = 106,
        /// A badge this reward unlocked; empty otherwise.
        badge: String = "精华作者",
        /// The level this reward reached; empty when the level did not change.
        level_up: String = "活跃成员",
    }
    /// `report_unhandled`: reply to 举报 while moderation is off.
    ReportUnhandled("report unhandled") => ReportUnhandledVars {
        name: String = "小王",
        /// Who handles reports here: the chat's owner when known, else "群主或管理员".
        contact: String = "群主（zhangsan）",
    }
}

/// Templates with a fixed name, rendered for a member command or notice.
pub const FIXED: &[(&str, TemplateKind)] = &[
    ("checkin_ok", TemplateKind::CheckinOk),
    ("checkin_already", TemplateKind::CheckinAlready),
    ("makeup_ok", TemplateKind::MakeupOk),
    ("makeup_denied", TemplateKind::MakeupDenied),
    ("points", TemplateKind::Points),
    ("level", TemplateKind::Level),
    ("rank", TemplateKind::Rank),
    ("redeem_ok", TemplateKind::RedeemOk),
    ("redeem_failed", TemplateKind::RedeemFailed),
    ("redeem_cancelled", TemplateKind::RedeemCancelled),
    ("help", TemplateKind::Help),
    ("report_unhandled", TemplateKind::ReportUnhandled),
    ("honour_board", TemplateKind::HonourBoard),
    ("badges", TemplateKind::Badges),
    ("ugc_reward", TemplateKind::UgcReward),
];

/// Names minijinja knows without a context (functions, tests' globals):
/// never "unknown variables".
const BUILTIN_GLOBALS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
    "loop",
];

/// Checks one template against one kind's contract: the variables it uses that
/// the contract lacks, then whether it renders with the samples. The error
/// names the template, the variable and what is available.
pub fn check(
    env: &minijinja::Environment<'_>,
    template: &str,
    kind: TemplateKind,
) -> Result<(), String> {
    let Ok(compiled) = env.get_template(template) else {
        return Err(format!("missing template \"{template}\""));
    };
    let available: Vec<&'static str> = kind.variables().iter().map(|v| v.name).collect();
    let mut unknown: Vec<String> = compiled
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !available.contains(&name.as_str()))
        .filter(|name| !BUILTIN_GLOBALS.contains(&name.as_str()))
        .filter(|name| env.globals().all(|(global, _)| global != name))
        .collect();
    unknown.sort();
    if !unknown.is_empty() {
        let list = unknown
            .iter()
            .map(|name| format!("{{{{ {name} }}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "template \"{template}\" ({} template) uses {list}, which it is not given; available: {}",
            kind.label(),
            available.join(", ")
        ));
    }
    compiled
        .render(kind.sample_context())
        .map(|_| ())
        .map_err(|err| {
            let text = err.to_string();
            format!(
                "template \"{template}\" ({} template) does not render: {}",
                kind.label(),
                text.lines().next().unwrap_or_default().trim()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What validation checks against (the declared list) and what run time
    /// sends (the serialised struct) are the same variables for every kind.
    #[test]
    fn declared_variables_are_exactly_the_run_time_context() {
        for kind in TemplateKind::ALL {
            let declared: Vec<&str> = kind.variables().iter().map(|v| v.name).collect();
            let context = kind.sample_context();
            let mut sent: Vec<&str> = context
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let mut declared_sorted = declared.clone();
            declared_sorted.sort_unstable();
            sent.sort_unstable();
            assert_eq!(declared_sorted, sent, "{kind:?}");
            for variable in kind.variables() {
                assert!(!variable.sample.is_null(), "{kind:?}.{}", variable.name);
            }
        }
    }

    #[test]
    fn unknown_variable_is_named_with_the_available_ones() {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template("welcome", "欢迎 {{ names }}，你有 {{ balance }} 积分")
            .unwrap();
        let error = check(&env, "welcome", TemplateKind::Welcome).unwrap_err();
        assert!(error.contains("template \"welcome\""), "{error}");
        assert!(error.contains("{{ balance }}"), "{error}");
        assert!(error.contains("available: names, name, count"), "{error}");
        assert!(check(&env, "welcome", TemplateKind::Points).is_err());
    }

    #[test]
    fn loops_and_functions_are_not_unknown_variables() {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template(
            "rank",
            "{{ title }}{% for entry in entries %}{{ loop.index }}{{ entry.name }}{% endfor %}{% for i in range(2) %}{{ i }}{% endfor %}",
        )
        .unwrap();
        assert_eq!(check(&env, "rank", TemplateKind::Rank), Ok(()));
    }
}
