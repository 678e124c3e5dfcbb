-- Access control (issue 6): API keys. A key is "af_<id>_<secret>"; only the
-- SHA-256 of the secret is kept (secret_hash, lowercase hex), so the table
-- never holds a usable key. role: 'viewer', 'operator' or 'admin'.
-- Times are ms since the epoch; revoked_at set = the key no longer works.
CREATE TABLE api_keys (
  id           TEXT    PRIMARY KEY,
  name         TEXT    NOT NULL DEFAULT '',
  role         TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
  secret_hash  TEXT    NOT NULL,
  created_at   INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at   INTEGER
);
