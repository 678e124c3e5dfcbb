-- The sweeper's backoff (issue 7): how many times in a row the sweeper has
-- dispatched the run again without an executor taking it in between. A run
-- that merely waits in a long queue backlog is dispatched again after
-- stranded_after, then 2x, 4x ... that (capped at one hour), instead of once
-- every stranded_after. 0 for a new or retried run; see
-- Store::ListStrandedRuns.
ALTER TABLE workflow_runs ADD COLUMN redispatch_count INTEGER NOT NULL DEFAULT 0;
