-- Polls (投票): a manager's question with 2–20 options, open between two
-- instants in chosen chats (and chats carrying chosen tags). Members vote by
-- clicking the smart bot's vote card or by the keyword `投 N`; one ballot per
-- member per poll (primary key), changed only when `allow_change` is set.
-- Times are UTC unix seconds.
create table polls (
    id integer primary key autoincrement,
    question text not null,
    options_json text not null,          -- ["option 1", "option 2", ...]
    multiple integer not null default 0, -- 1: a ballot may name several options
    open_at integer not null,
    close_at integer not null check (close_at > open_at),
    chats_json text not null default '[]',
    tags_json text not null default '[]',
    allow_change integer not null default 0,
    points_per_vote integer not null default 0 check (points_per_vote >= 0),
    points_cap integer not null default 0 check (points_cap >= 0), -- 0: no cap
    -- scheduled → open (announced, cards pushed) → closed (result announced, points paid)
    status text not null default 'scheduled' check (status in ('scheduled', 'open', 'closed')),
    opened_at integer,
    closed_at integer,
    created_by text not null,
    created_at integer not null
);
create index polls_status on polls (status, open_at, close_at);

-- The chats a poll was opened in (tags resolved at open), with the vote
-- card's task_id where a card went out.
create table poll_chats (
    poll_id integer not null references polls (id),
    chat_id text not null,
    card_task_id text,
    primary key (poll_id, chat_id)
);
create unique index poll_chats_task on poll_chats (card_task_id) where card_task_id is not null;

create table poll_votes (
    poll_id integer not null references polls (id),
    user_id text not null,
    options_json text not null,          -- 1-based option numbers, ascending
    chat_id text,                        -- where the ballot was cast (null: 1:1)
    via text not null check (via in ('card', 'keyword')),
    voted_at integer not null,
    changed_at integer,
    primary key (poll_id, user_id)
);
create index poll_votes_time on poll_votes (voted_at);
