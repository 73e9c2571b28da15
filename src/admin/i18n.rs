//! The console's words in Chinese (default) and English. Templates read them
//! as `t.key`; a unit test checks every key a template uses exists here.

use std::collections::BTreeMap;

mod lottery;
mod members;
mod polls;
mod queues;
mod review;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// Anything but `en` is Chinese.
    pub fn from_code(code: &str) -> Lang {
        if code == "en" {
            Lang::En
        } else {
            Lang::Zh
        }
    }
}

/// (key, Chinese, English)
const STRINGS: &[(&str, &str, &str)] = &[
    ("console", "管理后台", "Console"),
    ("login", "登录", "Sign in"),
    ("logout", "退出登录", "Sign out"),
    (
        "login_failed",
        "用户名或密码错误",
        "Wrong username or password",
    ),
    (
        "login_throttled",
        "登录失败次数过多，请稍后再试",
        "Too many failed sign-ins; try again later",
    ),
    ("username", "用户名", "Username"),
    ("password", "密码", "Password"),
    ("switch_language", "English", "中文"),
    ("nav_dashboard", "概览", "Dashboard"),
    ("nav_chats", "群管理", "Chats"),
    ("nav_members", "成员", "Members"),
    ("nav_rules", "规则", "Rules"),
    ("nav_queues", "待办队列", "Queues"),
    ("nav_audit", "操作日志", "Audit log"),
    ("nav_users", "账号", "Accounts"),
    ("total_chats", "群数", "Chats"),
    ("total_members", "在群成员", "Members in chats"),
    ("total_people", "累计人数", "People seen"),
    ("pending_redemptions", "待发货兑换", "Redemptions to ship"),
    ("parked_events", "搁置的事件", "Parked events"),
    ("alerts", "预警", "Alerts"),
    ("no_alerts", "一切正常", "All clear"),
    (
        "alert_parked",
        "有事件处理失败被搁置",
        "Events parked after failures",
    ),
    (
        "alert_rules_invalid",
        "当前规则版本已无法通过校验，仍按上一个有效版本运行（版本号）",
        "The stored rule set no longer validates; the last good one keeps running (version)",
    ),
    ("alert_leave_spike", "今日退群激增", "Leave spike today"),
    (
        "alert_redemptions",
        "兑换等待发货",
        "Redemptions waiting to ship",
    ),
    (
        "alert_violation_spike",
        "今日违规激增",
        "Violation spike today",
    ),
    (
        "alert_checkin_drop",
        "昨日签到下降（%）",
        "Check-ins down yesterday (%)",
    ),
    (
        "alert_delivery_failures",
        "今日消息发送失败",
        "Messages failed today",
    ),
    (
        "alert_parked_events",
        "有事件处理失败被搁置",
        "Events parked after failures",
    ),
    ("alert_since", "开始于", "since"),
    ("alert_closed", "结束于", "closed"),
    ("alert_admins", "预警消息发送给", "Alert messages go to"),
    (
        "alert_no_admins",
        "未配置预警接收人（规则 [alerts] admins），预警只显示在这里",
        "No alert recipients ([alerts] admins in the rules): alerts show here only",
    ),
    ("recent_alerts", "近7天的预警", "Alerts in the last 7 days"),
    ("level_yellow", "黄色", "yellow"),
    ("level_orange", "橙色", "orange"),
    ("level_red", "红色", "red"),
    ("today_active", "今日活跃", "Active today"),
    ("today_checkins", "今日签到", "Check-ins today"),
    ("today_messages", "今日消息", "Messages today"),
    ("week_joins", "近7天入群", "Joins (7 days)"),
    ("week_leaves", "近7天退群", "Leaves (7 days)"),
    ("week_violations", "近7天违规", "Violations (7 days)"),
    (
        "chart_health",
        "违规与发送失败",
        "Violations and failed messages",
    ),
    ("violations", "违规", "violations"),
    ("pushes_failed", "发送失败", "failed messages"),
    ("stage_dormant", "沉默", "dormant"),
    ("lifecycle", "生命周期", "Lifecycle"),
    ("stage", "阶段", "Stage"),
    ("at_risk_recent", "最近的流失预警", "Recently at risk"),
    ("at_risk_action", "处理", "Action"),
    ("action_queued", "已发送提醒", "reminder queued"),
    ("action_skipped", "未发送", "not sent"),
    ("action_none", "仅记录", "recorded only"),
    ("last_30_days", "近30天", "Last 30 days"),
    ("chart_joins_leaves", "入群与退群", "Joins vs leaves"),
    (
        "chart_activity",
        "签到与活跃",
        "Check-ins and active members",
    ),
    (
        "chart_points",
        "积分发放与兑换",
        "Points issued and redeemed",
    ),
    ("chart_funnel", "成员生命周期", "Member lifecycle"),
    ("joins", "入群", "joins"),
    ("leaves", "退群", "leaves"),
    ("checkins", "签到", "check-ins"),
    ("active_members", "活跃成员", "active members"),
    ("points_issued", "发放", "issued"),
    ("points_redeemed", "兑换", "redeemed"),
    ("stage_new", "新成员", "new"),
    ("stage_active", "活跃", "active"),
    ("stage_core", "核心", "core"),
    ("stage_at_risk", "流失预警", "at risk"),
    ("stage_churned", "已流失", "churned"),
    ("chat", "群", "Chat"),
    ("route", "接入方式", "Route"),
    ("can_do", "能力", "What it can do"),
    ("tags", "标签", "Tags"),
    ("members", "成员数", "Members"),
    ("health_7d", "近7天 入/退", "7 days in/out"),
    ("needs_resync", "待同步", "needs resync"),
    ("route_app_group", "应用群聊", "App group"),
    ("route_customer_group", "客户群", "Customer group"),
    ("route_internal_group", "内部群", "Internal group"),
    ("owner", "群主", "Owner"),
    ("robot", "群机器人", "Robot"),
    ("robot_key", "群机器人 Key", "Robot key"),
    ("smart_bot", "智能机器人", "Smart bot"),
    ("no_robot", "移除群机器人", "Remove the robot"),
    ("no_smart_bot", "移除智能机器人", "Remove the smart bot"),
    ("yes", "有", "yes"),
    ("no", "无", "no"),
    ("save", "保存", "Save"),
    ("feature", "功能", "Feature"),
    ("how", "方式", "How"),
    ("feature_welcome", "入群欢迎", "Welcome"),
    ("feature_checkin_reply", "签到回复", "Check-in reply"),
    ("feature_auto_reply", "自动回复", "Auto-reply"),
    ("feature_push", "定时推送", "Push"),
    ("feature_moderation_warning", "违规警告", "Moderation warning"),
    ("feature_moderation_removal", "违规移出", "Moderation removal"),
    ("tag_add", "添加标签", "Add tags"),
    ("tag_remove", "移除标签", "Remove tags"),
    ("broadcast", "立即发送", "Send now"),
    ("broadcast_chats", "群ID（逗号分隔）", "Chat ids (comma-separated)"),
    ("broadcast_tags", "标签（逗号分隔）", "Tags (comma-separated)"),
    ("broadcast_text", "内容", "Message"),
    ("broadcast_send", "发送", "Send"),
    ("broadcast_sent", "发送结果", "Sent"),
    ("outcome_queued", "已排队，经", "queued via"),
    ("outcome_awaiting_owner", "等待群主确认", "awaiting the owner's confirmation"),
    (
        "cap_app_group",
        "可自动发送任意消息，可移出成员",
        "Sends anything automatically; can remove members",
    ),
    (
        "cap_customer_group",
        "收到入群/退群事件；仅群主确认的群发；移出需群主处理",
        "Join/leave events; owner-confirmed mass messages only; removal is a task for the owner",
    ),
    (
        "cap_internal_group",
        "群机器人可发文本/Markdown/图文，每分钟20条；智能机器人仅能回复@消息；无入群/退群事件；无法移出",
        "A robot posts text/markdown/news, 20 per minute; a smart bot answers @-mentions only; no join/leave events; no removal",
    ),
    (
        "cap_robot",
        "已添加群机器人，可自动推送",
        "has a webhook robot for automatic pushes",
    ),
    ("none", "暂无", "None"),
    ("search", "搜索", "Search"),
    ("search_placeholder", "用户ID或昵称", "User id or name"),
    ("export", "导出", "Export"),
    ("member", "成员", "Member"),
    ("chats_count", "所在群", "Chats"),
    ("balance", "积分余额", "Balance"),
    ("last_checkin", "最近签到", "Last check-in"),
    ("badges", "徽章", "Badges"),
    ("points_delta", "积分", "Points"),
    ("reason", "原因", "Reason"),
    ("adjust_points", "调整积分", "Adjust points"),
    ("content_posts", "群消息", "Group messages"),
    ("mark_essence", "加精", "Mark 精华"),
    ("essence", "精华", "精华"),
    ("helpful_marks", "有用", "Marked helpful"),
    ("message_id", "消息 ID", "Message id"),
    ("image", "图片", "Image"),
    ("checkin_calendar", "签到日历", "Check-in calendar"),
    (
        "weekdays",
        "一,二,三,四,五,六,日",
        "Mon,Tue,Wed,Thu,Fri,Sat,Sun",
    ),
    ("memberships", "所在群聊", "Memberships"),
    ("joined", "入群时间", "Joined"),
    ("left", "退群时间", "Left"),
    ("join_scene", "入群方式", "Join scene"),
    ("ledger", "积分流水", "Points ledger"),
    ("day", "日期", "Day"),
    ("builtin_rules", "内置默认规则", "built-in defaults"),
    ("rules_history", "历史版本", "History"),
    ("rules_valid", "校验通过", "The rule set is valid"),
    (
        "rules_invalid",
        "规则有误，请按标注修改：",
        "The rule set has problems, marked below:",
    ),
    ("check_and_diff", "校验并对比", "Check and diff"),
    ("apply", "应用", "Apply"),
    (
        "diff_against_active",
        "与当前生效版本的差异",
        "Changes against the active version",
    ),
    (
        "diff_from_active",
        "当前生效版本 → 此版本",
        "Active version → this version",
    ),
    ("rules_applied", "已应用", "Applied"),
    ("edit_rules", "编辑规则", "Edit rules"),
    ("version", "版本", "Version"),
    ("saved_at", "保存时间", "Saved"),
    ("active", "生效中", "active"),
    ("rollback_to", "回滚到", "Roll back to"),
    (
        "redemptions_to_fulfil",
        "待发货的兑换",
        "Redemptions to ship",
    ),
    ("item", "商品", "Item"),
    ("cost", "积分", "Cost"),
    ("requested_at", "申请时间", "Requested"),
    ("mark_shipped", "标记已发货", "Mark shipped"),
    ("cancel_refund", "取消并退积分", "Cancel and refund"),
    ("cancel_reason", "取消原因", "Reason"),
    ("source", "来源", "Source"),
    ("kind", "类型", "Kind"),
    ("received_at", "接收时间", "Received"),
    ("attempts", "尝试次数", "Attempts"),
    ("last_error", "最后错误", "Last error"),
    ("retry", "重试", "Retry"),
    ("dead_letters", "发送失败的消息", "Undeliverable messages"),
    ("status", "状态", "Status"),
    ("time", "时间", "Time"),
    ("actor", "操作人", "Actor"),
    ("action", "操作", "Action"),
    ("target", "对象", "Target"),
    ("detail", "详情", "Detail"),
    ("role", "角色", "Role"),
    ("role_owner", "所有者", "owner"),
    ("role_operator", "运营", "operator"),
    ("role_viewer", "只读", "viewer"),
    ("created_at", "创建时间", "Created"),
    ("add_user", "添加账号", "Add account"),
    ("api_tokens", "API 令牌", "API tokens"),
    ("label", "名称", "Label"),
    ("new_token", "生成令牌", "New token"),
    (
        "token_shown_once",
        "新令牌（只显示这一次）",
        "New token (shown only once)",
    ),
    ("revoke", "吊销", "Revoke"),
    ("revoked", "已吊销", "revoked"),
    ("account_active", "正常", "active"),
    ("account_disabled", "已停用", "disabled"),
    ("disable_account", "停用", "Disable"),
    ("enable_account", "启用", "Enable"),
    ("end_sessions", "退出所有登录", "End all sessions"),
    ("new_password", "新密码", "New password"),
    ("reset_password", "重置密码", "Reset password"),
    ("expires_at", "过期时间", "Expires"),
    ("never", "永不", "never"),
    ("expires_in_days", "有效天数（留空为永久）", "Valid for days (empty: never expires)"),
    ("notice_disabled", "账号已停用，其登录和令牌已失效", "Account disabled; its sessions and tokens no longer work"),
    ("notice_enabled", "账号已启用", "Account enabled"),
    ("notice_password_reset", "密码已重置，该账号的登录已全部退出", "Password reset; all of the account's sessions ended"),
    ("notice_sessions_ended", "该账号的登录已全部退出", "All of the account's sessions ended"),
];

fn all() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    STRINGS
        .iter()
        .chain(queues::STRINGS)
        .chain(lottery::STRINGS)
        .chain(review::STRINGS)
        .chain(members::STRINGS)
        .chain(polls::STRINGS)
}

pub fn strings(lang: Lang) -> BTreeMap<&'static str, &'static str> {
    all()
        .map(|(key, zh, en)| (*key, if lang == Lang::En { *en } else { *zh }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_both_languages_filled() {
        let mut seen = std::collections::BTreeSet::new();
        for (key, zh, en) in all() {
            assert!(seen.insert(*key), "duplicate key {key}");
            assert!(!zh.is_empty() && !en.is_empty(), "{key} has an empty text");
        }
    }

    #[test]
    fn chinese_is_the_default() {
        assert_eq!(Lang::from_code("fr"), Lang::Zh);
        assert_eq!(strings(Lang::Zh)["logout"], "退出登录");
        assert_eq!(strings(Lang::En)["logout"], "Sign out");
    }
}
