-- The manager's web console: accounts, sessions, API tokens, login failures
-- (for rate limiting) and the audit log of every admin action.
-- Secrets are never stored: sessions and API tokens are kept as SHA-256 hashes
-- of the random value the client holds; passwords as argon2id PHC strings.

create table admin_users (
    id integer primary key autoincrement,
    username text not null unique,
    password_hash text not null,
    role text not null check (role in ('owner', 'operator', 'viewer')),
    created_at integer not null
);

create table admin_sessions (
    token_hash text primary key,
    user_id integer not null references admin_users (id) on delete cascade,
    csrf_token text not null,
    created_at integer not null,
    expires_at integer not null
);
create index admin_sessions_expiry on admin_sessions (expires_at);

create table admin_api_tokens (
    id integer primary key autoincrement,
    token_hash text not null unique,
    user_id integer not null references admin_users (id) on delete cascade,
    label text not null,
    created_at integer not null,
    revoked_at integer
);

create table admin_login_failures (
    username text not null,
    at integer not null
);
create index admin_login_failures_user on admin_login_failures (username, at);

create table admin_audit (
    id integer primary key autoincrement,
    at integer not null,
    actor text not null,             -- username, or 'api:<label>' for a token
    action text not null,            -- e.g. 'rules.apply', 'redemption.fulfil'
    target text not null default '',
    detail text not null default ''
);
create index admin_audit_at on admin_audit (at);
