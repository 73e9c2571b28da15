//! Lotteries (抽奖): create (the seed is drawn from the OS and only its
//! SHA-256 is announced), enter, draw (the seed revealed, winners recomputable
//! by anyone, prizes paid once), cancel (entry points refunded). The draw job
//! (`jobs::lottery`) and the manager's "draw now" share [`draw_in`]; the
//! pipeline's keyword entries share [`apply_entry`].

use anyhow::bail;
use chrono::{DateTime, NaiveDate, Utc};
use rand::RngCore;
use sqlx::SqliteConnection;

use super::{audit, Actor, Ops, OpsError, OpsResult, Role};
use crate::rules::lottery::{self as pure, Eligibility, EntrantFacts};
use crate::rules::route::route_to_members;
use crate::rules::segment_limit::SegmentRef;
use crate::rules::{ChatAddress, Content, MessageKind, Outbound, RuleSet};
use crate::store::lottery::{self as store, Lottery, Prize, Winner};
use crate::store::{self as db, points};

/// What a manager asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotteryInput {
    pub title: String,
    pub chats: Vec<String>,
    pub tags: Vec<String>,
    /// `None`: every eligible member of the chats enters automatically at the draw.
    pub keyword: Option<String>,
    pub eligibility: Eligibility,
    pub draw_at: DateTime<Utc>,
    pub prizes: Vec<Prize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: i64,
    pub commitment: String,
    /// The chats announced to, each with "queued" or "skipped: <reason>".
    pub announced: Vec<(String, String)>,
}

fn validate(rules: &RuleSet, input: &LotteryInput, now: DateTime<Utc>) -> OpsResult<()> {
    if input.title.trim().is_empty() {
        return Err(OpsError::invalid("title", "a title is required"));
    }
    if input.chats.is_empty() && input.tags.is_empty() {
        return Err(OpsError::invalid("chats", "name chats or chat tags"));
    }
    if input.draw_at <= now {
        return Err(OpsError::invalid(
            "draw_at",
            "the draw must be in the future",
        ));
    }
    if input
        .keyword
        .as_deref()
        .is_some_and(|k| k.trim().is_empty())
    {
        return Err(OpsError::invalid("keyword", "must not be blank"));
    }
    if input.keyword.is_none() && input.eligibility.entry_cost > 0 {
        return Err(OpsError::invalid(
            "entry_cost",
            "automatic entry cannot charge points: use a keyword",
        ));
    }
    if input.eligibility.entry_cost < 0 {
        return Err(OpsError::invalid("entry_cost", "must not be negative"));
    }
    if input.prizes.is_empty() {
        return Err(OpsError::invalid("prizes", "at least one prize"));
    }
    for prize in &input.prizes {
        if prize.winners == 0 {
            return Err(OpsError::invalid(
                "prizes",
                "each prize needs at least one winner",
            ));
        }
        match (&prize.item, prize.points) {
            (None, p) if p > 0 => {}
            (Some(item), 0) => {
                if !rules.doc.catalog.iter().any(|c| &c.item == item) {
                    return Err(OpsError::invalid(
                        "prizes",
                        format!("{item} is not in the catalog"),
                    ));
                }
            }
            _ => {
                return Err(OpsError::invalid(
                    "prizes",
                    "a prize is either points (> 0) or one catalog item",
                ))
            }
        }
    }
    Ok(())
}

