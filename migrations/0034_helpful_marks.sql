-- 有用 (热心助人): a member marks another member's message helpful by sending
-- the smart bot 「有用」 quoting it. Peer recognition, so unlike 精华 one
-- message can be marked by many members, but by each giver only once: the key
-- is (message, giver), and a repeated or redelivered command changes nothing.
-- Same columns as essence_marks so one store function writes both.
create table helpful_marks (
    message_id text not null,
    chat_id text not null,
    author text not null,
    marked_by text not null,
    marked_at integer not null,
    day text not null,
    primary key (message_id, marked_by)
);
-- The honour board counts marks received per author and period.
create index helpful_marks_day on helpful_marks (day, author);
-- The daily cap counts the marks a giver handed out on a community day.
create index helpful_marks_giver on helpful_marks (marked_by, day);
