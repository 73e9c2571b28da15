-- Poll ballots per chat and day in the analytics rollups (issue: activities
-- counted alongside lottery entries and rewarded posts).
alter table analytics_daily add column votes integer not null default 0;
