-- Moderation: post fingerprints for the behavioural rules, the audit log,
-- strikes (revocable), owner/admin tasks and member reports. Times are UTC
-- unix seconds. No message bodies are kept beyond the short excerpt a
-- reviewer needs.

-- Recent posts per member: time and folded-text fingerprint only.
create table moderation_posts (
    id integer primary key autoincrement,
    chat_id text not null default '',   -- '' for 1:1 messages
    user_id text not null,
    at integer not null,
    fingerprint integer
);
create index moderation_posts_user on moderation_posts (user_id, at);
create index moderation_posts_chat_fp on moderation_posts (chat_id, fingerprint, at);

-- Every decision. event_key is the inbox event it came from: one decision per event.
create table moderation_log (
    id integer primary key autoincrement,
    event_key text not null unique,
    at integer not null,
    chat_id text,
    user_id text not null,
    rule text not null,                 -- term, regex:NAME, flood, cross_chat, new_member, report
    category text not null,
    severity text not null,
    matched text not null default '',
    excerpt text not null default '',
    action_taken text not null,
    dry_run integer not null default 0,
    reviewed_by text,                   -- who reviewed or revoked it
    review_note text,
    reviewed_at integer
);
create index moderation_log_at on moderation_log (at);
create index moderation_log_user on moderation_log (user_id, at);

create table moderation_strikes (
    id integer primary key autoincrement,
    log_id integer not null references moderation_log (id),
    user_id text not null,
    chat_id text,
    at integer not null,
    severity text not null,
    revoked_at integer,
    revoked_by text,
    revoke_reason text
);
create index moderation_strikes_user on moderation_strikes (user_id, at);

-- Work qunyun cannot do itself (remove from a customer group) or a review.
create table moderation_tasks (
    id integer primary key autoincrement,
    log_id integer not null references moderation_log (id),
    kind text not null check (kind in ('remove', 'review')),
    chat_id text,
    user_id text not null,
    assignees_json text not null,
    status text not null default 'open' check (status in ('open', 'done')),
    created_at integer not null,
    done_at integer,
    done_by text,
    note text
);
create index moderation_tasks_status on moderation_tasks (status, created_at);

create table moderation_reports (
    id integer primary key autoincrement,
    chat_id text not null,
    reporter text not null,
    fingerprint integer not null,
    at integer not null,
    unique (chat_id, fingerprint, reporter)
);
create index moderation_reports_reporter on moderation_reports (reporter, at);

-- The outbox gains a route for appchat/update removals. SQLite cannot alter a
-- check constraint, so the table is rebuilt with the same columns.
create table outbox_new (
    id integer primary key autoincrement,
    idempotency_key text not null unique,
    route text not null check (route in
        ('app_group', 'webhook', 'smart_bot', 'customer_group_mass', 'member', 'welcome_code',
         'app_chat_remove')),
    target text not null,
    app text,
    payload_json text not null,
    priority integer not null default 0,
    status text not null default 'pending' check (status in
        ('pending', 'in_flight', 'sent', 'awaiting_confirmation', 'failed', 'dead', 'skipped')),
    attempts integer not null default 0,
    next_attempt_at integer not null,
    lease_owner text,
    lease_expires_at integer,
    last_error text,
    wecom_msgid text,
    created_at integer not null,
    sent_at integer,
    updated_at integer not null
);
insert into outbox_new select * from outbox;
drop table outbox;
alter table outbox_new rename to outbox;
create index outbox_due on outbox (status, next_attempt_at);
