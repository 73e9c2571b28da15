-- Every callback WeCom delivers lands here before we answer 200.
-- dedupe_key is unique so a redelivery adds nothing.
create table inbox (
    id integer primary key autoincrement,
    source text not null,            -- 'app:<name>' or 'bot:<name>' or 'ingest'
    kind text not null,              -- event kind, e.g. 'change_external_chat'
    dedupe_key text not null unique,
    received_at integer not null,    -- unix seconds, UTC
    event_json text not null,        -- the parsed event
    chat_id text,                    -- for per-chat ordering in the pipeline
    status text not null default 'pending' check (status in ('pending', 'done', 'parked')),
    attempts integer not null default 0,
    last_error text,
    processed_at integer
);

create index inbox_pending on inbox (status, id);
