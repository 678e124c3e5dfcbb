-- Nothing lost (issue 6): run leases with fencing tokens, the dispatch time
-- the sweeper reads, and the transactional outbox.
--
-- lease_owner: the executor driving the run (NULL: nobody); lease_token:
-- incremented on every acquire, and every executor write carries the token it
-- acquired, so a stale owner's writes are refused; lease_expires_at: ms since
-- the epoch, pushed forward by the owner's heartbeat.
ALTER TABLE workflow_runs ADD COLUMN lease_owner TEXT;
ALTER TABLE workflow_runs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflow_runs ADD COLUMN lease_expires_at INTEGER;
-- When an execution request for the run was last written to the outbox.
ALTER TABLE workflow_runs ADD COLUMN dispatched_at INTEGER;
-- RenewRunLeases: the runs one owner holds.
CREATE INDEX workflow_runs_lease_owner ON workflow_runs (lease_owner) WHERE lease_owner IS NOT NULL;

-- Messages to publish once the transaction that wrote them commits. The
-- relay claims due rows (available_at <= now, pushing available_at forward
-- while it publishes), deletes what the queue accepted and defers the rest.
CREATE TABLE outbox (
  id           INTEGER PRIMARY KEY,
  topic        TEXT    NOT NULL,
  key          TEXT    NOT NULL,
  payload      TEXT    NOT NULL,
  created_at   INTEGER NOT NULL,
  available_at INTEGER NOT NULL,
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT
);
CREATE INDEX outbox_due ON outbox (available_at, id);
