-- Chats as WeCom has them (docs/wecom.md#chat-kinds): an app group (created by qunyun), a
-- customer group (no robot and no smart bot can join one) or an internal group (an optional
-- webhook robot key, an optional smart bot). The old route names mixed these up; SQLite cannot
-- change a check constraint in place, so the table is rebuilt.
create table chats_kinds (
    chat_id text primary key,
    name text not null default '',
    route text not null check (route in ('app_group', 'customer_group', 'internal_group')),
    robot_key text,                  -- internal groups: the webhook key of the robot added to it
    smart_bot text,                  -- internal groups: the [[wecom.bots]] name sitting in it ('' = not recorded)
    owner text,
    admins_json text not null default '[]',
    tags_json text not null default '[]',
    member_version text,
    needs_resync integer not null default 0,
    raid_until integer,
    updated_at integer not null,
    check (route = 'internal_group' or (robot_key is null and smart_bot is null))
);

-- 'webhook' and 'smart_bot' rows were internal groups. A 'customer_group' row with a robot key
-- had a working robot, which only an internal group can have: it becomes an internal group
-- (group sync turns it back into a customer group, without the key, if WeCom lists it as one).
insert into chats_kinds (chat_id, name, route, robot_key, smart_bot, owner, admins_json, tags_json,
                         member_version, needs_resync, raid_until, updated_at)
select chat_id, name,
       case
           when route = 'app_group' then 'app_group'
           when route in ('webhook', 'smart_bot') then 'internal_group'
           when robot_key is not null and robot_key != '' then 'internal_group'
           else 'customer_group'
       end,
       case when route = 'app_group' or (route = 'customer_group' and coalesce(robot_key, '') = '')
            then null else nullif(robot_key, '') end,
       case when route = 'smart_bot' then '' else null end,
       owner, admins_json, tags_json, member_version, needs_resync, raid_until, updated_at
from chats;

drop table chats;
alter table chats_kinds rename to chats;
