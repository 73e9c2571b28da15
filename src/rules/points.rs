//! The points economy: daily caps, levels, leaderboard and redemption replies.
//! The ledger itself is append-only in the store; balances are derived from it.

use super::commands::reply;
use super::ruleset::Level;
use super::templates::{LevelVars, PointsVars, RankVars, RedeemFailedVars, RedeemOkVars};
use super::{Action, MessageContext, PersonSnapshot, RuleSet};

/// How much of `amount` may still be awarded today for `reason` under its daily cap.
pub fn capped_award(rules: &RuleSet, person: &PersonSnapshot, reason: &str, amount: i64) -> i64 {
    let amount = amount.max(0);
    match rules.doc.points.daily_caps.get(reason) {
        None => amount,
        Some(cap) => {
            let earned = person.points_today.get(reason).copied().unwrap_or(0);
            amount.min((cap - earned).max(0))
        }
    }
}

/// The level reached with `lifetime` points, and the next one if any.
pub fn level_for(levels: &[Level], lifetime: i64) -> (Option<&Level>, Option<&Level>) {
    let reached = levels
        .iter()
        .rev()
        .find(|level| lifetime >= level.min_points);
    let next = levels.iter().find(|level| lifetime < level.min_points);
    (reached, next)
}

pub fn level_name(rules: &RuleSet, lifetime: i64) -> String {
    level_for(&rules.doc.points.levels, lifetime)
        .0
        .map(|level| level.name.clone())
        .unwrap_or_default()
}

pub fn on_points(cx: &MessageContext) -> Vec<Action> {
    let person = cx.snapshot.person(&cx.message.sender);
    let text = cx.rules.render(
        "points",
        &PointsVars {
            name: person.display_name(),
            balance: person.balance,
            lifetime: person.lifetime_points,
            level: level_name(cx.rules, person.lifetime_points),
        },
    );
    vec![cx.reply(text)]
}

pub fn on_level(cx: &MessageContext) -> Vec<Action> {
    let person = cx.snapshot.person(&cx.message.sender);
    let (reached, next) = level_for(&cx.rules.doc.points.levels, person.lifetime_points);
    let text = cx.rules.render(
        "level",
        &LevelVars {
            name: person.display_name(),
            level: reached.map(|l| l.name.clone()).unwrap_or_default(),
            lifetime: person.lifetime_points,
            next_level: next.map(|l| l.name.clone()).unwrap_or_default(),
            next_needed: next
                .map(|l| l.min_points - person.lifetime_points)
                .unwrap_or(0),
        },
    );
    vec![cx.reply(text)]
}

pub fn on_rank(cx: &MessageContext, scope: super::commands::RankScope) -> Vec<Action> {
    let text = cx.rules.render(
        "rank",
        &RankVars {
            entries: cx.snapshot.leaderboard.clone(),
            title: scope.title().to_string(),
        },
    );
    vec![cx.reply(text)]
}

/// `兑换 <item>`: checks what the snapshot can tell (item, price, limit, stock);
/// the store re-checks stock and balance atomically when applying `Redeem`.
pub fn on_redeem(cx: &MessageContext, item_name: &str) -> Vec<Action> {
    let person = cx.snapshot.person(&cx.message.sender);
    let name = person.display_name();
    let failed = |reason: &str| {
        cx.rules.render(
            "redeem_failed",
            &RedeemFailedVars {
                name: name.clone(),
                item: item_name.to_string(),
                reason: reason.to_string(),
            },
        )
    };
    let refuse = |reason: &str| vec![cx.reply(failed(reason))];

    let Some(item) = cx
        .rules
        .doc
        .catalog
        .iter()
        .find(|item| item.item == item_name)
    else {
        let names: Vec<&str> = cx
            .rules
            .doc
            .catalog
            .iter()
            .map(|i| i.item.as_str())
            .collect();
        let reason = if names.is_empty() {
            "目前没有可兑换的商品".to_string()
        } else {
            format!("没有这个商品，可兑换：{}", names.join("、"))
        };
        return refuse(&reason);
    };
    let already = person
        .redemptions_by_item
        .get(&item.item)
        .copied()
        .unwrap_or(0);
    if already >= item.per_person {
        return refuse(&format!("每人限兑 {} 次", item.per_person));
    }
    if person.balance < item.cost {
        return refuse(&format!(
            "积分不足，需要 {} 积分，当前 {} 积分",
            item.cost, person.balance
        ));
    }
    let stock = cx
        .snapshot
        .catalog_stock
        .get(&item.item)
        .copied()
        .unwrap_or(item.stock);
    if stock <= 0 {
        return refuse("已经兑完了");
    }
    let day = cx.rules.community_day(cx.now);
    let success = cx.rules.render(
        "redeem_ok",
        &RedeemOkVars {
            name: name.clone(),
            item: item.item.clone(),
            cost: item.cost,
            balance: person.balance - item.cost,
        },
    );
    let mut sold_out = reply(cx.snapshot, cx.event, cx.message, failed("已经兑完了"));
    let success = reply(cx.snapshot, cx.event, cx.message, success);
    // Both outcomes share the reply key: exactly one of them is ever queued.
    sold_out.idempotency_key = success.idempotency_key.clone();
    vec![Action::Redeem {
        user_id: person.user_id.clone(),
        item: item.item.clone(),
        cost: item.cost,
        reference: format!("redeem:{}", cx.event.id),
        day,
        success: Box::new(success),
        sold_out: Box::new(sold_out),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> Vec<Level> {
        RuleSet::builtin().doc.points.levels
    }

    #[test]
    fn level_is_the_highest_threshold_reached() {
        let levels = levels();
        let (reached, next) = level_for(&levels, 0);
        assert_eq!(reached.unwrap().name, "新人");
        assert_eq!(next.unwrap().name, "活跃成员");
        let (reached, next) = level_for(&levels, 200);
        assert_eq!(reached.unwrap().name, "铁杆粉丝");
        assert_eq!(next.unwrap().name, "社群之星");
        let (reached, next) = level_for(&levels, 5000);
        assert_eq!(reached.unwrap().name, "社群之星");
        assert!(next.is_none());
    }

    #[test]
    fn daily_cap_counts_what_was_already_earned() {
        let rules = RuleSet::from_toml("[points.daily_caps]\ninvite = 20\n").unwrap();
        let mut person = PersonSnapshot::new("a");
        assert_eq!(capped_award(&rules, &person, "invite", 15), 15);
        person.points_today.insert("invite".into(), 15);
        assert_eq!(capped_award(&rules, &person, "invite", 15), 5);
        person.points_today.insert("invite".into(), 25);
        assert_eq!(capped_award(&rules, &person, "invite", 15), 0);
        assert_eq!(capped_award(&rules, &person, "uncapped", 15), 15);
    }
}
