-- Member tags synced to WeCom customer tags, and segment pushes to external
-- contacts as owner-confirmed 1:1 mass messages. Times are UTC unix seconds.

-- Who owns each external contact: the staff member an add_external_contact
-- event named (externalcontact/mark_tag and 1:1 mass messages must name a
-- member who has the customer as a contact). The latest event wins.
create table customer_owners (
    external_user_id text primary key,
    staff_user_id text not null,
    added_at integer not null
);
create index customer_owners_staff on customer_owners (staff_user_id);

-- Every change to an external contact's member tags: its id makes the outbox
-- key of the WeCom sync unique per change (adding, removing and adding a tag
-- again are three effects), and the log shows what was synced and why.
create table member_tag_changes (
    id integer primary key autoincrement,
    user_id text not null,
    tag text not null,
    change text not null check (change in ('add', 'remove')),
    at integer not null
);
create index member_tag_changes_user on member_tag_changes (user_id, id);

-- WeCom's ids for our tag names (get_corp_tag_list / add_corp_tag), per tag
-- group, so each name is resolved or created once.
create table wecom_customer_tags (
    group_name text not null,
    tag_name text not null,
    tag_id text not null,
    group_id text not null,
    primary key (group_name, tag_name)
);

-- The outbox gains two routes: customer_tag (externalcontact/mark_tag) and
-- customer_mass (add_msg_template with chat_type single). SQLite cannot
-- alter a check constraint, so the table is rebuilt with the same columns.
create table outbox_new (
    id integer primary key autoincrement,
    idempotency_key text not null unique,
    route text not null check (route in
        ('app_group', 'webhook', 'smart_bot', 'customer_group_mass', 'member', 'welcome_code',
         'app_chat_remove', 'customer_tag', 'customer_mass')),
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
    updated_at integer not null,
    call_started_at integer,
    answer_lost_at integer,
    delivery_note text,
    event_at integer
);
insert into outbox_new (id, idempotency_key, route, target, app, payload_json, priority, status,
                        attempts, next_attempt_at, lease_owner, lease_expires_at, last_error,
                        wecom_msgid, created_at, sent_at, updated_at, call_started_at,
                        answer_lost_at, delivery_note, event_at)
select id, idempotency_key, route, target, app, payload_json, priority, status,
       attempts, next_attempt_at, lease_owner, lease_expires_at, last_error,
       wecom_msgid, created_at, sent_at, updated_at, call_started_at,
       answer_lost_at, delivery_note, event_at
from outbox;
drop table outbox;
alter table outbox_new rename to outbox;
create index outbox_due on outbox (status, next_attempt_at);
create index outbox_route_status on outbox (route, status);
