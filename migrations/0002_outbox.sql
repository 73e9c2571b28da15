-- Outbound messages. Rules and the scheduler insert rows in the same
-- transaction as the decision that caused them; jobs::outbox delivers them.
-- idempotency_key is unique so deciding twice never sends twice.
create table outbox (
    id integer primary key autoincrement,
    idempotency_key text not null unique,
    route text not null check (route in
        ('app_group', 'webhook', 'smart_bot', 'customer_group_mass', 'member', 'welcome_code')),
    -- app_group: chat id; webhook: robot key; smart_bot: response_url;
    -- customer_group_mass: sender (owner) userid; member: userids joined by '|';
    -- welcome_code: the welcome code.
    target text not null,
    app text,                           -- configured app whose secret/agent id to use
    payload_json text not null,         -- msgtype + content in WeCom's shape
    priority integer not null default 0, -- higher first (welcome codes expire in 20 s)
    status text not null default 'pending' check (status in
        ('pending', 'in_flight', 'sent', 'awaiting_confirmation', 'failed', 'dead', 'skipped')),
    attempts integer not null default 0,
    next_attempt_at integer not null,   -- unix seconds; for awaiting_confirmation: next poll
    lease_owner text,                   -- which sender holds the in_flight lease
    lease_expires_at integer,           -- an expired lease makes the row claimable again
    last_error text,                    -- or the reason for skipped/failed/dead
    wecom_msgid text,                   -- message/send and add_msg_template msgid
    created_at integer not null,
    sent_at integer,
    updated_at integer not null
);

create index outbox_due on outbox (status, next_attempt_at);

-- One row per call the sender made or is about to make, per rate-limit key
-- ('webhook:KEY', 'member:APP:USERID', 'api:PATH', ...). Kept in SQLite so a
-- restarted sender still knows what it sent in the last minute.
create table outbox_rate_log (
    id integer primary key autoincrement,
    rate_key text not null,
    at integer not null
);

create index outbox_rate_log_key on outbox_rate_log (rate_key, at);
