//! Loading what `rules::evaluate` needs for one event (the chat, the people
//! involved, today's counters, moderation history), inside the event's
//! transaction so the decision is taken on the state it writes to.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sqlx::SqliteConnection;

use crate::ops::segments::member_of;
use crate::rules::event::MessagePosted;
use crate::rules::moderate;
use crate::rules::{self, Event, EventKind, LeaderboardEntry, PersonSnapshot, RuleSet, Snapshot};
use crate::store::{chats, checkins, lottery, members, moderation, points, redemptions};

/// Reads what `evaluate` needs for this event, inside the event's transaction.
pub async fn load_snapshot(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    event: &Event,
    now: DateTime<Utc>,
) -> anyhow::Result<Snapshot> {
    let today = rules.community_day(now);
    let mut snapshot = Snapshot::default();
    let (chat_id, people): (Option<&str>, Vec<&str>) = match &event.kind {
        EventKind::MembersJoined(j) => (
            Some(&j.chat_id),
            j.user_ids.iter().map(String::as_str).collect(),
        ),
        EventKind::MembersLeft(l) => (
            Some(&l.chat_id),
            l.user_ids.iter().map(String::as_str).collect(),
        ),
        EventKind::MessagePosted(m) => (m.chat_id.as_deref(), vec![m.sender.as_str()]),
        EventKind::CustomerAdded(_) => (None, Vec::new()),
        EventKind::MessageReported(r) => (Some(r.chat_id.as_str()), Vec::new()),
        EventKind::ImagePosted(m) => (m.chat_id.as_deref(), vec![m.sender.as_str()]),
        EventKind::ContentFeatured(f) | EventKind::MarkedHelpful(f) => {
            (Some(f.chat_id.as_str()), vec![f.by.as_str()])
        }
    };
    if let Some(chat_id) = chat_id {
        snapshot.chat = chats::get_chat(conn, chat_id).await?;
    }
    for user_id in people {
        let person = load_person(conn, user_id, today).await?;
        snapshot.people.insert(user_id.to_string(), person);
    }
    load_honour(conn, rules, event, now, &mut snapshot).await?;
    if let EventKind::MessagePosted(message) | EventKind::ImagePosted(message) = &event.kind {
        load_expiry_notice(conn, rules, &mut snapshot, message, today).await?;
        snapshot.checkins_today = checkins::count_on_day(conn, today).await?;
        // The leaderboard scans the week's ledger: only read it for 排行.
        if let Some(rules::commands::Command::Rank(scope)) =
            rules::commands::parse(rules, &message.text)
        {
            use rules::commands::RankPeriod;
            let since = match scope.period {
                RankPeriod::Week => {
                    Some(today - Duration::days(i64::from(today.weekday().num_days_from_monday())))
                }
                RankPeriod::Month => today.with_day(1),
                RankPeriod::AllTime => None,
            };
            let chat = if scope.this_chat {
                message.chat_id.as_deref()
            } else {
                None
            };
            snapshot.leaderboard = points::leaderboard(conn, since, chat, 10)
                .await?
                .into_iter()
                .map(|row| LeaderboardEntry {
                    name: row.name.unwrap_or(row.user_id),
                    points: row.points,
                })
                .collect();
        }
        // The poll a ballot is for: only read for 投 N.
        if let Some(rules::commands::Command::Vote(_)) =
            rules::commands::parse(rules, &message.text)
        {
            snapshot.ballot = crate::store::polls::ballot_for(
                conn,
                message.chat_id.as_deref(),
                &message.sender,
                now,
            )
            .await?;
            if let Some(ballot) = &mut snapshot.ballot {
                ballot.in_segment =
                    member_of(conn, rules, ballot.segment.as_ref(), &message.sender, now).await?;
            }
        }
        snapshot.catalog_stock = redemptions::stock(conn).await?;
        let scope = message.chat_id.as_deref().unwrap_or(&message.sender);
        snapshot.autoreply_last_fired = chats::autoreply_last_fired(conn, scope).await?;
        if rules.moderation.enabled {
            snapshot.moderation = load_moderation(conn, rules, message, now).await?;
        }
        snapshot.lotteries =
            load_lotteries(conn, rules, message, snapshot.chat.as_ref(), now).await?;
    }
    if let EventKind::MessageReported(report) = &event.kind {
        if let Some(fingerprint) =
            moderate::stored_fingerprint(&rules.moderation, &report.quoted_text)
        {
            let history = &mut snapshot.moderation;
            history.reporter_reports_last_hour =
                moderation::reports_by_since(conn, &report.reporter, now - Duration::hours(1))
                    .await?;
            history.earlier_reporters =
                moderation::reporters_of(conn, &report.chat_id, fingerprint).await?;
            history.reported_author =
                moderation::author_of(conn, &report.chat_id, fingerprint).await?;
        }
    }
    Ok(snapshot)
}

