-- Verifiable lotteries (抽奖). The seed is secret until the draw: the
-- announcement publishes only `commitment` = SHA-256(seed); the draw reveals
-- `seed_hex`, and the winners are a fixed function of it and the sorted
-- entrant list (docs/lottery.md), so anyone can recompute them.
create table lotteries (
    id integer primary key autoincrement,
    title text not null,
    chats_json text not null default '[]',
    tags_json text not null default '[]',
    keyword text,                          -- null: every eligible member of the chats enters at the draw
    checked_in_today integer not null default 0,
    min_level integer,
    joined_before integer,
    entry_cost integer not null default 0 check (entry_cost >= 0),
    draw_at integer not null,
    seed_hex text not null,
    commitment text not null,
    status text not null default 'open' check (status in ('open', 'drawn', 'cancelled')),
    entrants_digest text,                  -- SHA-256 of the entrant file, set at the draw
    created_by text not null,
    created_at integer not null,
    drawn_at integer
);
create index lotteries_due on lotteries (status, draw_at);

create table lottery_prizes (
    lottery_id integer not null references lotteries (id),
    position integer not null,             -- 0 = drawn first
    name text not null,
    points integer not null default 0 check (points >= 0),
    item text,                             -- a catalog item: a redemption, stock permitting
    winners integer not null check (winners > 0),
    primary key (lottery_id, position)
);

create table lottery_entries (
    lottery_id integer not null references lotteries (id),
    user_id text not null,
    cost integer not null default 0,
    chat_id text,
    entered_at integer not null,
    primary key (lottery_id, user_id)
);

-- One prize per lottery and winner: a second draw cannot add a winner.
create table lottery_winners (
    lottery_id integer not null references lotteries (id),
    user_id text not null,
    draw_position integer not null,
    prize_position integer not null,
    outcome text not null,                 -- 'points', 'redeemed', 'out_of_stock'
    primary key (lottery_id, user_id)
);

-- The daily rollups count lottery entries (per chat and community-wide).
alter table analytics_daily add column lottery_entries integer not null default 0;