/// A prize as one line: `NAME:points=N:winners=K` or `NAME:item=ITEM:winners=K`
/// (`winners` defaults to 1): the CLI's `--prize` and the console's prize lines.
pub fn parse_prize(text: &str) -> OpsResult<Prize> {
    let mut parts = text.split(':');
    let name = parts.next().unwrap_or_default().trim().to_owned();
    if name.is_empty() {
        return Err(OpsError::invalid(
            "prizes",
            format!("{text:?}: a name first"),
        ));
    }
    let mut prize = Prize {
        name,
        points: 0,
        item: None,
        winners: 1,
    };
    for part in parts {
        let bad = |why: String| OpsError::invalid("prizes", format!("{text:?}: {why}"));
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{part:?} is not key=value")))?;
        let value = value.trim();
        match key.trim() {
            "points" => prize.points = value.parse().map_err(|_| bad("points: a number".into()))?,
            "item" => prize.item = Some(value.to_owned()),
            "winners" => {
                prize.winners = value.parse().map_err(|_| bad("winners: a number".into()))?
            }
            other => return Err(bad(format!("unknown key {other:?}"))),
        }
    }
    Ok(prize)
}

/// Creates a lottery: draws a 32-byte seed from the OS, stores it, announces
/// `SHA-256(seed)` to every target chat through its route, audits.
pub async fn create(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    input: &LotteryInput,
) -> OpsResult<Created> {
    actor.require(Role::Operator)?;
    let rules = ops.in_force().await?.rules;
    validate(&rules, input, now)?;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let seed_hex = hex::encode(seed);
    let commitment = pure::commitment(&seed);
    let keyword = input.keyword.as_deref().map(str::trim);
    let mut tx = ops.begin().await?;
    super::segments::require(&mut tx, input.eligibility.segment.as_ref().map(|s| s.id)).await?;
    let id = store::insert(
        &mut tx,
        &store::NewLottery {
            title: input.title.trim(),
            chats: &input.chats,
            tags: &input.tags,
            keyword,
            eligibility: &input.eligibility,
            draw_at: input.draw_at,
            seed_hex: &seed_hex,
            commitment: &commitment,
            prizes: &input.prizes,
            created_by: &actor.name,
        },
        now,
    )
    .await?;
    let lottery = store::get(&mut tx, id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("lottery {id}")))?;
    let text = announcement(&rules, &lottery);
    let announced = post_to_chats(&mut tx, &rules, &lottery, "announce", &text, &[], now).await?;
    audit(
        &mut tx,
        actor,
        now,
        "lottery.create",
        &id.to_string(),
        &format!("{} (commitment {commitment})", lottery.title),
    )
    .await?;
    tx.commit().await?;
    Ok(Created {
        id,
        commitment,
        announced,
    })
}

fn prizes_line(prizes: &[Prize]) -> String {
    prizes
        .iter()
        .map(|p| match &p.item {
            Some(item) => format!("{}：{item} ×{}", p.name, p.winners),
            None => format!("{}：{} 积分 ×{}", p.name, p.points, p.winners),
        })
        .collect::<Vec<_>>()
        .join("；")
}

fn announcement(rules: &RuleSet, lottery: &Lottery) -> String {
    let how = match &lottery.keyword {
        Some(keyword) => format!("发送「{keyword}」参加"),
        None => "符合条件的群成员自动参加".to_owned(),
    };
    let cost = match lottery.eligibility.entry_cost {
        0 => String::new(),
        cost => format!("（每人 {cost} 积分）"),
    };
    format!(
        "【抽奖】{}\n{how}{cost}，{} 开奖\n奖品：{}\n承诺值 SHA-256(种子)：{}\n开奖时公布种子，任何人都能复算中奖名单",
        lottery.title,
        lottery
            .draw_at
            .with_timezone(&rules.timezone)
            .format("%Y-%m-%d %H:%M"),
        prizes_line(&lottery.prizes),
        lottery.commitment
    )
}

