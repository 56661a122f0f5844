-- The outbox: a job is written in the same transaction as whatever asked for it, with due_at
-- set, and the sweeper (api/jobs/outbox.py) (re)sends the message of every job whose due_at has
-- passed: not sent yet, sent but never started, or running on a lease that ran out. NULL once
-- the job has ended. The partial index holds only the jobs with a due time, so the sweeper's
-- query reads the few that matter, never the table. Adding a nullable column rewrites nothing.

ALTER TABLE jobs ADD COLUMN due_at timestamptz;
CREATE INDEX jobs_due_at ON jobs (due_at) WHERE due_at IS NOT NULL;
