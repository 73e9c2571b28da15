//! Scenario tests for schedules: TOML in, validated schedule, fire times across
//! timezones and DST, catch-up, rendering. Time is always injected.

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
struct RuleSet {
    schedules: Vec<ScheduleDef>,
}

fn parse(toml_text: &str) -> Vec<ScheduleDef> {
    toml::from_str::<RuleSet>(toml_text)
        .expect("test TOML parses")
        .schedules
}

fn shanghai() -> Tz {
    chrono_tz::Asia::Shanghai
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test timestamp parses")
        .with_timezone(&Utc)
}

fn def(cron: &str, timezone: &str) -> ScheduleDef {
    ScheduleDef {
        name: "test".to_owned(),
        cron: cron.to_owned(),
        timezone: Some(timezone.to_owned()),
        start: None,
        end: None,
        quiet_hours: None,
        allow_quiet_hours: false,
        targets: TargetsDef {
            all_chats: true,
            ..TargetsDef::default()
        },
        content: Some(ContentDef::Text {
            body: "早上好 {{ chat.name }}".to_owned(),
        }),
        variants: Vec::new(),
        enabled: true,
    }
}

fn valid(def: &ScheduleDef) -> ValidSchedule {
    match validate(def, &ValidationContext::for_schedule(shanghai(), 0)) {
        Ok(schedule) => schedule,
        Err(errors) => panic!("expected a valid schedule, got {errors:?}"),
    }
}

fn schedule(cron: &str, timezone: &str) -> ValidSchedule {
    valid(&def(cron, timezone))
}

fn rfc3339(fires: &[DateTime<Utc>]) -> Vec<String> {
    fires.iter().map(|fire| fire.to_rfc3339()).collect()
}

fn local(fires: &[DateTime<Utc>], tz: Tz) -> Vec<String> {
    fires
        .iter()
        .map(|fire| fire.with_timezone(&tz).to_rfc3339())
        .collect()
}

/// The next `count` fires after `from`, as local RFC 3339 times in `tz`.
fn local_next(job: &ValidSchedule, from: &str, count: usize, tz: Tz) -> Vec<String> {
    local(&next_fires(job, utc(from), count), tz)
}

/// The fires in `(from, to]`, as local RFC 3339 times in `tz`.
fn local_between(job: &ValidSchedule, from: &str, to: &str, tz: Tz) -> Vec<String> {
    local(&fires_between(job, utc(from), utc(to)), tz)
}

// ---------------------------------------------------------------- definitions

#[test]
fn full_toml_rule_set_parses_and_validates() {
    let defs = parse(
        r#"
        [[schedules]]
        name = "morning-tip"
        cron = "0 30 9 * * Mon-Fri"
        timezone = "Asia/Shanghai"
        start = 2025-03-01
        end = "2025-03-31"
        quiet_hours = "22:00-08:00"
        allow_quiet_hours = false
        enabled = true
        [schedules.targets]
        chat_tags = ["vip"]
        chat_ids = ["wrOgQhDgAAcwMTB7YmDkbeBsgT_AAAAA"]
        [schedules.content]
        kind = "markdown"
        body = "**{{ chat.name }}** {{ date }} {{ weekday }}，还剩 {{ days_left }} 天"

        [[schedules]]
        name = "weekly-leaderboard"
        cron = "0 0 20 * * Sun"
        [schedules.targets]
        all_chats = true
        member_departments = [2]
        [[schedules.variants]]
        name = "plain"
        weight = 70
        content = { kind = "text", body = "本周排行：{% for row in leaderboard %}{{ row.rank }}. {{ row.name }} {{ row.points }} {% endfor %}" }
        [[schedules.variants]]
        name = "news"
        weight = 30
        content = { kind = "news", title = "本周排行 {{ date }}", description = "快来看看", url = "https://shop.example.com/rank", picurl = "https://shop.example.com/rank.png" }
        "#,
    );
    let schedules = validate_all(&defs, shanghai()).expect("rule set is valid");
    assert_eq!(schedules.len(), 2);

    let tip = &schedules[0];
    assert_eq!(tip.name(), "morning-tip");
    assert_eq!(tip.starts_at(), Some(utc("2025-02-28T16:00:00Z")));
    // Through the end of March 31 in Shanghai.
    assert_eq!(tip.ends_before(), Some(utc("2025-03-31T16:00:00Z")));
    assert_eq!(
        tip.quiet_hours().map(|q| q.to_string()).as_deref(),
        Some("22:00-08:00")
    );

    let board = &schedules[1];
    assert_eq!(
        board.timezone(),
        shanghai(),
        "defaults to the community's timezone"
    );
    assert_eq!(board.variants().len(), 2);
    assert!(board.targets().members().is_some());
}

#[test]
fn definitions_survive_an_export_and_import_round_trip() {
    #[derive(Debug, Deserialize, serde::Serialize)]
    struct Export {
        schedules: Vec<ScheduleDef>,
    }
    let original = parse(
        r#"
        [[schedules]]
        name = "tip"
        cron = "0 30 9 * * Mon-Fri"
        start = 2025-03-01
        end = "2025-03-31T18:00:00"
        targets = { chat_tags = ["vip"], member_tags = [3] }
        [[schedules.variants]]
        name = "a"
        weight = 2
        content = { kind = "image", url = "https://a.example/x.png" }
        [[schedules.variants]]
        name = "b"
        weight = 1
        content = { kind = "news", title = "{{ date }}", url = "https://a.example/" }
        "#,
    );
    let exported = toml::to_string(&Export {
        schedules: original.clone(),
    })
    .expect("serialises");
    assert_eq!(parse(&exported), original, "exported as:\n{exported}");
    assert_eq!(original[0].start.as_deref(), Some("2025-03-01"));
}

