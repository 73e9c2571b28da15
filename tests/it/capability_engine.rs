//! Each chat's capability table against what the engine did, through the
//! served app and the simulator: for a customer group and for an internal
//! group with robot and smart bot, every feature's event is driven and the
//! outbox rows it produced are read back as a capability, which must equal
//! the row `rules::capabilities` announces for that chat.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use qunyun::clock::Clock;
use qunyun::rules::capabilities::{capability, Capability, Feature};
use qunyun::rules::ChatRoute;
use qunyun::sim::{
    ArchiveTextRequest, BotMentionRequest, JoinRequest, JoinVia, NewMember, SeedCustomerGroup,
    SeedGroupMember,
};
use qunyun::store::chats;
use qunyun::store::outbox::{self as outbox_store, OutboxRow, OutboxStatus};

use crate::helpers::{TestApp, TestConfig, APP, BOT};

const CUSTOMER: &str = "wrCAPS0000000000000000CUSTOMER";
const INTERNAL: &str = "wrCAPS0000000000000000INTERNAL";
const OWNER: &str = "yunying";
const ROBOT_KEY: &str = "robot-key-caps";
const INGEST_SECRET: &str = "caps-ingest-secret";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap()
}

/// The example rule set with moderation on: the first strike warns, the
/// second removes.
fn rules() -> String {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules.example.toml"))
            .unwrap();
    let rules = example
        .replace("app = \"main\"", &format!("app = \"{APP}\""))
        .replace(
            "[moderation]\nenabled = false",
            "[moderation]\nenabled = true",
        )
        .replace(
            "strikes = 2\nactions = [\"warn\", \"notify\"]",
            "strikes = 2\nactions = [\"remove\"]",
        );
    assert!(rules.contains("[moderation]\nenabled = true"));
    assert!(rules.contains("strikes = 2\nactions = [\"remove\"]"));
    rules
}

struct Harness {
    app: TestApp,
}

impl Harness {
    async fn start() -> Harness {
        let app = TestApp::start(
            TestConfig::new()
                .starting_at(start())
                .with_api_timeout(StdDuration::from_secs(5))
                .with_ingest_secret(INGEST_SECRET),
        )
        .await;
        let sim = app.sim();
        sim.set_callbacks(app.callback_targets().with_ingest_secret(INGEST_SECRET));
        sim.add_directory_members([OWNER, "zhangsan"]);
        sim.add_robot(ROBOT_KEY, INTERNAL);
        sim.add_customer_group(SeedCustomerGroup {
            chat_id: CUSTOMER.into(),
            name: "好物分享群".into(),
            owner: OWNER.into(),
            notice: String::new(),
            status: 0,
            create_time: start().timestamp() - 86_400,
            admins: vec![],
            members: vec![SeedGroupMember::new(OWNER), SeedGroupMember::new("wmA")],
        });
        let member_version = sim.customer_group(CUSTOMER).unwrap().member_version;
        let ops = qunyun::ops::Ops::over(app.pool.clone());
        let actor = qunyun::ops::Actor::cli(Some("test"));
        qunyun::ops::rules::apply(&ops, &actor, start(), &rules())
            .await
            .unwrap();
        let mut conn = app.pool.acquire().await.unwrap();
        for (chat_id, route, version) in [
            (CUSTOMER, ChatRoute::CustomerGroup, Some(member_version)),
            (
                INTERNAL,
                ChatRoute::InternalGroup {
                    robot_key: Some(ROBOT_KEY.into()),
                    smart_bot: Some(BOT.into()),
                },
                None,
            ),
        ] {
            chats::upsert_chat(
                &mut conn,
                &chats::NewChat {
                    chat_id: chat_id.into(),
                    name: "群".into(),
                    route,
                    owner: Some(OWNER.into()),
                    admins: vec![],
                    tags: vec![],
                    member_version: version,
                },
                start(),
            )
            .await
            .unwrap();
        }
        drop(conn);
        Harness { app }
    }

