-- Registry processes sharing this database: each registers a random id at start and
-- heartbeats; one silent for three of its intervals is reported unreachable. Unix seconds.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    heartbeat_interval BIGINT NOT NULL,
    version TEXT NOT NULL
);
CREATE INDEX replicas_heartbeat ON replicas(heartbeat_at);
