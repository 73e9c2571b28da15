//! Words of the polls pages.

/// (key, Chinese, English)
pub(super) const STRINGS: &[(&str, &str, &str)] = &[
    ("nav_polls", "投票", "Polls"),
    ("no_polls", "还没有投票", "No polls yet"),
    ("poll_question", "问题", "Question"),
    ("poll_options", "选项（每行一个）", "Options (one per line)"),
    ("poll_chats", "群（逗号分隔）", "Chats (comma-separated)"),
    ("poll_tags", "群标签", "Chat tags"),
    ("poll_multiple", "多选", "Multiple choice"),
    ("poll_allow_change", "允许改票", "Allow changing a vote"),
    ("poll_open_in_minutes", "几分钟后开始", "Opens in (minutes)"),
    ("poll_hours", "持续小时数", "Runs for (hours)"),
    ("poll_points", "每票积分", "Points per voter"),
    (
        "poll_points_cap",
        "积分总上限（0 不限）",
        "Points cap (0: none)",
    ),
    ("poll_create", "创建投票", "Create poll"),
    ("poll_opens", "开始", "Opens"),
    ("poll_closes", "截止", "Closes"),
    ("poll_votes", "票数", "Votes"),
    ("poll_voters", "参与人数", "Voters"),
    (
        "poll_close_now",
        "立即截止并公布结果",
        "Close now and announce",
    ),
];
