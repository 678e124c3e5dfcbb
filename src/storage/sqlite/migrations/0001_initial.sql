-- 0001: the initial schema of the embedded store.
-- Timestamps are integer milliseconds since the Unix epoch (TimeMs); JSON
-- documents are TEXT (NULL stands for JSON null). Status values are the
-- contract shared with the PostgreSQL schema and every service:
--   runs:  PENDING RUNNING COMPLETED FAILED CANCELLED
--   steps: RUNNING COMPLETED FAILED SKIPPED CANCELLED

-- One row per workflow; name/description are those of the latest version.
-- Deleting sets deleted_at; the row and its versions stay for the runs.
CREATE TABLE workflows (
  id             TEXT    PRIMARY KEY,
  name           TEXT    NOT NULL,
  description    TEXT    NOT NULL DEFAULT '',
  latest_version INTEGER NOT NULL,
  created_at     INTEGER NOT NULL,
  updated_at     INTEGER NOT NULL,
  deleted_at     INTEGER
);
-- Names are unique among live workflows only: a deleted name can be reused.
CREATE UNIQUE INDEX workflows_live_name ON workflows (name) WHERE deleted_at IS NULL;
-- ListWorkflows: live workflows, newest first.
CREATE INDEX workflows_live_created ON workflows (created_at, id) WHERE deleted_at IS NULL;

CREATE TABLE workflow_versions (
  workflow_id TEXT    NOT NULL REFERENCES workflows (id),
  version     INTEGER NOT NULL,
  name        TEXT    NOT NULL,
  description TEXT    NOT NULL DEFAULT '',
  plan        TEXT    NOT NULL,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (workflow_id, version)
) WITHOUT ROWID;

CREATE TABLE workflow_runs (
  id               TEXT    PRIMARY KEY,
  workflow_id      TEXT    NOT NULL,
  workflow_version INTEGER NOT NULL,
  status           TEXT    NOT NULL
                   CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
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
  FOREIGN KEY (workflow_id, workflow_version) REFERENCES workflow_versions (workflow_id, version)
);
-- CreateRun's idempotency: one run per (workflow, key).
CREATE UNIQUE INDEX workflow_runs_idempotency ON workflow_runs (workflow_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
-- ListRuns (newest first, keyset pagination on (created_at, id)), unfiltered,
-- by workflow and by status; the last also serves ListUnfinishedRuns.
CREATE INDEX workflow_runs_created ON workflow_runs (created_at, id);
CREATE INDEX workflow_runs_workflow ON workflow_runs (workflow_id, created_at, id);
CREATE INDEX workflow_runs_status ON workflow_runs (status, created_at, id);

CREATE TABLE step_executions (
  id            INTEGER PRIMARY KEY,
  run_id        TEXT    NOT NULL REFERENCES workflow_runs (id),
  step_id       TEXT    NOT NULL,
  item_index    INTEGER,
  agent_name    TEXT    NOT NULL DEFAULT '',
  attempt       INTEGER NOT NULL DEFAULT 1,
  status        TEXT    NOT NULL
                CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')),
  input         TEXT,
  output        TEXT,
  error_message TEXT,
  started_at    INTEGER NOT NULL,
  completed_at  INTEGER
);
-- ListSteps: a run's executions in start order.
CREATE INDEX step_executions_run ON step_executions (run_id, started_at, id);

CREATE TABLE agents (
  name            TEXT    PRIMARY KEY,
  url             TEXT    NOT NULL,
  timeout_ms      INTEGER NOT NULL,
  max_concurrency INTEGER NOT NULL DEFAULT 0,
  metadata        TEXT,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL
);
