-- Catalog stock follows the rule set. `configured` is the stock figure that
-- `remaining` was last reconciled with: a new rule-set version naming a
-- different stock adds the difference to what is left (a restock; what was
-- sold stays sold), recorded in stock_events like every other stock change.
alter table catalog_stock add column configured integer;
update catalog_stock set configured = remaining + (
    select count(*) from redemptions r
    where r.item = catalog_stock.item and r.status <> 'cancelled'
);

create table stock_events (
    id integer primary key autoincrement,
    item text not null,
    delta integer not null,
    -- initial: first stocked; restock: a rule-set version changed the stock;
    -- cancel: a cancelled redemption returned its unit.
    reason text not null check (reason in ('initial', 'restock', 'cancel')),
    detail text not null default '',
    created_at integer not null
);
create index stock_events_item on stock_events (item, id);
