-- Members as people: purchase data, RFM scores, member tags and saved segments.
-- Amounts are integer fen (1/100 yuan); times are UTC unix seconds.

-- A person's WeChat unionid, when an order system only knows that one.
create table member_unionids (
    unionid text primary key,
    user_id text not null
);
create index member_unionids_user on member_unionids (user_id);

-- One row per order id; a refund is its own order with a negative amount.
-- Importing the same order again adds nothing (the order id is the key).
create table orders (
    order_id text primary key,
    user_id text not null,
    amount integer not null check (amount <> 0),
    paid_at integer not null,
    source text not null,               -- 'ingest' | 'csv'
    imported_at integer not null
);
create index orders_user on orders (user_id, paid_at);
create index orders_paid on orders (paid_at);

-- Recomputed wholesale by the analytics job: one row per person with an order.
create table member_rfm (
    user_id text primary key,
    recency_days integer not null,
    frequency integer not null,
    monetary integer not null,
    r integer not null check (r between 1 and 5),
    f integer not null check (f between 1 and 5),
    m integer not null check (m between 1 and 5),
    segment text not null,
    computed_at integer not null
);
create index member_rfm_segment on member_rfm (segment);

-- Member tags: set by a manager ('manager') or by a rule ('rule:<name>').
create table member_tags (
    user_id text not null,
    tag text not null,
    source text not null,
    created_at integer not null,
    primary key (user_id, tag)
);
create index member_tags_tag on member_tags (tag);

-- Saved filters over members (JSON, see ops::segments::SegmentFilter).
create table segments (
    id integer primary key autoincrement,
    name text not null unique,
    filter_json text not null,
    created_by text not null,
    created_at integer not null,
    updated_at integer not null
);