    /// The capability the table announces for `chat_id`.
    async fn announced(&self, chat_id: &str, feature: Feature) -> Capability {
        let mut conn = self.app.pool.acquire().await.unwrap();
        let chat = chats::get_chat(&mut conn, chat_id).await.unwrap().unwrap();
        capability(&chat, feature)
    }

    async fn rows(&self) -> Vec<OutboxRow> {
        let mut conn = self.app.pool.acquire().await.unwrap();
        outbox_store::list(&mut conn, None).await.unwrap()
    }

    /// Pipeline passes, with the clock moved past the welcome window, then
    /// the sender until nothing is due.
    async fn process(&self) {
        self.app.run_pipeline().await;
        self.app.clock.advance(Duration::seconds(30));
        self.app.run_pipeline().await;
        for _ in 0..50 {
            self.app.send_once().await;
            let mut conn = self.app.pool.acquire().await.unwrap();
            let open: i64 = outbox_store::count_by_status(&mut conn)
                .await
                .unwrap()
                .iter()
                .filter(|(s, _)| matches!(s, OutboxStatus::Pending | OutboxStatus::InFlight))
                .map(|(_, n)| *n)
                .sum();
            if open == 0 {
                return;
            }
            self.app.clock.advance(Duration::seconds(61));
        }
        panic!("outbox did not drain");
    }

    /// Runs `drive`, processes, and returns the rows it added whose key
    /// starts with one of `prefixes`.
    async fn rows_after(
        &self,
        prefixes: &[&str],
        drive: impl std::future::Future<Output = ()>,
    ) -> Vec<OutboxRow> {
        let before: Vec<i64> = self.rows().await.iter().map(|r| r.id).collect();
        drive.await;
        self.process().await;
        self.rows()
            .await
            .into_iter()
            .filter(|r| !before.contains(&r.id))
            .filter(|r| prefixes.iter().any(|p| r.idempotency_key.starts_with(p)))
            .collect()
    }

