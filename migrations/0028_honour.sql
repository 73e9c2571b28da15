-- Rewarded good content and the honour board.
--
-- Group messages qunyun saw (smart bot or archive) while `[ugc]` is on:
-- id, chat, author, kind and a fingerprint of the text (never the text), so a
-- quoted message (`加精`) or a message id from the console finds its author.
create table content_posts (
    message_id text primary key,
    chat_id text not null,
    author text not null,
    fingerprint integer,
    is_image integer not null default 0,
    at integer not null
);
create index content_posts_chat_fp on content_posts (chat_id, fingerprint, at);
create index content_posts_author on content_posts (author, at);

-- 精华: one row per message, whoever marks it and however often.
create table essence_marks (
    message_id text primary key,
    chat_id text not null,
    author text not null,
    marked_by text not null,
    marked_at integer not null,
    day text not null
);
create index essence_marks_day on essence_marks (day, author);

-- One honour-board post per board, period and chat, even across restarts.
create table honour_publications (
    board text not null,
    period text not null,
    chat_id text not null,
    published_at integer not null,
    primary key (board, period, chat_id)
);

-- Rewarded posts (精华 and paid 晒单) in the daily rollup.
alter table analytics_daily add column rewarded_posts integer not null default 0;
