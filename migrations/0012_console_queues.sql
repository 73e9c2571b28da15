-- Console: per-IP login throttling and handled member reports.

-- The client address of a failed sign-in ('' when unknown), so failures from
-- one address across many usernames can be limited too.
alter table admin_login_failures add column ip text not null default '';
create index admin_login_failures_ip on admin_login_failures (ip, at);

-- A manager acted on a reported message (all its reports at once): struck the
-- author or dismissed the reports.
alter table moderation_reports add column handled_at integer;
alter table moderation_reports add column handled_by text;
alter table moderation_reports add column handling text;
create index moderation_reports_open on moderation_reports (handled_at, chat_id, fingerprint);
