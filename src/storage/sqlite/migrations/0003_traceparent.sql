-- W3C trace context (issue 5): the traceparent a run was triggered with, or
-- the one the API started for it ("00-<trace-id>-<parent-id>-<flags>").
-- Executors send the trace id with a new span id to agents on every call.
-- NULL for runs created before this migration (their trace id is derived
-- from the run id).
ALTER TABLE workflow_runs ADD COLUMN traceparent TEXT;