#[test]
fn field_errors_serialise_with_stable_codes() {
    let errors = validate_all(&parse(&with(r#"cron = "nope""#)), shanghai()).unwrap_err();
    let json = serde_json::to_value(&errors).unwrap();
    assert_eq!(json[0]["path"], "schedules[0].cron");
    assert_eq!(json[0]["code"], "bad_cron");
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let base = r#"
        [[schedules]]
        name = "x"
        cron = "0 0 9 * * *"
        targets = { all_chats = true }
    "#;
    for extra in [
        "colour = 1\ncontent = { kind = \"text\", body = \"hi\" }",
        "content = { kind = \"text\", body = \"hi\", colour = \"red\" }",
        "content = { kind = \"text\", body = \"hi\" }\n[schedules.targets]\nall = true",
        "content = { kind = \"video\", body = \"hi\" }",
    ] {
        let text = format!("{base}{extra}");
        assert!(
            toml::from_str::<RuleSet>(&text).is_err(),
            "should refuse:\n{text}"
        );
    }
    assert!(toml::from_str::<RuleSet>(&format!(
        "{base}content = {{ kind = \"text\", body = \"hi\" }}"
    ))
    .is_ok());
}

// ---------------------------------------------------------------- fire times

#[test]
fn shanghai_daily_fires_exactly_on_cron_boundaries() {
    let tip = schedule("0 30 9 * * *", "Asia/Shanghai");
    let fires = next_fires(&tip, utc("2025-01-01T00:00:00Z"), 3);
    assert_eq!(
        rfc3339(&fires),
        [
            "2025-01-01T01:30:00+00:00",
            "2025-01-02T01:30:00+00:00",
            "2025-01-03T01:30:00+00:00"
        ]
    );
    // `after` is exclusive: a second before a fire includes it, the fire itself does not.
    let on_boundary = utc("2025-01-01T01:30:00Z");
    assert_eq!(
        next_fires(&tip, on_boundary - Duration::seconds(1), 1),
        [on_boundary]
    );
    assert_eq!(
        next_fires(&tip, on_boundary, 1),
        [on_boundary + Duration::days(1)]
    );
}

#[test]
fn shanghai_seconds_field_and_weekdays_are_honoured() {
    let tick = schedule("15 0 8 * * Mon-Fri", "Asia/Shanghai");
    // 2025-01-03 is a Friday; the next fire after it is Monday the 6th.
    assert_eq!(
        local_next(&tick, "2025-01-03T00:00:16Z", 2, shanghai()),
        ["2025-01-06T08:00:15+08:00", "2025-01-07T08:00:15+08:00"]
    );
}

/// Why we do not hand `DateTime<Tz>` to the `cron` crate: it skips the 02:30
/// that does not exist in March and fires twice at the 01:30 that happens twice
/// in November. If this starts failing, the crate changed; revisit `fires.rs`.
#[test]
fn cron_crate_alone_gets_new_york_dst_wrong() {
    use std::str::FromStr;
    let ny = chrono_tz::America::New_York;
    let daily_0230 = cron::Schedule::from_str("0 30 2 * * *").unwrap();
    let start = ny.with_ymd_and_hms(2025, 3, 8, 12, 0, 0).unwrap();
    let days: Vec<u32> = daily_0230
        .after(&start)
        .take(2)
        .map(|fire| chrono::Datelike::day(&fire))
        .collect();
    assert_eq!(days, [10, 11], "March 9 is skipped by the crate");

    let daily_0130 = cron::Schedule::from_str("0 30 1 * * *").unwrap();
    let start = ny.with_ymd_and_hms(2025, 11, 1, 12, 0, 0).unwrap();
    let fires: Vec<_> = daily_0130.after(&start).take(2).collect();
    assert_eq!(
        chrono::Datelike::day(&fires[0]),
        chrono::Datelike::day(&fires[1]),
        "November 2 fires twice with the crate"
    );
}

#[test]
fn new_york_daily_job_in_spring_gap_fires_once_an_hour_late() {
    let ny = chrono_tz::America::New_York;
    let job = schedule("0 30 2 * * *", "America/New_York");
    assert_eq!(
        local_next(&job, "2025-03-08T00:00:00Z", 3, ny),
        [
            "2025-03-08T02:30:00-05:00",
            // 02:30 does not exist on March 9: shifted by the one-hour gap.
            "2025-03-09T03:30:00-04:00",
            "2025-03-10T02:30:00-04:00"
        ]
    );
}

#[test]
fn new_york_daily_job_in_repeated_hour_fires_once_at_first_occurrence() {
    let ny = chrono_tz::America::New_York;
    let job = schedule("0 30 1 * * *", "America/New_York");
    assert_eq!(
        local_next(&job, "2025-11-01T00:00:00Z", 3, ny),
        [
            "2025-11-01T01:30:00-04:00",
            "2025-11-02T01:30:00-04:00",
            "2025-11-03T01:30:00-05:00"
        ]
    );
    // Asking from between the two 01:30s does not produce the second one.
    assert_eq!(
        local_next(&job, "2025-11-02T05:30:00Z", 1, ny),
        ["2025-11-03T01:30:00-05:00"]
    );
}

#[test]
fn new_york_daily_jobs_fire_once_every_day_of_the_year() {
    // Every minute of the night, pinned to hours 0-3: each must fire every day.
    for cron in [
        "0 0 0 * * *",
        "0 30 1 * * *",
        "0 0 2 * * *",
        "0 59 2 * * *",
        "0 0 3 * * *",
    ] {
        let job = schedule(cron, "America/New_York");
        let fires = fires_between(
            &job,
            utc("2025-01-01T00:00:00Z"),
            utc("2026-01-01T00:00:00Z"),
        );
        assert_eq!(fires.len(), 365, "{cron}");
        for pair in fires.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                (Duration::hours(23)..=Duration::hours(25)).contains(&gap),
                "{cron}: {} then {}",
                pair[0],
                pair[1]
            );
        }
    }
}

#[test]
fn new_york_hourly_jobs_fire_once_per_real_hour_through_both_transitions() {
    for (cron, step) in [
        ("0 0 * * * *", Duration::hours(1)),
        ("0 30 * * * *", Duration::hours(1)),
        ("0 */15 * * * *", Duration::minutes(15)),
    ] {
        let job = schedule(cron, "America/New_York");
        for (from, to) in [
            ("2025-03-09T03:00:00Z", "2025-03-09T11:00:00Z"),
            ("2025-11-02T02:00:00Z", "2025-11-02T10:00:00Z"),
        ] {
            let fires = fires_between(&job, utc(from), utc(to));
            let expected_count =
                ((utc(to) - utc(from)).num_seconds() / step.num_seconds()) as usize;
            assert_eq!(fires.len(), expected_count, "{cron} from {from}");
            for pair in fires.windows(2) {
                assert_eq!(
                    pair[1] - pair[0],
                    step,
                    "{cron}: {} then {}",
                    pair[0],
                    pair[1]
                );
            }
        }
    }
}

#[test]
fn new_york_hourly_job_shows_the_wall_clock_hours() {
    let ny = chrono_tz::America::New_York;
    let hourly = schedule("0 0 * * * *", "America/New_York");
    let spring = next_fires(&hourly, utc("2025-03-09T05:30:00Z"), 3);
    // 02:00 never appears on the wall clock; one real hour passes between fires.
    assert_eq!(
        local(&spring, ny),
        [
            "2025-03-09T01:00:00-05:00",
            "2025-03-09T03:00:00-04:00",
            "2025-03-09T04:00:00-04:00"
        ]
    );
    let autumn = next_fires(&hourly, utc("2025-11-02T04:30:00Z"), 3);
    // 01:00 appears twice on the wall clock, an hour apart: it fires at both.
    assert_eq!(
        local(&autumn, ny),
        [
            "2025-11-02T01:00:00-04:00",
            "2025-11-02T01:00:00-05:00",
            "2025-11-02T02:00:00-05:00"
        ]
    );
}

#[test]
fn pinned_slots_that_collide_after_the_gap_fire_once() {
    let ny = chrono_tz::America::New_York;
    // 02:00 and 02:30 shift onto 03:00 and 03:30, which are slots themselves.
    let job = schedule("0 0,30 2,3 * * *", "America/New_York");
    assert_eq!(
        local_between(&job, "2025-03-09T00:00:00Z", "2025-03-09T12:00:00Z", ny),
        ["2025-03-09T03:00:00-04:00", "2025-03-09T03:30:00-04:00"]
    );
}

#[test]
fn half_hour_dst_in_lord_howe_keeps_fires_ordered_and_unique() {
    let lord_howe = chrono_tz::Australia::Lord_Howe;
    // Clocks go from 02:00 to 02:30 on 2025-10-05: 02:00-02:20 shift by 30
    // minutes onto 02:30-02:50, which also exist as their own slots.
    let job = schedule("0 */10 2 * * *", "Australia/Lord_Howe");
    assert_eq!(
        local_between(
            &job,
            "2025-10-04T12:00:00Z",
            "2025-10-05T12:00:00Z",
            lord_howe
        ),
        [
            "2025-10-05T02:30:00+11:00",
            "2025-10-05T02:40:00+11:00",
            "2025-10-05T02:50:00+11:00"
        ]
    );
    // 02:20 shifts to 02:50, after the real 02:30 that comes later on the
    // wall clock: both fire, in time order.
    let job = schedule("0 20,30 2 * * *", "Australia/Lord_Howe");
    assert_eq!(
        local_between(
            &job,
            "2025-10-04T12:00:00Z",
            "2025-10-05T12:00:00Z",
            lord_howe
        ),
        ["2025-10-05T02:30:00+11:00", "2025-10-05T02:50:00+11:00"]
    );
}

#[test]
fn asking_again_from_any_fire_continues_the_same_sequence() {
    for (cron, tz, from) in [
        ("0 0 * * * *", "America/New_York", "2025-11-02T03:00:00Z"),
        ("0 */20 * * * *", "America/New_York", "2025-11-02T04:10:00Z"),
        (
            "0 */20 1-3 * * *",
            "America/New_York",
            "2025-03-09T05:00:00Z",
        ),
        (
            "0 */10 2 * * *",
            "Australia/Lord_Howe",
            "2025-10-04T14:00:00Z",
        ),
        ("0 0 9 * * *", "Pacific/Apia", "2011-12-28T00:00:00Z"),
    ] {
        let job = schedule(cron, tz);
        let all = next_fires(&job, utc(from), 12);
        for split in 1..all.len() {
            let resumed = next_fires(&job, all[split - 1], all.len() - split);
            assert_eq!(
                resumed,
                all[split..],
                "{cron} in {tz}, resumed after {split}"
            );
        }
    }
}

#[test]
fn samoa_skipping_a_whole_day_still_fires_once_per_instant() {
    // Samoa jumped from 2011-12-29 24:00 to 2011-12-31 00:00. The 09:00 slot on
    // the missing 30th lands on the 31st's 09:00, which fires once.
    let apia = chrono_tz::Pacific::Apia;
    let job = schedule("0 0 9 * * *", "Pacific/Apia");
    assert_eq!(
        local_next(&job, "2011-12-28T00:00:00Z", 4, apia),
        [
            "2011-12-28T09:00:00-10:00",
            "2011-12-29T09:00:00-10:00",
            "2011-12-31T09:00:00+14:00",
            "2012-01-01T09:00:00+14:00"
        ]
    );
}

/// The first ten fires from 2025-01-01 (Shanghai time) of a Shanghai
/// campaign running from `start` to `end`.
fn campaign_fires(cron: &str, start: &str, end: &str) -> Vec<String> {
    let mut campaign = def(cron, "Asia/Shanghai");
    campaign.start = Some(start.to_owned());
    campaign.end = Some(end.to_owned());
    local_next(&valid(&campaign), "2025-01-01T00:00:00Z", 10, shanghai())
}

#[test]
fn start_and_end_dates_bound_the_fires_inclusively() {
    assert_eq!(
        campaign_fires("0 0 10 * * *", "2025-05-01", "2025-05-03"),
        [
            "2025-05-01T10:00:00+08:00",
            "2025-05-02T10:00:00+08:00",
            "2025-05-03T10:00:00+08:00"
        ]
    );
}

#[test]
fn start_and_end_datetimes_are_inclusive_instants() {
    assert_eq!(
        campaign_fires(
            "0 0 * * * *",
            "2025-05-01T10:00:00",
            "2025-05-01T12:00:00+08:00"
        ),
        [
            "2025-05-01T10:00:00+08:00",
            "2025-05-01T11:00:00+08:00",
            "2025-05-01T12:00:00+08:00"
        ]
    );
}

#[test]
fn fires_between_excludes_from_and_includes_to() {
    let job = schedule("0 0 * * * *", "Asia/Shanghai");
    let fires = fires_between(
        &job,
        utc("2025-01-01T01:00:00Z"),
        utc("2025-01-01T03:00:00Z"),
    );
    assert_eq!(
        rfc3339(&fires),
        ["2025-01-01T02:00:00+00:00", "2025-01-01T03:00:00+00:00"]
    );
    assert!(fires_between(
        &job,
        utc("2025-01-01T03:00:00Z"),
        utc("2025-01-01T01:00:00Z")
    )
    .is_empty());
}

#[test]
fn huge_windows_are_capped() {
    let every_second = schedule("* * * * * *", "Asia/Shanghai");
    let fires = fires_between(
        &every_second,
        utc("2025-01-01T00:00:00Z"),
        utc("2025-02-01T00:00:00Z"),
    );
    assert_eq!(fires.len(), MAX_FIRES_PER_QUERY);
}

#[test]
fn cli_lists_fire_times_in_the_requested_timezone() {
    let fires = next_fire_times_for_cli(
        "0 30 9 * * *",
        "Asia/Shanghai",
        utc("2025-01-01T02:00:00Z"),
        2,
    )
    .expect("valid input");
    let lines: Vec<String> = fires.iter().map(|fire| fire.to_rfc3339()).collect();
    assert_eq!(
        lines,
        ["2025-01-02T09:30:00+08:00", "2025-01-03T09:30:00+08:00"]
    );

    assert_eq!(
        next_fire_times_for_cli(
            "0 30 9 * * *",
            "Mars/Olympus",
            utc("2025-01-01T00:00:00Z"),
            1
        ),
        Err(ScheduleError::UnknownTimezone {
            name: "Mars/Olympus".to_owned()
        })
    );
    let five_fields = next_fire_times_for_cli("30 9 * * *", "UTC", utc("2025-01-01T00:00:00Z"), 1);
    match five_fields {
        Err(ScheduleError::BadCron { reason }) => {
            assert!(
                reason.contains("\"0 30 9 * * *\""),
                "hint missing: {reason}"
            )
        }
        other => panic!("expected BadCron, got {other:?}"),
    }
}

#[test]
fn times_outside_the_supported_years_yield_nothing_rather_than_panic() {
    let job = schedule("0 0 * * * *", "Asia/Shanghai");
    assert!(next_fires(&job, DateTime::<Utc>::MAX_UTC, 3).is_empty());
    assert!(next_fires(&job, utc("2100-12-31T23:00:00Z"), 3).len() <= 1);
    assert_eq!(next_fires(&job, DateTime::<Utc>::MIN_UTC, 1).len(), 0);
    assert!(
        fires_between(&job, DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC).len()
            <= MAX_FIRES_PER_QUERY
    );
}

// ---------------------------------------------------------------- quiet hours

#[test]
fn quiet_hours_wrap_midnight_on_the_schedules_clock() {
    let mut quiet = def("0 0 12 * * *", "Asia/Shanghai");
    quiet.quiet_hours = Some("22:00-08:00".to_owned());
    let quiet = valid(&quiet);
    assert!(
        in_quiet_hours(&quiet, utc("2025-01-01T14:00:00Z")),
        "22:00 Shanghai"
    );
    assert!(
        in_quiet_hours(&quiet, utc("2025-01-01T18:00:00Z")),
        "02:00 Shanghai"
    );
    assert!(
        in_quiet_hours(&quiet, utc("2025-01-01T23:59:59Z")),
        "07:59:59 Shanghai"
    );
    assert!(
        !in_quiet_hours(&quiet, utc("2025-01-02T00:00:00Z")),
        "08:00 Shanghai"
    );
    assert!(
        !in_quiet_hours(&quiet, utc("2025-01-01T13:59:59Z")),
        "21:59:59 Shanghai"
    );
    assert!(suppressed_by_quiet_hours(
        &quiet,
        utc("2025-01-01T14:00:00Z")
    ));

    let no_window = schedule("0 0 12 * * *", "Asia/Shanghai");
    assert!(!in_quiet_hours(&no_window, utc("2025-01-01T18:00:00Z")));
}

#[test]
fn dense_schedules_are_not_mistaken_for_always_quiet() {
    // The first fires after the epoch are all inside 00:00-12:00 UTC, but
    // plenty of later ones are not.
    for cron in ["* * * * * *", "0 */5 * * * *", "0 0 11,13 * * *"] {
        let mut dense = def(cron, "UTC");
        dense.quiet_hours = Some("00:00-12:00".to_owned());
        valid(&dense);
    }
    let mut late = def("0 0 23 * * *", "UTC");
    late.quiet_hours = Some("22:00-08:00".to_owned());
    let errors = validate(&late, &ValidationContext::for_schedule(shanghai(), 4)).unwrap_err();
    assert_eq!(errors[0].path, "schedules[4].quiet_hours");
    assert_eq!(errors[0].code, FieldErrorCode::AlwaysQuiet);
}

#[test]
fn allow_quiet_hours_lets_a_push_through() {
    let mut night = def("0 0 23 * * *", "Asia/Shanghai");
    night.quiet_hours = Some("22:00-08:00".to_owned());
    night.allow_quiet_hours = true;
    let night = valid(&night);
    let fire = utc("2025-01-01T15:00:00Z");
    assert!(in_quiet_hours(&night, fire));
    assert!(!suppressed_by_quiet_hours(&night, fire));
}

// ---------------------------------------------------------------- catch-up

#[test]
fn after_downtime_beyond_grace_every_fire_is_missed_and_none_sent() {
    let daily = schedule("0 0 9 * * *", "Asia/Shanghai");
    // Down from Jan 1 00:00 to Jan 4 11:00 Shanghai; grace 10 minutes.
    let plan = plan_catch_up(
        &daily,
        utc("2024-12-31T16:00:00Z"),
        utc("2025-01-04T03:00:00Z"),
        Duration::minutes(10),
    );
    assert_eq!(plan.fire, None);
    assert_eq!(
        local(&plan.missed, shanghai()),
        [
            "2025-01-01T09:00:00+08:00",
            "2025-01-02T09:00:00+08:00",
            "2025-01-03T09:00:00+08:00",
            "2025-01-04T09:00:00+08:00"
        ]
    );
}

#[test]
fn after_downtime_the_latest_fire_within_grace_is_sent_once() {
    let daily = schedule("0 0 9 * * *", "Asia/Shanghai");
    let plan = plan_catch_up(
        &daily,
        utc("2024-12-31T16:00:00Z"),
        utc("2025-01-04T01:05:00Z"),
        Duration::minutes(10),
    );
    assert_eq!(plan.fire, Some(utc("2025-01-04T01:00:00Z")));
    assert_eq!(plan.missed.len(), 3);
    assert!(plan.quiet.is_empty());
}

#[test]
fn a_day_of_missed_minutely_fires_never_becomes_a_burst() {
    let minutely = schedule("0 * * * * *", "Asia/Shanghai");
    let now = utc("2025-01-02T00:00:30Z");
    let plan = plan_catch_up(
        &minutely,
        utc("2025-01-01T00:00:30Z"),
        now,
        Duration::minutes(5),
    );
    assert_eq!(
        plan.fire,
        Some(utc("2025-01-02T00:00:00Z")),
        "one push, the latest"
    );
    assert_eq!(plan.missed.len(), 24 * 60 - 1);
    assert!(!plan.missed.contains(&utc("2025-01-02T00:00:00Z")));
}

#[test]
fn on_time_ticks_send_the_fire_and_miss_nothing() {
    let hourly = schedule("0 0 * * * *", "Asia/Shanghai");
    let plan = plan_catch_up(
        &hourly,
        utc("2025-01-01T00:59:58Z"),
        utc("2025-01-01T01:00:01Z"),
        Duration::minutes(5),
    );
    assert_eq!(
        plan,
        CatchUp {
            fire: Some(utc("2025-01-01T01:00:00Z")),
            missed: Vec::new(),
            quiet: Vec::new(),
        }
    );
    let idle = plan_catch_up(
        &hourly,
        utc("2025-01-01T01:00:01Z"),
        utc("2025-01-01T01:00:05Z"),
        Duration::minutes(5),
    );
    assert_eq!(idle, CatchUp::default());
}

#[test]
fn catch_up_holds_back_quiet_fires_and_ignores_disabled_schedules() {
    let mut hourly = def("0 0 * * * *", "Asia/Shanghai");
    hourly.quiet_hours = Some("22:00-08:00".to_owned());
    let quiet_hourly = valid(&hourly);
    // 21:00 and 22:00 Shanghai are due; 22:00 is quiet.
    let plan = plan_catch_up(
        &quiet_hourly,
        utc("2025-01-01T12:30:00Z"),
        utc("2025-01-01T14:01:00Z"),
        Duration::hours(2),
    );
    assert_eq!(plan.fire, Some(utc("2025-01-01T13:00:00Z")));
    assert_eq!(plan.quiet, [utc("2025-01-01T14:00:00Z")]);
    assert!(plan.missed.is_empty());

    hourly.enabled = false;
    let disabled = valid(&hourly);
    assert_eq!(
        plan_catch_up(
            &disabled,
            utc("2025-01-01T00:00:00Z"),
            utc("2025-01-02T00:00:00Z"),
            Duration::hours(1)
        ),
        CatchUp::default()
    );
}

// ---------------------------------------------------------------- validation

/// Validates `[[schedules]]` TOML and returns `(path, code)` of every error.
fn errors_of(toml_text: &str) -> Vec<(String, &'static str)> {
    match validate_all(&parse(toml_text), shanghai()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|error| {
                assert!(!error.message.is_empty());
                (error.path, error.code.as_str())
            })
            .collect(),
    }
}

