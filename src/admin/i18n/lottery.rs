//! The lottery pages' words: (key, Chinese, English).

pub const STRINGS: &[(&str, &str, &str)] = &[
    ("nav_lotteries", "抽奖", "Lotteries"),
    ("lotteries", "抽奖", "Lotteries"),
    ("lottery", "抽奖", "Lottery"),
    ("lottery_new", "新建抽奖", "New lottery"),
    ("lottery_title", "标题", "Title"),
    (
        "lottery_chats",
        "群（ID，逗号分隔）",
        "Chats (ids, comma-separated)",
    ),
    ("lottery_tags", "群标签", "Chat tags"),
    (
        "lottery_keyword",
        "参加口令（留空＝符合条件自动参加）",
        "Entry keyword (blank: eligible members enter automatically)",
    ),
    ("lottery_draw_at", "开奖时间 (UTC)", "Draw time (UTC)"),
    (
        "lottery_prizes",
        "奖品，每行一个：名称:points=积分:winners=人数 或 名称:item=兑换品:winners=人数",
        "Prizes, one a line: NAME:points=N:winners=K or NAME:item=ITEM:winners=K",
    ),
    (
        "lottery_checked_in",
        "仅限今天已签到",
        "Checked in today only",
    ),
    ("lottery_min_level", "最低等级", "Minimum level"),
    (
        "lottery_joined_before",
        "入群早于 (UTC)",
        "Joined before (UTC)",
    ),
    ("lottery_cost", "参加所需积分", "Points to enter"),
    (
        "lottery_create",
        "创建并公布承诺值",
        "Create and announce the commitment",
    ),
    ("lottery_status", "状态", "Status"),
    (
        "lottery_commitment",
        "承诺值 SHA-256(种子)",
        "Commitment SHA-256(seed)",
    ),
    ("lottery_seed", "种子", "Seed"),
    ("lottery_seed_secret", "开奖前保密", "secret until the draw"),
    ("lottery_entrants", "参加名单", "Entrants"),
    ("lottery_download", "下载名单", "Download the list"),
    ("lottery_winners", "中奖名单", "Winners"),
    ("lottery_prize", "奖品", "Prize"),
    ("lottery_outcome", "发放", "Payout"),
    (
        "lottery_verified",
        "复算结果与记录一致",
        "Recomputing gives the recorded winners",
    ),
    (
        "lottery_not_verified",
        "复算结果与记录不一致",
        "Recomputing does NOT give the recorded winners",
    ),
    (
        "lottery_verify_cli",
        "任何人都可复算",
        "Anyone can recompute",
    ),
    ("lottery_draw_now", "立即开奖", "Draw now"),
    ("lottery_cancel", "取消并退回积分", "Cancel and refund"),
    ("lottery_none", "还没有抽奖", "No lotteries yet"),
];
