-- Points expiry notices and moderation review in tiers. Times are UTC unix seconds.

-- A member told that points of an expiry month (YYYY-MM) run out: once each.
create table points_expiry_notices (
    user_id text not null,
    period text not null,
    noticed_at integer not null,
    primary key (user_id, period)
);

-- Items a person reviews, tier by tier: fuzzy hits and reported messages
-- start with an operator; escalations and appeals sit with an owner.
create table review_items (
    id integer primary key autoincrement,
    -- Where it came from, unique: task:<moderation task id>, appeal:<event id>.
    source_key text not null unique,
    kind text not null check (kind in ('hit', 'report', 'appeal')),
    task_id integer references moderation_tasks (id),
    log_id integer references moderation_log (id),
    chat_id text,
    user_id text not null,
    excerpt text not null default '',
    tier text not null check (tier in ('operator', 'owner')),
    -- When it reached its current tier (the SLA counts from here).
    tier_since integer not null,
    -- The tier whose SLA breach was already alerted (one alert per tier).
    sla_alerted_tier text,
    status text not null default 'open'
        check (status in ('open', 'confirmed', 'dismissed', 'upheld', 'overturned')),
    created_at integer not null,
    decided_at integer,
    decided_by text,
    note text
);
create index review_items_open on review_items (status, tier, tier_since);
create index review_items_user on review_items (user_id, created_at);
