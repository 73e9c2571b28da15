-- Scheduled pushes: per-schedule state, one run row per (schedule, fire time),
-- and one delivery row per chat of a run. Schedules themselves live in the
-- rule set ([[schedules]]); these tables only hold what happened.

-- What the scheduler has already looked at, and whether a manager paused it.
create table schedule_state (
    name text primary key,
    paused integer not null default 0,
    -- Fires at or before this instant were handled (sent, missed or quiet).
    -- Set to "now" when a schedule is first seen or resumed, so nothing older fires.
    checked_through integer not null,
    updated_at integer not null
);

-- The claim: a run row is unique per (schedule, fire time, kind), inserted in the
-- same transaction as the run's outbox rows, so a fire is planned at most once
-- and never half-planned.
create table schedule_runs (
    id integer primary key autoincrement,
    schedule text not null,
    fire_at integer not null,
    kind text not null check (kind in ('scheduled', 'manual')),
    status text not null check (status in ('planned', 'missed', 'quiet')),
    reason text,                     -- why missed / quiet
    rule_set_version integer,
    planned_at integer not null,
    unique (schedule, fire_at, kind)
);
create index schedule_runs_schedule on schedule_runs (schedule, fire_at);

-- One row per chat of a planned run: the variant it got and the outbox row
-- that carries it (several chats share one row for a customer-group mass message).
create table schedule_deliveries (
    run_id integer not null references schedule_runs (id),
    chat_id text not null,
    variant text not null,
    outbox_key text not null,
    primary key (run_id, chat_id)
);
create index schedule_deliveries_outbox on schedule_deliveries (outbox_key);
