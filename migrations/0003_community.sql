-- Community state: chats, members, people, the points ledger, check-ins,
-- rule sets, redemptions, and the small bits of rule state (welcome windows,
-- auto-reply cooldowns). Times are UTC unix seconds; days are 'YYYY-MM-DD'
-- community days (the community timezone and cut-over hour decide them).

create table chats (
    chat_id text primary key,
    name text not null default '',
    route text not null check (route in ('app_group', 'customer_group', 'webhook', 'smart_bot')),
    robot_key text,                  -- webhook key when a group robot was added
    owner text,
    admins_json text not null default '[]',
    tags_json text not null default '[]',
    member_version text,             -- groupchat/get member_version / callback CurMemVer
    needs_resync integer not null default 0,
    raid_until integer,              -- raid mode lasts until this instant
    updated_at integer not null
);

-- A person across chats; points and streaks are per community, not per chat.
create table people (
    user_id text primary key,        -- UserID or external userid
    name text,
    first_seen_at integer not null
);

create table chat_members (
    chat_id text not null,
    user_id text not null,
    joined_at integer not null,
    left_at integer,                 -- null while a member
    join_scene text,
    inviter text,
    nickname text,
    primary key (chat_id, user_id)
);
create index chat_members_user on chat_members (user_id);

-- Append-only: the balance is sum(delta). reference is the natural unique key of
-- the effect (check-in on day D, redemption R ...), so a replay adds nothing.
create table points_ledger (
    id integer primary key autoincrement,
    user_id text not null,
    delta integer not null check (delta <> 0),
    reason text not null,
    reference text not null unique,
    chat_id text,
    day text not null,
    created_at integer not null
);
create index points_ledger_user on points_ledger (user_id, day);
create index points_ledger_day on points_ledger (day);
create trigger points_ledger_no_update before update on points_ledger
begin
    select raise(abort, 'points_ledger is append-only');
end;
create trigger points_ledger_no_delete before delete on points_ledger
begin
    select raise(abort, 'points_ledger is append-only');
end;

create table checkins (
    user_id text not null,
    day text not null,
    at integer not null,
    makeup integer not null default 0,
    chat_id text,
    primary key (user_id, day)
);
create index checkins_day on checkins (day);

create table badges (
    user_id text not null,
    badge text not null,
    awarded_at integer not null,
    primary key (user_id, badge)
);

-- Versioned rule sets; the highest version is active.
create table rule_sets (
    version integer primary key autoincrement,
    body text not null,
    created_at integer not null
);

create table catalog_stock (
    item text primary key,
    remaining integer not null check (remaining >= 0)
);

create table redemptions (
    id integer primary key autoincrement,
    user_id text not null,
    item text not null,
    cost integer not null,
    reference text not null unique,
    status text not null default 'pending' check (status in ('pending', 'fulfilled', 'cancelled')),
    created_at integer not null,
    fulfilled_at integer
);
create index redemptions_user on redemptions (user_id, item);

-- Auto-reply cooldowns: scope is the chat id (or the sender for 1:1 messages).
create table autoreply_fired (
    scope text not null,
    rule text not null,
    fired_at integer not null,
    primary key (scope, rule)
);

-- Joins waiting for their chat's merged welcome.
create table pending_welcomes (
    chat_id text not null,
    user_id text not null,
    name text,
    joined_at integer not null,
    is_returning integer not null,
    join_scene text not null,
    primary key (chat_id, user_id)
);

-- Onboarding tips waiting for their time (dropped if the member leaves first).
create table pending_onboarding (
    chat_id text not null,
    user_id text not null,
    due_at integer not null,
    primary key (chat_id, user_id)
);
create index pending_onboarding_due on pending_onboarding (due_at);
