-- 0001: the initial PostgreSQL schema. Same tables, columns and status values
-- as the SQLite schema (src/storage/sqlite/migrations/0001_initial.sql); the
-- status values are the contract shared with every service:
--   runs:  PENDING RUNNING COMPLETED FAILED CANCELLED
--   steps: RUNNING COMPLETED FAILED SKIPPED CANCELLED
--
-- Types:
-- - Timestamps are BIGINT milliseconds since the Unix epoch (TimeMs), set by
--   the application, as in SQLite.
-- - JSON documents are TEXT, not jsonb: jsonb cannot hold U+0000, which agents
--   may return, and TEXT keeps the document exactly as written. NULL stands
--   for JSON null.
-- - Ids and agent names are COLLATE "C": pagination and ListAgents order by
--   bytes, as SQLite does, whatever the database's default collation.

-- Versions applied by the migrator, one row each. The migrator creates this
-- table itself before reading it; it is repeated here so that this file reads
-- as the whole schema.
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT    NOT NULL,
  applied_at BIGINT  NOT NULL
);

-- One row per workflow; name/description are those of the latest version.
-- Deleting sets deleted_at; the row and its versions stay for the runs.
CREATE TABLE workflows (
  id             TEXT COLLATE "C" PRIMARY KEY,
  name           TEXT    NOT NULL,
  description    TEXT    NOT NULL DEFAULT '',
  latest_version INTEGER NOT NULL,
  created_at     BIGINT  NOT NULL,
  updated_at     BIGINT  NOT NULL,
  deleted_at     BIGINT
);
-- Names are unique among live workflows only: a deleted name can be reused.
CREATE UNIQUE INDEX workflows_live_name ON workflows (name) WHERE deleted_at IS NULL;
-- ListWorkflows: live workflows, newest first (keyset on (created_at, id)).
CREATE INDEX workflows_live_created ON workflows (created_at, id) WHERE deleted_at IS NULL;

CREATE TABLE workflow_versions (
  workflow_id TEXT COLLATE "C" NOT NULL REFERENCES workflows (id),
  version     INTEGER NOT NULL,
  name        TEXT    NOT NULL,
  description TEXT    NOT NULL DEFAULT '',
  plan        TEXT    NOT NULL,
  created_at  BIGINT  NOT NULL,
  PRIMARY KEY (workflow_id, version)
);

CREATE TABLE workflow_runs (
  id               TEXT COLLATE "C" PRIMARY KEY,
  workflow_id      TEXT COLLATE "C" NOT NULL,
  workflow_version INTEGER NOT NULL,
  status           TEXT    NOT NULL
                   CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
  input            TEXT,
  output           TEXT,
  error_message    TEXT,
  idempotency_key  TEXT,
  cancel_requested BOOLEAN NOT NULL DEFAULT false,
  cancelled_by     TEXT,
  cancel_reason    TEXT,
  attempt          INTEGER NOT NULL DEFAULT 1,
  created_at       BIGINT  NOT NULL,
  started_at       BIGINT,
  completed_at     BIGINT,
  updated_at       BIGINT  NOT NULL,
  FOREIGN KEY (workflow_id, workflow_version) REFERENCES workflow_versions (workflow_id, version)
);
-- CreateRun's idempotency: one run per (workflow, key); the arbiter of
-- INSERT ... ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX workflow_runs_idempotency ON workflow_runs (workflow_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
-- ListRuns (newest first, keyset pagination on (created_at, id)), unfiltered,
-- by workflow and by status.
CREATE INDEX workflow_runs_created ON workflow_runs (created_at, id);
CREATE INDEX workflow_runs_workflow ON workflow_runs (workflow_id, created_at, id);
CREATE INDEX workflow_runs_status ON workflow_runs (status, created_at, id);
-- ListUnfinishedRuns (oldest first): small, since most runs are finished.
CREATE INDEX workflow_runs_unfinished ON workflow_runs (created_at, id) WHERE status IN ('PENDING', 'RUNNING');

CREATE TABLE step_executions (
  id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id        TEXT COLLATE "C" NOT NULL REFERENCES workflow_runs (id),
  step_id       TEXT    NOT NULL,
  item_index    INTEGER,
  agent_name    TEXT    NOT NULL DEFAULT '',
  attempt       INTEGER NOT NULL DEFAULT 1,
  status        TEXT    NOT NULL
                CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')),
  input         TEXT,
  output        TEXT,
  error_message TEXT,
  started_at    BIGINT  NOT NULL,
  completed_at  BIGINT
);
-- ListSteps: a run's executions in start order.
CREATE INDEX step_executions_run ON step_executions (run_id, started_at, id);

CREATE TABLE agents (
  name            TEXT COLLATE "C" PRIMARY KEY,
  url             TEXT    NOT NULL,
  timeout_ms      BIGINT  NOT NULL,
  max_concurrency INTEGER NOT NULL DEFAULT 0,
  metadata        TEXT,
  created_at      BIGINT  NOT NULL,
  updated_at      BIGINT  NOT NULL
);
