-- The cluster-wide job queue (DTR-style): one row per job, claimed atomically by one
-- worker, heartbeated while it runs. Times are Unix seconds; parameters and progress
-- are JSON text.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    -- waiting | running | done | error | cancel_request | cancel | worker_dead
    status TEXT NOT NULL,
    worker_id TEXT,
    scheduled_at BIGINT NOT NULL,
    started_at BIGINT,
    last_updated BIGINT NOT NULL,
    heartbeat_at BIGINT,
    parameters TEXT NOT NULL,
    progress TEXT NOT NULL,
    error TEXT
);
CREATE INDEX jobs_status ON jobs(status, scheduled_at);
CREATE INDEX jobs_action ON jobs(action, scheduled_at);

CREATE TABLE job_logs (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX job_logs_job ON job_logs(job_id, id);

-- Periodic jobs: the replica whose compare-and-set moves next_run forward enqueues.
CREATE TABLE job_schedules (
    action TEXT PRIMARY KEY,
    interval_secs BIGINT NOT NULL,
    next_run BIGINT NOT NULL
);

-- GC never deletes an object a blob row still names: this index makes that check cheap.
CREATE INDEX blobs_location ON blobs(location);

-- Db::pending_deletes takes the oldest first: without this index every batch of a long
-- queue would scan the whole queue.
CREATE INDEX pending_deletes_queued ON pending_deletes(queued_at);
