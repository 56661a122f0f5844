-- Users and jobs, as the Store port needs them. Every rule the port states is a
-- constraint or a conditional UPDATE here, never a read-then-write in Python.
--
-- Ids are UUIDv7 strings kept as text with the "C" collation: byte order is
-- creation order (the listing's keyset), whatever the database's locale, and
-- the store accepts any string as SQLite, memory and DynamoDB do.
-- The constraint names are read by the store to tell which uniqueness rule broke.

CREATE TABLE users (
    id          text COLLATE "C" NOT NULL,
    email       text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     integer NOT NULL,
    welcomed_at timestamptz,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE jobs (
    id          text COLLATE "C" NOT NULL,
    task        text NOT NULL,
    payload     jsonb NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    attempts    integer NOT NULL,
    started_at  timestamptz,
    finished_at timestamptz,
    lease_until timestamptz,
    result      jsonb,
    error       text,
    CONSTRAINT jobs_pkey PRIMARY KEY (id),
    CONSTRAINT jobs_status_check
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed'))
);
