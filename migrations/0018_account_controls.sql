-- Owners can disable a console account (it can then neither sign in nor use
-- its sessions or API tokens), and an API token can carry an expiry.
alter table admin_users add column disabled_at integer;
alter table admin_api_tokens add column expires_at integer;
