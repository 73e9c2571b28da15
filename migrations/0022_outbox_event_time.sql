-- When WeCom says the event a row answers happened (the callback's
-- CreateTime, unix seconds), for routes whose validity runs from the event
-- rather than from when the row was written: a welcome code can be used for
-- 20 s after its add_external_contact event. NULL for other rows.
alter table outbox add column event_at integer;