/// The open lotteries whose keyword the message is, and the sender's facts
/// they look at; nothing (no reads beyond one existence check) otherwise.
async fn load_lotteries(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    message: &MessagePosted,
    chat: Option<&rules::ChatSnapshot>,
    now: DateTime<Utc>,
) -> anyhow::Result<rules::lottery::LotteryContext> {
    let keyword = message.text.trim();
    if keyword.is_empty() || !lottery::is_open_keyword(conn, keyword).await? {
        return Ok(Default::default());
    }
    let mut sender_chats = lottery::member_chats(conn, &message.sender).await?;
    if let Some(chat_id) = &message.chat_id {
        sender_chats.push(rules::lottery::ChatTarget {
            chat_id: chat_id.clone(),
            tags: chat.map(|c| c.tags.clone()).unwrap_or_default(),
        });
    }
    let mut open = lottery::open_by_keyword(conn, keyword, &message.sender).await?;
    for lottery in &mut open {
        let segment = lottery.eligibility.segment.as_ref();
        lottery.in_segment = member_of(conn, rules, segment, &message.sender, now).await?;
    }
    Ok(rules::lottery::LotteryContext {
        open,
        joined_at: lottery::joined_at(conn, &message.sender).await?,
        sender_chats,
    })
}

/// Points about to expire that the sender was not told about yet, only for
/// the replies that carry the notice (签到, 积分).
async fn load_expiry_notice(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    snapshot: &mut Snapshot,
    message: &MessagePosted,
    today: NaiveDate,
) -> anyhow::Result<()> {
    use rules::commands::Command;
    let doc = &rules.doc.points.expiry;
    if !doc.enabled()
        || !matches!(
            rules::commands::parse(rules, &message.text),
            Some(Command::CheckIn | Command::Points)
        )
    {
        return Ok(());
    }
    let entries = points::expiry_entries(conn, &message.sender).await?;
    let Some(upcoming) = rules::expiry::upcoming(doc, &entries, today) else {
        return Ok(());
    };
    if points::expiry_noticed(conn, &message.sender, &upcoming.period).await? {
        return Ok(());
    }
    if let Some(person) = snapshot.people.get_mut(&message.sender) {
        person.expiry_notice = Some(upcoming);
    }
    Ok(())
}

/// The sender's posts, live strikes and join time, for the moderation rules.
async fn load_moderation(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    message: &MessagePosted,
    now: DateTime<Utc>,
) -> anyhow::Result<moderate::ModerationSnapshot> {
    let config = &rules.moderation;
    Ok(moderate::ModerationSnapshot {
        recent_posts: moderation::recent_posts(
            conn,
            &message.sender,
            now - config.history_window(),
        )
        .await?,
        active_strikes: moderation::active_strikes(
            conn,
            &message.sender,
            now - config.strike_window,
        )
        .await?,
        joined_at: match &message.chat_id {
            Some(chat_id) => moderation::joined_at(conn, chat_id, &message.sender).await?,
            None => None,
        },
        posts_in_chat: match (&message.chat_id, &config.new_member) {
            (Some(chat_id), Some(rule)) => {
                moderation::count_posts_in_chat(conn, chat_id, &message.sender, rule.first_messages)
                    .await?
            }
            _ => 0,
        },
        ..moderate::ModerationSnapshot::default()
    })
}

