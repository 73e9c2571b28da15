-- Analytics: daily rollups per chat and for the community (chat_id ''),
-- per-person daily activity (the lifecycle's input), member lifecycle stages
-- with their history, and alert episodes. Rollups for recent days are
-- recomputed by jobs::analytics and upserted, so a re-run gives the same rows.
-- Days are community days 'YYYY-MM-DD'; times are UTC unix seconds.

create table analytics_daily (
    day text not null,
    chat_id text not null,              -- '' = the whole community
    joins integer not null default 0,
    leaves integer not null default 0,
    members integer not null default 0, -- at the end of the day
    active_members integer not null default 0,
    messages integer not null default 0,
    checkins integer not null default 0,
    points_issued integer not null default 0,
    points_redeemed integer not null default 0,
    violations integer not null default 0,
    pushes_sent integer not null default 0,
    pushes_failed integer not null default 0,
    computed_at integer not null,
    primary key (day, chat_id)
);

-- Who posted or checked in where, per day ('' chat: 1:1 or no chat).
create table member_activity (
    day text not null,
    user_id text not null,
    chat_id text not null,
    messages integer not null default 0,
    checkins integer not null default 0,
    primary key (day, user_id, chat_id)
);
create index member_activity_user on member_activity (user_id, day);

-- Each person's current stage.
create table member_stages (
    user_id text primary key,
    stage text not null check (stage in ('new', 'active', 'core', 'at_risk', 'dormant', 'churned')),
    since integer not null,
    last_active_day text,
    updated_at integer not null
);

-- Every stage change, with what the at-risk action did about it.
create table member_stage_changes (
    id integer primary key autoincrement,
    user_id text not null,
    from_stage text,                    -- null: first classification
    to_stage text not null,
    at integer not null,
    action text,                        -- 'nudge' | 'notify_admins'; null: none
    action_status text check (action_status in ('queued', 'skipped')),
    action_reason text,                 -- why it was skipped
    outbox_key text                     -- the outbox row carrying it (unique per change)
);
create index member_stage_changes_user on member_stage_changes (user_id, id);
create index member_stage_changes_at on member_stage_changes (at);

-- Alert episodes: open while the condition holds; level is the highest
-- announced; at most one open episode per kind.
create table alert_episodes (
    id integer primary key autoincrement,
    kind text not null,
    level text not null check (level in ('yellow', 'orange', 'red')),
    value integer not null,             -- the latest measurement
    opened_at integer not null,
    updated_at integer not null,
    closed_at integer
);
create unique index alert_episodes_one_open on alert_episodes (kind) where closed_at is null;
create index alert_episodes_opened on alert_episodes (opened_at);

-- The rollup reads recent messages from the inbox by kind and arrival time.
create index inbox_kind_received on inbox (kind, received_at);