/// Queues `text` to every chat the lottery targets, each through its route
/// (a skipped row with the reason where nothing can post).
async fn post_to_chats(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    lottery: &Lottery,
    stage: &str,
    text: &str,
    mentions: &[String],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<(String, String)>> {
    let app = &rules.doc.community.app;
    let mut out = Vec::new();
    for chat_id in store::target_chats(conn, &lottery.chats, &lottery.tags).await? {
        let chat = db::chats::get_chat(conn, &chat_id).await?;
        let message = Outbound::to_chat(
            format!("lottery:{}:{stage}:{chat_id}", lottery.id),
            ChatAddress::of(chat.as_ref(), &chat_id),
            MessageKind::Push,
            Content::text_mentioning(text, mentions.to_vec()),
        );
        db::outbox::enqueue(conn, &message, app, now).await?;
        let outcome = match &message.skipped {
            Some(reason) => format!("skipped: {reason}"),
            None => format!("queued via {}", message.route.name()),
        };
        out.push((chat_id, outcome));
    }
    Ok(out)
}

/// The facts eligibility looks at for `user_id` at `now`, read from the
/// store (and whether they are in the lottery's `segment`).
async fn facts(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    user_id: &str,
    now: DateTime<Utc>,
    in_lottery_chat: bool,
    segment: Option<&SegmentRef>,
) -> anyhow::Result<EntrantFacts> {
    let today = rules.community_day(now);
    Ok(EntrantFacts {
        in_lottery_chat,
        checked_in_today: db::checkins::days_since(conn, user_id, today)
            .await?
            .contains(&today),
        level: pure::level_number(
            &rules.doc.points.levels,
            points::lifetime_earned(conn, user_id).await?,
        ),
        joined_at: store::joined_at(conn, user_id).await?,
        balance: points::balance(conn, user_id).await?,
        in_segment: super::segments::member_of(conn, rules, segment, user_id, now).await?,
    })
}

/// Records an entry and debits its cost, inside the caller's transaction
/// (the pipeline's event, or [`enter`]). A repeated entry does nothing.
pub async fn apply_entry(
    conn: &mut SqliteConnection,
    lottery_id: i64,
    user_id: &str,
    cost: i64,
    chat_id: Option<&str>,
    day: NaiveDate,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    if !store::insert_entry(conn, lottery_id, user_id, cost, chat_id, at).await? {
        return Ok(false);
    }
    if cost > 0 {
        let reference = pure::entry_reference(lottery_id, user_id);
        let debit = points::NewLedgerEntry {
            user_id,
            delta: -cost,
            reason: "lottery_entry",
            reference: &reference,
            chat_id,
            day,
            at,
        };
        if points::append(conn, &debit).await? == points::Appended::InsufficientBalance {
            bail!("ledger entry {reference} would make the balance negative");
        }
    }
    Ok(true)
}

/// A manager enters a member by hand (e.g. one who asked in a customer
/// group, where qunyun only reads the archive), under the same rules.
pub async fn enter(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    id: i64,
    user_id: &str,
) -> OpsResult<()> {
    actor.require(Role::Operator)?;
    let rules = ops.in_force().await?.rules;
    let today = rules.community_day(now);
    let mut tx = ops.begin().await?;
    let lottery = open_lottery(&mut tx, id, now).await?;
    let in_chat = store::member_chats(&mut tx, user_id)
        .await?
        .iter()
        .any(|chat| {
            lottery.chats.contains(&chat.chat_id)
                || chat.tags.iter().any(|t| lottery.tags.contains(t))
        });
    let segment = lottery.eligibility.segment.as_ref();
    let facts = facts(&mut tx, &rules, user_id, now, in_chat, segment).await?;
    if let Err(why) = pure::check(&lottery.eligibility, &facts) {
        return Err(OpsError::invalid("user", why.reason()));
    }
    let cost = lottery.eligibility.entry_cost;
    if !apply_entry(&mut tx, id, user_id, cost, None, today, now).await? {
        return Err(OpsError::invalid(
            "user",
            format!("{user_id} already entered"),
        ));
    }
    audit(
        &mut tx,
        actor,
        now,
        "lottery.enter",
        &id.to_string(),
        user_id,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn open_lottery(
    conn: &mut SqliteConnection,
    id: i64,
    now: DateTime<Utc>,
) -> OpsResult<Lottery> {
    let lottery = store::get(conn, id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("lottery {id}")))?;
    if lottery.status != "open" {
        return Err(OpsError::invalid(
            "lottery",
            format!("lottery {id} is {}", lottery.status),
        ));
    }
    if lottery.draw_at <= now {
        return Err(OpsError::invalid(
            "lottery",
            format!("lottery {id} is closed for entries"),
        ));
    }
    Ok(lottery)
}

/// What a draw did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drawn {
    pub id: i64,
    pub entrants: usize,
    pub winners: Vec<Winner>,
}

/// Draws lottery `id` inside the caller's transaction if it is still open:
/// automatic entries are taken, the winners drawn from the seed, prizes paid
/// (ledger and redemption references are unique per lottery and winner), the
/// seed revealed to the chats and each winner told 1:1. `None` when the
/// lottery is not open (drawn or cancelled already): a draw happens once.
pub async fn draw_in(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    id: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Drawn>> {
    let Some(lottery) = store::get(conn, id).await? else {
        return Ok(None);
    };
    if lottery.status != "open" {
        return Ok(None);
    }
    let today = rules.community_day(now);
    if lottery.keyword.is_none() {
        let chats = store::target_chats(conn, &lottery.chats, &lottery.tags).await?;
        for user_id in store::current_members_of(conn, &chats).await? {
            let segment = lottery.eligibility.segment.as_ref();
            let facts = facts(conn, rules, &user_id, now, true, segment).await?;
            if pure::check(&lottery.eligibility, &facts).is_ok() {
                store::insert_entry(conn, id, &user_id, 0, None, now).await?;
            }
        }
    }
    let entries: Vec<String> = store::entries(conn, id)
        .await?
        .into_iter()
        .map(|(user, _)| user)
        .collect();
    let sorted = pure::sorted_entrants(&entries);
    let seed = hex::decode(&lottery.seed_hex)?;
    let slots: Vec<u32> = lottery.prizes.iter().map(|p| p.winners).collect();
    let total: usize = slots.iter().map(|n| *n as usize).sum();
    let order = pure::draw(&seed, &sorted, total);
    if !store::mark_drawn(conn, id, &pure::entrants_digest(&sorted), now).await? {
        return Ok(None);
    }
    let app = rules.doc.community.app.clone();
    let mut winners = Vec::new();
    for (position, (prize_index, user_id)) in pure::assign(&slots, &order).into_iter().enumerate() {
        let prize = &lottery.prizes[prize_index];
        let reference = pure::prize_reference(id, &user_id);
        let outcome = pay(conn, prize, &user_id, &reference, today, now).await?;
        let winner = Winner {
            user_id: user_id.clone(),
            draw_position: position as i64,
            prize_position: prize_index as i64,
            outcome: outcome.to_owned(),
        };
        if !store::insert_winner(conn, id, &winner).await? {
            continue;
        }
        let name = db::members::person_name(conn, &user_id)
            .await?
            .unwrap_or_else(|| user_id.clone());
        let what = match (&prize.item, outcome) {
            (Some(item), "redeemed") => format!("{item}（已生成兑换单，等待发放）"),
            (Some(item), _) => format!("{item}，但库存已空，工作人员会联系你"),
            (None, _) => format!("{} 积分（已到账）", prize.points),
        };
        let notice = Outbound::decided(
            format!("lottery:{id}:won:{user_id}"),
            route_to_members(&app, std::slice::from_ref(&user_id), ""),
            Content::text(format!(
                "{name}，恭喜你在「{}」中了{}：{what}",
                lottery.title, prize.name
            )),
        );
        db::outbox::enqueue(conn, &notice, &app, now).await?;
        winners.push(winner);
    }
    let text = reveal(&lottery, &sorted, &winners, conn).await?;
    let mentions: Vec<String> = winners.iter().map(|w| w.user_id.clone()).collect();
    post_to_chats(conn, rules, &lottery, "reveal", &text, &mentions, now).await?;
    db::admin::append_audit(
        conn,
        now.timestamp(),
        "system:lottery",
        "lottery.draw",
        &id.to_string(),
        &format!("{} entrants, {} winners", sorted.len(), winners.len()),
    )
    .await?;
    Ok(Some(Drawn {
        id,
        entrants: sorted.len(),
        winners,
    }))
}

/// Pays one prize: points through the ledger, or a catalog item as a
/// redemption when stock is left. Returns the outcome recorded for the winner.
async fn pay(
    conn: &mut SqliteConnection,
    prize: &Prize,
    user_id: &str,
    reference: &str,
    day: NaiveDate,
    now: DateTime<Utc>,
) -> anyhow::Result<&'static str> {
    match &prize.item {
        None => {
            let entry = points::NewLedgerEntry {
                user_id,
                delta: prize.points,
                reason: "lottery_prize",
                reference,
                chat_id: None,
                day,
                at: now,
            };
            points::append(conn, &entry).await?;
            Ok("points")
        }
        Some(item) => {
            if db::redemptions::exists(conn, reference).await? {
                return Ok("redeemed");
            }
            if !db::redemptions::take_one(conn, item).await? {
                return Ok("out_of_stock");
            }
            db::redemptions::create(conn, user_id, item, 0, reference, now).await?;
            Ok("redeemed")
        }
    }
}

async fn reveal(
    lottery: &Lottery,
    sorted: &[String],
    winners: &[Winner],
    conn: &mut SqliteConnection,
) -> anyhow::Result<String> {
    let mut lines = vec![
        format!("【开奖】{}", lottery.title),
        format!("种子：{}", lottery.seed_hex),
        format!("承诺值：{}", lottery.commitment),
        format!(
            "参加 {} 人，名单 SHA-256：{}",
            sorted.len(),
            pure::entrants_digest(sorted)
        ),
    ];
    for (index, prize) in lottery.prizes.iter().enumerate() {
        let mut names = Vec::new();
        for winner in winners.iter().filter(|w| w.prize_position == index as i64) {
            names.push(
                db::members::person_name(conn, &winner.user_id)
                    .await?
                    .unwrap_or_else(|| winner.user_id.clone()),
            );
        }
        let names = if names.is_empty() {
            "（无人）".to_owned()
        } else {
            names.join("、")
        };
        lines.push(format!("{}：{names}", prize.name));
    }
    lines.push(format!(
        "复算：qunyun lottery verify {} --seed <种子> --entrants <名单> --commitment <承诺值>",
        lottery.id
    ));
    Ok(lines.join("\n"))
}

/// Draws every open lottery whose time has come, each in its own
/// transaction (the draw job). Returns the draws made.
pub async fn draw_due(ops: &Ops, now: DateTime<Utc>) -> OpsResult<Vec<Drawn>> {
    let due = {
        let mut conn = ops.pool.acquire().await?;
        store::due(&mut conn, now).await?
    };
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let rules = ops.in_force().await?.rules;
    let mut drawn = Vec::new();
    for id in due {
        let mut tx = ops.begin().await?;
        if let Some(done) = draw_in(&mut tx, &rules, id, now).await? {
            drawn.push(done);
        }
        tx.commit().await?;
    }
    Ok(drawn)
}

/// A manager draws now, ahead of the draw time.
pub async fn draw(ops: &Ops, actor: &Actor, now: DateTime<Utc>, id: i64) -> OpsResult<Drawn> {
    actor.require(Role::Operator)?;
    let rules = ops.in_force().await?.rules;
    let mut tx = ops.begin().await?;
    let Some(drawn) = draw_in(&mut tx, &rules, id, now).await? else {
        return Err(OpsError::invalid(
            "lottery",
            format!("lottery {id} is not open"),
        ));
    };
    audit(&mut tx, actor, now, "lottery.draw_now", &id.to_string(), "").await?;
    tx.commit().await?;
    Ok(drawn)
}

/// Cancels an open lottery: every entry fee refunded through the ledger,
/// the chats told. Returns how many entrants were refunded.
pub async fn cancel(
    ops: &Ops,
    actor: &Actor,
    now: DateTime<Utc>,
    id: i64,
    reason: &str,
) -> OpsResult<usize> {
    actor.require(Role::Operator)?;
    let rules = ops.in_force().await?.rules;
    let day = rules.community_day(now);
    let mut tx = ops.begin().await?;
    let Some(lottery) = store::get(&mut tx, id).await? else {
        return Err(OpsError::not_found(format!("lottery {id}")));
    };
    if !store::mark_cancelled(&mut tx, id).await? {
        return Err(OpsError::invalid(
            "lottery",
            format!("lottery {id} is {}", lottery.status),
        ));
    }
    let mut refunded = 0;
    for (user_id, cost) in store::entries(&mut tx, id).await? {
        if cost <= 0 {
            continue;
        }
        let reference = pure::refund_reference(id, &user_id);
        let entry = points::NewLedgerEntry {
            user_id: &user_id,
            delta: cost,
            reason: "lottery_refund",
            reference: &reference,
            chat_id: None,
            day,
            at: now,
        };
        if let points::Appended::New(_) = points::append(&mut tx, &entry).await? {
            refunded += 1;
        }
    }
    let text = format!("【抽奖取消】{}，报名积分已全部退回", lottery.title);
    post_to_chats(&mut tx, &rules, &lottery, "cancel", &text, &[], now).await?;
    audit(
        &mut tx,
        actor,
        now,
        "lottery.cancel",
        &id.to_string(),
        &format!("{refunded} refunded; {}", reason.trim()),
    )
    .await?;
    tx.commit().await?;
    Ok(refunded)
}

/// One lottery as the console and `qunyun lottery show` present it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotteryView {
    pub lottery: Lottery,
    pub entrants: Vec<String>,
    pub winners: Vec<Winner>,
    /// After the draw: whether recomputing from the revealed seed and the
    /// entrant list gives the stored winners (`Err` says why not).
    pub verification: Option<Result<(), String>>,
}

