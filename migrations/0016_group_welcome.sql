-- Customer-group welcomes the ways WeCom allows (docs/wecom.md#group-welcome-templates).

-- The group welcome material (入群欢迎语素材) qunyun keeps in WeCom: the id
-- `group_welcome_template/add` returned and the text WeCom now holds, so a
-- changed rule set edits that template instead of adding another (100 per corp).
create table group_welcome_material (
    id integer primary key check (id = 1),
    template_id text not null,
    material text not null,
    synced_at integer not null
);

-- One merged digest of a customer group's newcomers, sent 1:1 to its owner
-- (qunyun cannot post there). `mass_key` is the outbox key of the
-- owner-confirmed mass message once someone asked for it (at most one).
create table owner_digests (
    id integer primary key,
    chat_id text not null,
    owner text not null,
    newcomers_json text not null,
    suggestion text not null,
    created_at integer not null,
    mass_key text,
    mass_requested_by text,
    mass_requested_at integer
);
create index owner_digests_chat on owner_digests (chat_id, created_at);
