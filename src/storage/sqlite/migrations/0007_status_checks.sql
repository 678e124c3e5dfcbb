-- The status CHECKs as comparisons (issue 7). SQLite evaluates
-- `status IN (<more than two constants>)` by building a temporary b-tree of
-- the list on every statement that checks it: every step's insert and result
-- and every run transition opened and closed one (~5 % of the executor's CPU
-- per step, perf). An OR of equalities is the same constraint, checked with
-- plain comparisons.
--
-- SQLite cannot change a CHECK in place, so both tables are rebuilt (its
-- documented procedure: create the new table, copy, drop the old, rename,
-- recreate the indexes). ApplyMigrations runs this with foreign-key
-- enforcement off and checks every foreign key before it commits. The column
-- lists are the tables as migrations 0001-0006 left them, in the same order.

CREATE TABLE workflow_runs_new (
  id               TEXT    PRIMARY KEY,
  workflow_id      TEXT    NOT NULL,
  workflow_version INTEGER NOT NULL,
  status           TEXT    NOT NULL
                   CHECK (status = 'PENDING' OR status = 'RUNNING' OR status = 'COMPLETED'
                          OR status = 'FAILED' OR status = 'CANCELLED'),
  input            TEXT,
  output           TEXT,
  error_message    TEXT,
  idempotency_key  TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  cancelled_by     TEXT,
  cancel_reason    TEXT,
  attempt          INTEGER NOT NULL DEFAULT 1,
  created_at       INTEGER NOT NULL,
  started_at       INTEGER,
  completed_at     INTEGER,
  updated_at       INTEGER NOT NULL,
  traceparent      TEXT,
  lease_owner      TEXT,
  lease_token      INTEGER NOT NULL DEFAULT 0,
  lease_expires_at INTEGER,
  dispatched_at    INTEGER,
  redispatch_count INTEGER NOT NULL DEFAULT 0,
  FOREIGN KEY (workflow_id, workflow_version) REFERENCES workflow_versions (workflow_id, version)
);
INSERT INTO workflow_runs_new
  SELECT id, workflow_id, workflow_version, status, input, output, error_message, idempotency_key,
         cancel_requested, cancelled_by, cancel_reason, attempt, created_at, started_at, completed_at,
         updated_at, traceparent, lease_owner, lease_token, lease_expires_at, dispatched_at,
         redispatch_count
  FROM workflow_runs;
DROP TABLE workflow_runs;
ALTER TABLE workflow_runs_new RENAME TO workflow_runs;
CREATE UNIQUE INDEX workflow_runs_idempotency ON workflow_runs (workflow_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX workflow_runs_created ON workflow_runs (created_at, id);
CREATE INDEX workflow_runs_workflow ON workflow_runs (workflow_id, created_at, id);
CREATE INDEX workflow_runs_status ON workflow_runs (status, created_at, id);
CREATE INDEX workflow_runs_lease_owner ON workflow_runs (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE step_executions_new (
  id            INTEGER PRIMARY KEY,
  run_id        TEXT    NOT NULL REFERENCES workflow_runs (id),
  step_id       TEXT    NOT NULL,
  item_index    INTEGER,
  agent_name    TEXT    NOT NULL DEFAULT '',
  attempt       INTEGER NOT NULL DEFAULT 1,
  status        TEXT    NOT NULL
                CHECK (status = 'RUNNING' OR status = 'COMPLETED' OR status = 'FAILED'
                       OR status = 'SKIPPED' OR status = 'CANCELLED'),
  input         TEXT,
  output        TEXT,
  error_message TEXT,
  started_at    INTEGER NOT NULL,
  completed_at  INTEGER
);
INSERT INTO step_executions_new
  SELECT id, run_id, step_id, item_index, agent_name, attempt, status, input, output, error_message,
         started_at, completed_at
  FROM step_executions;
DROP TABLE step_executions;
ALTER TABLE step_executions_new RENAME TO step_executions;
CREATE INDEX step_executions_run ON step_executions (run_id, started_at, id);