impl LotteryView {
    /// The revealed seed, once drawn (never before).
    pub fn seed(&self) -> Option<&str> {
        self.lottery.revealed_seed()
    }
}

pub async fn list(ops: &Ops) -> OpsResult<Vec<Lottery>> {
    let mut conn = ops.pool.acquire().await?;
    Ok(store::list(&mut conn).await?)
}

pub async fn show(ops: &Ops, id: i64) -> OpsResult<LotteryView> {
    let mut conn = ops.pool.acquire().await?;
    let lottery = store::get(&mut conn, id)
        .await?
        .ok_or_else(|| OpsError::not_found(format!("lottery {id}")))?;
    let entries: Vec<String> = store::entries(&mut conn, id)
        .await?
        .into_iter()
        .map(|(user, _)| user)
        .collect();
    let entrants = pure::sorted_entrants(&entries);
    let winners = store::winners(&mut conn, id).await?;
    let verification = lottery.revealed_seed().map(|seed| {
        let count: usize = lottery.prizes.iter().map(|p| p.winners as usize).sum();
        let stored: Vec<String> = winners.iter().map(|w| w.user_id.clone()).collect();
        match pure::verify(seed, Some(&lottery.commitment), &entrants, count) {
            Ok(order) if order == stored => Ok(()),
            Ok(order) => Err(format!("recomputed {order:?}, stored {stored:?}")),
            Err(error) => Err(error.to_string()),
        }
    });
    Ok(LotteryView {
        lottery,
        entrants,
        winners,
        verification,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prizes_parse_from_the_command_line() {
        let points = parse_prize("一等奖:points=100:winners=2").unwrap();
        assert_eq!((points.points, points.winners, points.item), (100, 2, None));
        let item = parse_prize("二等奖:item=保温杯").unwrap();
        assert_eq!((item.item.as_deref(), item.winners), (Some("保温杯"), 1));
        assert!(parse_prize("奖:colour=red").is_err());
        assert!(parse_prize(":points=1").is_err());
    }
}
