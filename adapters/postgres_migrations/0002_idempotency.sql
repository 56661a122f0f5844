-- Idempotency-Key records (adapters/postgres_idempotency.py). status is NULL while the first
-- request is in progress; the claim is one INSERT ... ON CONFLICT DO UPDATE ... WHERE, so
-- concurrent claims of one key queue on its row and exactly one wins.

CREATE TABLE idempotency (
    key          text COLLATE "C" NOT NULL,
    fingerprint  text NOT NULL,
    token        text NOT NULL,
    expires_at   timestamptz NOT NULL,
    locked_until timestamptz NOT NULL,
    status       integer,
    headers      jsonb,
    body         bytea,
    CONSTRAINT idempotency_pkey PRIMARY KEY (key)
);

-- Purging expired records walks this instead of the whole table.
CREATE INDEX idempotency_expires_at ON idempotency (expires_at);
