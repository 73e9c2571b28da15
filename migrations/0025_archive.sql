-- The message archive (会话内容存档) pulled by `serve`: where the pull stands,
-- every record pulled, and the archive's own alerts.

-- One row: the highest `seq` stored (the next pull starts after it), and when
-- a pull last reached the archive's end (the lag alert measures from there).
create table archive_cursor (
    id integer primary key check (id = 1),
    seq integer not null,
    updated_at integer not null,
    caught_up_at integer not null,
    -- The `caught_up_at` whose lag was already alerted (once per episode).
    lag_alerted_for integer
);

-- Every record once (msgid). A record that did not decrypt keeps its
-- ciphertext and the reason, to be decrypted once the key is supplied.
create table archive_messages (
    msgid text primary key,
    seq integer not null,
    publickey_ver integer not null,
    action text,
    msgtype text,
    room_id text,
    sender text,
    msg_time integer,
    body_json text,
    failure text,
    encrypt_random_key text,
    encrypt_chat_msg text,
    -- The recall record that took this message back.
    recalled_by text,
    pulled_at integer not null
);
create index archive_messages_seq on archive_messages (seq);
create index archive_messages_failed on archive_messages (seq) where failure is not null;

-- Operator alerts the archive raised, each once per subject (a missing key
-- version, a lag episode).
create table archive_alerts (
    kind text not null,
    subject text not null,
    detail text not null,
    raised_at integer not null,
    primary key (kind, subject)
);
