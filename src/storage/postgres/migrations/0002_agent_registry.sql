-- The agent registry (issue 4): how an agent is reached (HTTP or a Kafka
-- topic) and what the registry last observed of its health.
-- transport: 'http' (url) or 'kafka' (topic; url is '').
-- health: 'unknown' until a check or heartbeat, then 'healthy' or 'unhealthy'
-- (health_error says why). last_seen_at: last healthy check or heartbeat;
-- health_checked_at: last check or heartbeat of either outcome (ms since epoch).
ALTER TABLE agents
  ADD COLUMN transport         TEXT   NOT NULL DEFAULT 'http',
  ADD COLUMN topic             TEXT,
  ADD COLUMN health_url        TEXT,
  ADD COLUMN health            TEXT   NOT NULL DEFAULT 'unknown',
  ADD COLUMN health_error      TEXT,
  ADD COLUMN last_seen_at      BIGINT,
  ADD COLUMN health_checked_at BIGINT;