async fn load_person(
    conn: &mut SqliteConnection,
    user_id: &str,
    today: NaiveDate,
) -> anyhow::Result<PersonSnapshot> {
    Ok(PersonSnapshot {
        user_id: user_id.to_string(),
        name: members::person_name(conn, user_id).await?,
        balance: points::balance(conn, user_id).await?,
        lifetime_points: points::lifetime_earned(conn, user_id).await?,
        // Streak bonuses stop growing long before a year; older days don't matter.
        checkin_days: checkins::days_since(conn, user_id, today - Duration::days(400)).await?,
        // The 补签 window is at most 31 days: two months back cover its months.
        makeup_days: checkins::makeup_days_since(conn, user_id, today - Duration::days(62)).await?,
        points_today: points::earned_on_day(conn, user_id, today).await?,
        redemptions_by_item: redemptions::count_by_item(conn, user_id).await?,
        badges: members::badges(conn, user_id).await?,
        seen_before: members::was_member_before(conn, user_id).await?,
        expiry_notice: None,
    })
}

/// What the honour board, 精华 and 有用 need: the first board's current period
/// for 荣誉榜, the quoted message (author, mark, 精华 count) for 加精, and the
/// quoted message with the giver's marks for 有用.
async fn load_honour(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    event: &Event,
    now: DateTime<Utc>,
    snapshot: &mut Snapshot,
) -> anyhow::Result<()> {
    use crate::store::honour;
    match &event.kind {
        EventKind::MessagePosted(message)
            if rules::commands::parse(rules, &message.text)
                == Some(rules::commands::Command::Honour) =>
        {
            let board = rules.doc.honour.boards.first().cloned().unwrap_or_default();
            let period = rules::honour::period_containing(board.period, rules.community_day(now));
            snapshot.honour = Some(honour::board_data(conn, &period).await?);
        }
        EventKind::ContentFeatured(featured) => {
            if let Some(post) = quoted_post(conn, rules, featured).await? {
                snapshot.featured = Some(featured_target(conn, rules, post, now).await?);
            }
        }
        EventKind::MarkedHelpful(mark) => {
            if let Some(post) = quoted_post(conn, rules, mark).await? {
                let today = rules.community_day(now);
                snapshot.helpful = Some(rules::ugc::HelpfulTarget {
                    author: load_person(conn, &post.author, today).await?,
                    already_marked: honour::helpful_marked_by(conn, &post.message_id, &mark.by)
                        .await?,
                    given_today: honour::helpful_given_on(conn, &mark.by, today).await?,
                    message_id: post.message_id,
                    chat_id: post.chat_id,
                });
            }
        }
        _ => {}
    }
    Ok(())
}

/// The remembered message a command quotes (`加精`, `有用`), found by its
/// text's fingerprint in the chat; `None` when the text is too short to
/// fingerprint or qunyun never saw the message.
async fn quoted_post(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    mark: &rules::event::QuotedMark,
) -> anyhow::Result<Option<crate::store::honour::PostRow>> {
    let Some(fingerprint) = moderate::stored_fingerprint(&rules.moderation, &mark.quoted_text)
    else {
        return Ok(None);
    };
    Ok(crate::store::honour::post_by_fingerprint(conn, &mark.chat_id, fingerprint).await?)
}

/// The 精华 target for a remembered message (also what the console marks).
pub async fn featured_target(
    conn: &mut SqliteConnection,
    rules: &RuleSet,
    post: crate::store::honour::PostRow,
    now: DateTime<Utc>,
) -> anyhow::Result<rules::ugc::FeaturedTarget> {
    let today = rules.community_day(now);
    Ok(rules::ugc::FeaturedTarget {
        author: load_person(conn, &post.author, today).await?,
        author_essence_count: crate::store::honour::essence_count(conn, &post.author).await?,
        already_marked: post.essence,
        message_id: post.message_id,
        chat_id: post.chat_id,
    })
}
