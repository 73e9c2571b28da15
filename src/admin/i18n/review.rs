//! Words of the review-in-tiers section of the moderation page.

/// (key, Chinese, English)
pub(super) const STRINGS: &[(&str, &str, &str)] = &[
    ("review_queue", "分级复核", "Review in tiers"),
    ("review_tier", "层级", "Tier"),
    ("review_due", "处理时限", "Due by"),
    ("review_overdue", "已超时", "Overdue"),
    ("review_confirm", "确认违规", "Confirm"),
    ("review_dismiss", "驳回", "Dismiss"),
    ("review_escalate", "升级给负责人", "Escalate to an owner"),
    ("review_uphold", "维持处罚", "Uphold"),
    ("review_overturn", "撤销处罚", "Overturn"),
];
