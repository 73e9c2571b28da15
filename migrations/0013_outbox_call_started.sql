-- When the sender began the WeCom call under the current lease. A lease that
-- expires with this set means the sender stopped mid-call: WeCom may already
-- have delivered the message. Routes WeCom does not deduplicate are then parked
-- for a person instead of being sent a second time.
alter table outbox add column call_started_at integer;
