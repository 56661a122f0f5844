-- Who submitted a job: the subject (`sub`) of the bearer token that created it, or NULL when
-- the API ran without authentication (AUTH=off) or the job was made by the system. Reads of a
-- job are limited to its owner (or a holder of the jobs:admin scope) by the API, not here.
-- Adding a nullable column with no default rewrites nothing: instant on a large table.

ALTER TABLE jobs ADD COLUMN owner text;