    async fn say_in_customer_group(&self, user: &str, text: &str) {
        let outcome = self
            .app
            .sim()
            .drive_archive_text(ArchiveTextRequest {
                chat_id: CUSTOMER.into(),
                from: user.into(),
                content: text.into(),
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
    }

    async fn mention_in_internal_group(&self, user: &str, text: &str) {
        let outcome = self
            .app
            .sim()
            .drive_bot_mention(BotMentionRequest {
                bot: Some(BOT.into()),
                chat_id: Some(INTERNAL.into()),
                from: user.into(),
                content: text.into(),
                quote: None,
            })
            .await
            .unwrap();
        assert_eq!(outcome.status, Some(200));
    }

    async fn broadcast(&self, chat_id: &str) {
        let ops = qunyun::ops::Ops::over(self.app.pool.clone());
        let actor = qunyun::ops::Actor::cli(Some("test"));
        let input = qunyun::ops::broadcast::BroadcastInput {
            chats: vec![chat_id.into()],
            text: "周末活动".into(),
            ..Default::default()
        };
        let now = self.app.clock.now();
        qunyun::ops::broadcast::send(&ops, &actor, now, &input)
            .await
            .unwrap();
    }
}

/// What the engine's rows for one feature amount to, in the table's terms.
fn observed(rows: &[OutboxRow]) -> Capability {
    assert_eq!(rows.len(), 1, "one row per feature event: {rows:#?}");
    let row = &rows[0];
    let key = row.idempotency_key.as_str();
    if row.status == OutboxStatus::Skipped {
        return Capability::NotPossible {
            reason: row.last_error.clone().unwrap_or_default(),
        };
    }
    // Whatever was not skipped reached WeCom: sent, or with the owner to confirm.
    assert!(
        matches!(
            row.status,
            OutboxStatus::Sent | OutboxStatus::AwaitingConfirmation
        ),
        "{row:#?}"
    );
    match row.route.as_str() {
        "customer_group_mass" => Capability::OwnerConfirmation {
            owner: row.target.clone(),
        },
        "member" if key.starts_with("owner_digest:welcome:") => {
            Capability::MaterialAndOwnerDigest {
                owner: Some(row.target.clone()),
            }
        }
        "member" if key.starts_with("moderation:task:") => Capability::TaskForPerson,
        route => Capability::Route {
            route: route.to_owned(),
        },
    }
}

#[tokio::test]
async fn every_capability_row_is_what_the_engine_does_in_a_customer_group() {
    let h = Harness::start().await;
    let mut checked = Vec::new();

    let welcome = h
        .rows_after(&["owner_digest:welcome:", "welcome:"], async {
            let joined = h
                .app
                .sim()
                .drive_join(JoinRequest {
                    app: Some(APP.into()),
                    chat_id: CUSTOMER.into(),
                    members: vec![NewMember::new("wmNEW")],
                    via: JoinVia::QrCode,
                    lose_callback: false,
                })
                .await
                .unwrap();
            assert_eq!(joined.status, Some(200));
        })
        .await;
    checked.push((Feature::Welcome, observed(&welcome)));

    let checkin = h
        .rows_after(&["reply:"], h.say_in_customer_group("wmA", "签到"))
        .await;
    checked.push((Feature::CheckinReply, observed(&checkin)));

    let faq = h
        .rows_after(&["reply:"], h.say_in_customer_group("wmB", "什么时候发货"))
        .await;
    checked.push((Feature::AutoReply, observed(&faq)));

    let push = h.rows_after(&["broadcast:"], h.broadcast(CUSTOMER)).await;
    checked.push((Feature::Push, observed(&push)));

    let warn = h
        .rows_after(
            &["moderation:warn:"],
            h.say_in_customer_group("wmC", "加微信领红包"),
        )
        .await;
    checked.push((Feature::ModerationWarning, observed(&warn)));

    let remove = h
        .rows_after(
            &["moderation:remove:", "moderation:task:"],
            h.say_in_customer_group("wmC", "加微信领红包"),
        )
        .await;
    checked.push((Feature::ModerationRemoval, observed(&remove)));

    for (feature, did) in checked {
        assert_eq!(
            h.announced(CUSTOMER, feature).await,
            did,
            "{}: the table and the engine disagree",
            feature.name()
        );
    }
}

#[tokio::test]
async fn every_capability_row_is_what_the_engine_does_in_an_internal_group() {
    let h = Harness::start().await;
    let mut checked = Vec::new();

    // WeCom reports no joins in internal groups: the simulator refuses to
    // drive one, so nothing can welcome there.
    let join = h
        .app
        .sim()
        .drive_join(JoinRequest {
            app: Some(APP.into()),
            chat_id: INTERNAL.into(),
            members: vec![NewMember::new("zhangsan")],
            via: JoinVia::QrCode,
            lose_callback: false,
        })
        .await;
    assert!(join.is_err(), "{join:?}");
    assert!(
        matches!(
            h.announced(INTERNAL, Feature::Welcome).await,
            Capability::NotPossible { .. }
        ),
        "{:?}",
        h.announced(INTERNAL, Feature::Welcome).await
    );

    let checkin = h
        .rows_after(&["reply:"], h.mention_in_internal_group("zhangsan", "签到"))
        .await;
    checked.push((Feature::CheckinReply, observed(&checkin)));

    let faq = h
        .rows_after(
            &["reply:"],
            h.mention_in_internal_group("lisi", "什么时候发货"),
        )
        .await;
    checked.push((Feature::AutoReply, observed(&faq)));

    let push = h.rows_after(&["broadcast:"], h.broadcast(INTERNAL)).await;
    checked.push((Feature::Push, observed(&push)));

    let warn = h
        .rows_after(
            &["moderation:warn:"],
            h.mention_in_internal_group("wangwu", "加微信领红包"),
        )
        .await;
    checked.push((Feature::ModerationWarning, observed(&warn)));

    let remove = h
        .rows_after(
            &["moderation:remove:", "moderation:task:"],
            h.mention_in_internal_group("wangwu", "加微信领红包"),
        )
        .await;
    checked.push((Feature::ModerationRemoval, observed(&remove)));

    for (feature, did) in checked {
        assert_eq!(
            h.announced(INTERNAL, feature).await,
            did,
            "{}: the table and the engine disagree",
            feature.name()
        );
    }
}
