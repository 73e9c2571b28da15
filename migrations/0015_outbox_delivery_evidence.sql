-- When a call for this row may have reached WeCom although its answer was
-- lost (timed out, cut off, or the sender stopped mid-call); the time that
-- call started. A later refusal that only a used code earns (42022 on a
-- smart-bot response_url, 41051 on a welcome code) then proves delivery, and a
-- member message is resent with WeCom's duplicate check covering that call.
alter table outbox add column answer_lost_at integer;
-- Set when a row counts as sent without a success answer, e.g.
-- 'confirmed by refusal: ...'. Metrics and the console show these apart.
alter table outbox add column delivery_note text;

-- API-wide pauses after WeCom's frequency (45009) or concurrency (45033)
-- refusal: no call reaches the API before paused_until, then one probe call
-- (probe_started_at) decides whether the rest may follow.
create table outbox_api_pause (
    rate_key text primary key,
    paused_until integer not null,
    probe_started_at integer,
    reason text not null
);
