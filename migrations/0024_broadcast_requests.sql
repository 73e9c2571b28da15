-- A broadcast request's one-time key (the console form's hidden key or the
-- API's Idempotency-Key header), per actor, with the answer it got: a repeat
-- of the same key returns that answer and queues nothing. `request` is the
-- normalised input, so a key reused for a different message is refused.
create table broadcast_requests (
    actor text not null,
    request_key text not null,
    request text not null,
    broadcast_id text not null,
    answer text not null,
    created_at integer not null,
    primary key (actor, request_key)
);