/// The schedule `ab` (09:00 daily, every chat) with `variants` as
/// `(name, weight, content as a TOML inline table)`.
fn ab_schedule(variants: &[(&str, i64, &str)]) -> String {
    let mut text = String::from(
        "[[schedules]]\nname = \"ab\"\ncron = \"0 0 9 * * *\"\ntargets = { all_chats = true }\n",
    );
    for (name, weight, content) in variants {
        text += &format!(
            "[[schedules.variants]]\nname = \"{name}\"\nweight = {weight}\ncontent = {content}\n"
        );
    }
    text
}

/// A valid schedule with one line replaced or added.
fn with(line: &str) -> String {
    let mut lines = vec![
        ("name", r#"name = "tip""#),
        ("cron", r#"cron = "0 30 9 * * *""#),
        ("targets", r#"targets = { all_chats = true }"#),
        (
            "content",
            r#"content = { kind = "text", body = "早上好 {{ chat.name }}" }"#,
        ),
    ];
    let key = line.split([' ', '=']).next().unwrap_or_default();
    match lines.iter_mut().find(|(name, _)| *name == key) {
        Some(existing) => existing.1 = line,
        None => lines.push((key, line)),
    }
    let body: Vec<&str> = lines.iter().map(|(_, line)| *line).collect();
    format!("[[schedules]]\n{}\n", body.join("\n"))
}

#[test]
fn each_validation_error_names_its_field() {
    let cases: &[(&str, &str, &str)] = &[
        (r#"cron = "30 9 * * *""#, "schedules[0].cron", "bad_cron"),
        (r#"cron = "0 61 9 * * *""#, "schedules[0].cron", "bad_cron"),
        (
            r#"cron = "0 0 0 30 2 *""#,
            "schedules[0].cron",
            "never_fires",
        ),
        (
            r#"timezone = "Asia/Beijing""#,
            "schedules[0].timezone",
            "unknown_timezone",
        ),
        (r#"targets = {}"#, "schedules[0].targets", "empty_targets"),
        (
            r#"targets = { chat_tags = ["vip", " "] }"#,
            "schedules[0].targets.chat_tags[1]",
            "invalid_target",
        ),
        (
            r#"content = { kind = "text" }"#,
            "schedules[0].content.body",
            "missing_template",
        ),
        (
            r#"content = { kind = "text", body = "hi {{ chat.nmae }}" }"#,
            "schedules[0].content.body",
            "bad_template",
        ),
        (
            r#"content = { kind = "text", body = "hi {{ nobody }}" }"#,
            "schedules[0].content.body",
            "bad_template",
        ),
        (
            r#"content = { kind = "text", body = "hi {% if %}" }"#,
            "schedules[0].content.body",
            "bad_template",
        ),
        (
            r#"content = { kind = "text", body = "{{ days_left }} days left" }"#,
            "schedules[0].content.body",
            "bad_template",
        ),
        (
            r#"content = { kind = "news", title = "t", url = "shop.example.com" }"#,
            "schedules[0].content.url",
            "bad_url",
        ),
        (
            r#"content = { kind = "news", url = "https://shop.example.com" }"#,
            "schedules[0].content.title",
            "missing_template",
        ),
        (
            r#"content = { kind = "image" }"#,
            "schedules[0].content",
            "bad_image",
        ),
        (
            r#"content = { kind = "image", url = "https://a.example/x.png", media_id = "m" }"#,
            "schedules[0].content",
            "bad_image",
        ),
        (r#"start = "2025-02-30""#, "schedules[0].start", "bad_date"),
        (r#"end = "next week""#, "schedules[0].end", "bad_date"),
        (r#"end = "+262000-01-01""#, "schedules[0].end", "bad_date"),
        (
            r#"start = "-262000-01-01T00:00:00Z""#,
            "schedules[0].start",
            "bad_date",
        ),
        (
            r#"start = "1900-01-01T00:00""#,
            "schedules[0].start",
            "bad_date",
        ),
        (
            r#"quiet_hours = "22-08""#,
            "schedules[0].quiet_hours",
            "bad_quiet_hours",
        ),
        (
            r#"quiet_hours = "08:00-10:00""#,
            "schedules[0].quiet_hours",
            "always_quiet",
        ),
        (r#"name = "  ""#, "schedules[0].name", "invalid_name"),
    ];
    for (line, path, code) in cases {
        let errors = errors_of(&with(line));
        assert_eq!(errors, [(path.to_string(), *code)], "for {line}");
    }
}

#[test]
fn end_before_start_is_reported_on_end() {
    let text = format!(
        "{}start = 2025-03-10\nend = 2025-03-09\n",
        with(r#"name = "tip""#)
    );
    assert_eq!(
        errors_of(&text),
        [("schedules[0].end".to_owned(), "end_before_start")]
    );
    // The same day for both is one day of campaign, not an error.
    let one_day = format!(
        "{}start = 2025-03-10\nend = 2025-03-10\n",
        with(r#"name = "tip""#)
    );
    assert!(errors_of(&one_day).is_empty());
}

#[test]
fn variant_errors_name_the_variant() {
    let text = ab_schedule(&[
        ("a", 1, r#"{ kind = "text", body = "A" }"#),
        ("b", 0, r#"{ kind = "text", body = "B {{ oops }}" }"#),
        ("a", -5, r#"{ kind = "markdown", body = "C" }"#),
    ]);
    assert_eq!(
        errors_of(&text),
        [
            ("schedules[0].variants[1].weight".to_owned(), "bad_weight"),
            ("schedules[0].variants[2].name".to_owned(), "duplicate_name"),
            ("schedules[0].variants[2].weight".to_owned(), "bad_weight"),
        ]
    );
    // With the weights and names fixed, the template error shows up, by variant.
    let fixed = ab_schedule(&[
        ("a", 1, r#"{ kind = "text", body = "A" }"#),
        ("b", 2, r#"{ kind = "text", body = "B {{ oops }}" }"#),
        ("c", 3, r#"{ kind = "markdown", body = "C" }"#),
    ]);
    assert_eq!(
        errors_of(&fixed),
        [(
            "schedules[0].variants[1].content.body".to_owned(),
            "bad_template"
        )]
    );
}

#[test]
fn content_and_variants_are_exclusive_and_one_is_required() {
    let neither =
        "[[schedules]]\nname = \"x\"\ncron = \"0 0 9 * * *\"\ntargets = { all_chats = true }\n";
    assert_eq!(
        errors_of(neither),
        [("schedules[0].content".to_owned(), "missing_content")]
    );
    let both = format!(
        "{}[[schedules.variants]]\nname = \"a\"\nweight = 1\ncontent = {{ kind = \"text\", body = \"A\" }}\n",
        with(r#"name = "x""#)
    );
    assert_eq!(
        errors_of(&both),
        [("schedules[0].content".to_owned(), "conflicting_content")]
    );
}

#[test]
fn duplicate_schedule_names_point_at_the_later_entry() {
    let text = format!(
        "{}{}{}",
        with(r#"name = "tip""#),
        with(r#"name = "other""#),
        with(r#"name = "tip""#)
    );
    assert_eq!(
        errors_of(&text),
        [("schedules[2].name".to_owned(), "duplicate_name")]
    );
}

#[test]
fn member_only_pushes_cannot_use_chat_variables() {
    let text = with(r#"targets = { member_departments = [2] }"#);
    let errors = validate_all(&parse(&text), shanghai()).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "schedules[0].content.body");
    assert!(errors[0].message.contains("member"), "{}", errors[0]);
    let member_safe =
        with(r#"targets = { member_tags = [7] }"#).replace("{{ chat.name }}", "{{ date }}");
    assert!(errors_of(&member_safe).is_empty());
}

#[test]
fn every_problem_is_reported_at_once_and_nothing_is_applied() {
    let text = r#"
        [[schedules]]
        name = "ok"
        cron = "0 0 9 * * *"
        targets = { all_chats = true }
        content = { kind = "text", body = "fine" }
        [[schedules]]
        name = "broken"
        cron = "every day"
        timezone = "Nowhere/Special"
        targets = {}
        content = { kind = "text", body = "" }
    "#;
    let paths: Vec<String> = errors_of(text).into_iter().map(|(path, _)| path).collect();
    assert_eq!(
        paths,
        [
            "schedules[1].cron",
            "schedules[1].timezone",
            "schedules[1].targets",
            "schedules[1].content.body"
        ]
    );
}

// ---------------------------------------------------------------- rendering

fn push(fire_time: &str) -> PushContext {
    PushContext {
        fire_time: utc(fire_time),
        chat: Some(ChatVars {
            name: "宝妈交流群".to_owned(),
            member_count: 212,
        }),
        leaderboard: vec![
            LeaderboardEntry {
                rank: 1,
                name: "小红".to_owned(),
                points: 90,
            },
            LeaderboardEntry {
                rank: 2,
                name: "小明".to_owned(),
                points: 75,
            },
        ],
    }
}

#[test]
fn text_renders_every_variable_on_the_schedules_clock() {
    let mut campaign = def("0 30 7 * * *", "Asia/Shanghai");
    campaign.end = Some("2025-01-10".to_owned());
    campaign.content = Some(ContentDef::Text {
        body: "{{ schedule }}/{{ variant }} {{ date }} {{ time }} {{ weekday }} {{ fire_time }} \
               {{ chat.name }}({{ chat.member_count }}) \
               {% for row in leaderboard %}{{ row.rank }}.{{ row.name }}={{ row.points }};{% endfor %} \
               {{ days_left }}"
            .to_owned(),
    });
    let campaign = valid(&campaign);
    let variant = campaign.variant_for("wr1");
    // 23:30 UTC on Jan 1 is already 07:30 on Thursday Jan 2 in Shanghai.
    let message = render(&campaign, variant, &push("2025-01-01T23:30:00Z")).unwrap();
    assert_eq!(
        message,
        RenderedMessage::Text {
            content: "test/default 2025-01-02 07:30 周四 2025-01-02T07:30:00+08:00 \
                      宝妈交流群(212) 1.小红=90;2.小明=75; 8"
                .to_owned()
        }
    );
}

#[test]
fn news_and_image_render_to_typed_messages() {
    let mut news = def("0 0 20 * * *", "Asia/Shanghai");
    news.content = Some(ContentDef::News {
        title: "{{ chat.name }} 本周冠军 {{ leaderboard[0].name }}".to_owned(),
        description: Some("共 {{ chat.member_count }} 人".to_owned()),
        url: "https://shop.example.com/rank".to_owned(),
        picurl: None,
    });
    let news = valid(&news);
    let message = render(
        &news,
        news.variant_for("wr1"),
        &push("2025-01-05T12:00:00Z"),
    )
    .unwrap();
    assert_eq!(
        message,
        RenderedMessage::News {
            articles: vec![NewsArticle {
                title: "宝妈交流群 本周冠军 小红".to_owned(),
                description: Some("共 212 人".to_owned()),
                url: "https://shop.example.com/rank".to_owned(),
                picurl: None,
            }]
        }
    );
    assert_eq!(
        serde_json::to_value(&message).unwrap()["kind"],
        serde_json::json!("news")
    );

    let mut image = def("0 0 20 * * *", "Asia/Shanghai");
    image.content = Some(ContentDef::Image {
        url: None,
        media_id: Some("3a8asd892asd8asd".to_owned()),
    });
    let image = valid(&image);
    assert_eq!(
        render(
            &image,
            image.variant_for("wr1"),
            &push("2025-01-05T12:00:00Z")
        )
        .unwrap(),
        RenderedMessage::Image {
            source: ImageSource::MediaId("3a8asd892asd8asd".to_owned())
        }
    );
}

#[test]
fn a_template_that_needs_more_data_than_the_push_has_fails_to_render() {
    let mut board = def("0 0 20 * * *", "Asia/Shanghai");
    board.content = Some(ContentDef::Markdown {
        body: "冠军：{{ leaderboard[0].name }}".to_owned(),
    });
    let board = valid(&board);
    let mut empty_board = push("2025-01-05T12:00:00Z");
    empty_board.leaderboard.clear();
    let error = render(&board, board.variant_for("wr1"), &empty_board).unwrap_err();
    assert!(
        matches!(error, RenderError::Template { field: "body", .. }),
        "{error:?}"
    );
}

#[test]
fn ab_schedules_give_each_chat_its_own_stable_variant() {
    let text = ab_schedule(&[
        ("short", 1, r#"{ kind = "text", body = "short" }"#),
        (
            "long",
            3,
            r#"{ kind = "text", body = "a much longer text" }"#,
        ),
    ]);
    let first_run = validate_all(&parse(&text), shanghai()).unwrap();
    let second_run = validate_all(&parse(&text), shanghai()).unwrap();
    let mut long = 0;
    for chat in 0..4_000 {
        let chat = format!("wrchat{chat}");
        let variant = first_run[0].variant_for(&chat);
        assert_eq!(variant.name, second_run[0].variant_for(&chat).name);
        if variant.name == "long" {
            long += 1;
        }
    }
    assert!((2_800..=3_200).contains(&long), "long got {long} of 4000");
}

// ---------------------------------------------------------------- properties

mod properties {
    use chrono::NaiveDate;
    use proptest::prelude::*;

    use super::*;

    fn cron_expression() -> impl Strategy<Value = String> {
        let seconds = prop::sample::select(vec!["0", "30", "*/15", "0,30", "*"]);
        let minutes = prop::sample::select(vec!["0", "15", "*/20", "5-10", "0,30", "*"]);
        let hours = prop::sample::select(vec!["*", "0", "1", "2", "1-3", "*/3", "0,12", "9", "23"]);
        let days = prop::sample::select(vec!["*", "1", "1-10", "29", "31", "?"]);
        let months = prop::sample::select(vec!["*", "3", "10", "3,11", "Jan-Jun", "*/2"]);
        let weekdays = prop::sample::select(vec!["*", "Mon-Fri", "Sun", "Sat,Sun", "?"]);
        (seconds, minutes, hours, days, months, weekdays).prop_map(|(s, m, h, d, mo, w)| {
            // The crate refuses `?` in both day fields at once.
            let w = if d == "?" && w == "?" { "*" } else { w };
            format!("{s} {m} {h} {d} {mo} {w}")
        })
    }

    fn timezone() -> impl Strategy<Value = Tz> {
        prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec())
    }

    /// Instants biased towards the months in which most zones change clocks.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        let month = prop_oneof![prop::sample::select(vec![3_u32, 4, 9, 10, 11]), 1_u32..=12];
        (1990_i32..2045, month, 1_u32..=28, 0_i64..86_400).prop_map(|(year, month, day, second)| {
            let midnight = NaiveDate::from_ymd_opt(year, month, day)
                .and_then(|date| date.and_hms_opt(0, 0, 0))
                .expect("day 1..=28 exists in every month");
            midnight.and_utc() + Duration::seconds(second)
        })
    }

    /// An instant within a few hours of a clock change in `tz`, when there is
    /// one in the half year after `base`; `base` itself otherwise.
    fn near_transition(tz: Tz, base: DateTime<Utc>, jitter_seconds: i64) -> DateTime<Utc> {
        use chrono::Offset;
        let offset = |at: DateTime<Utc>| at.with_timezone(&tz).offset().fix();
        let (mut low, mut high) = (base, base + Duration::days(183));
        if offset(low) == offset(high) {
            return base;
        }
        // Binary search for the first instant with the later offset.
        while high - low > Duration::seconds(1) {
            let middle = low + (high - low) / 2;
            if offset(middle) == offset(low) {
                low = middle;
            } else {
                high = middle;
            }
        }
        high + Duration::seconds(jitter_seconds)
    }

    fn around_transitions() -> impl Strategy<Value = (Tz, DateTime<Utc>)> {
        (timezone(), instant(), -3 * 3600_i64..3 * 3600)
            .prop_map(|(tz, base, jitter)| (tz, near_transition(tz, base, jitter)))
    }

    fn schedule_in(cron: &str, tz: Tz) -> Option<ValidSchedule> {
        validate(
            &def(cron, tz.name()),
            &ValidationContext::for_schedule(tz, 0),
        )
        .ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn next_fires_is_strictly_increasing_and_resumable(
            cron in cron_expression(),
            (tz, after) in prop_oneof![(timezone(), instant()), around_transitions()],
            count in 1_usize..12,
        ) {
            let Some(job) = schedule_in(&cron, tz) else {
                // Expressions that never fire are refused by validation.
                return Ok(());
            };
            let fires = next_fires(&job, after, count);
            prop_assert!(fires.len() <= count);
            prop_assert!(fires.iter().all(|&fire| fire > after));
            prop_assert!(fires.windows(2).all(|pair| pair[0] < pair[1]), "{:?}", fires);
            for split in 1..fires.len() {
                let resumed = next_fires(&job, fires[split - 1], fires.len() - split);
                prop_assert_eq!(&resumed[..], &fires[split..], "resumed after {}", split);
            }
            if let Some(&last) = fires.last() {
                prop_assert_eq!(fires_between(&job, after, last), fires);
            }
        }

        #[test]
        fn every_hour_jobs_fire_only_at_matching_wall_times(
            cron in cron_expression(),
            (tz, after) in around_transitions(),
        ) {
            let mut fields: Vec<&str> = cron.split_whitespace().collect();
            fields[2] = "*";
            let cron = fields.join(" ");
            let Some(job) = schedule_in(&cron, tz) else { return Ok(()); };
            let matcher: cron::Schedule = cron.parse().expect("validated above");
            for fire in next_fires(&job, after, 8) {
                let wall = fire.with_timezone(&tz).naive_local().and_utc();
                prop_assert!(matcher.includes(wall), "{} is {} on the wall", fire, wall);
            }
        }

        #[test]
        fn arbitrary_text_never_panics_the_parsers(cron in ".{0,40}", tz in ".{0,30}", after in instant()) {
            let _ = next_fire_times_for_cli(&cron, &tz, after, 3);
            let _ = QuietHours::parse(&cron);
        }
    }
}
