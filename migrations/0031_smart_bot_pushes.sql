-- Smart bots on a long connection can push into a chat (aibot_send_msg), but
-- WeCom takes a push only into a conversation where a member has written to
-- the bot. Every push decision (scheduler, broadcasts, the capability table)
-- reads these two tables, so it knows the bot's mode without the config.

-- The bots the service last started with in long-connection mode (rewritten
-- at every start).
create table smart_bot_long_connections (
    bot text primary key,
    recorded_at integer not null
);

-- Conversations (a group's chatid, or a member's UserID 1:1) where a member
-- has written to a long-connection bot. Kept apart from the inbox, which
-- retention prunes.
create table smart_bot_conversations (
    bot text not null,
    conversation text not null,
    first_written_at integer not null,
    last_written_at integer not null,
    primary key (bot, conversation)
);
