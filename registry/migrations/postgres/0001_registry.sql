-- Repositories, content and upload sessions. Times are Unix seconds.
CREATE TABLE repositories (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    public BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

-- One row per stored blob: where its bytes live (an object key, unique per upload, so a
-- blob collected and re-uploaded never shares a key with the copy being deleted), or,
-- for small blobs, the bytes themselves (`data`, location `inline:<digest>`): stored in
-- the same transaction as their metadata, with no file or object to sync.
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    location TEXT NOT NULL,
    data BYTEA,
    created_at BIGINT NOT NULL
);

-- Which repositories may serve which blobs (uploaded or mounted there).
CREATE TABLE repository_blobs (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest TEXT NOT NULL REFERENCES blobs(digest),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

-- Manifests are kept whole in the database (they are small and capped): a tag lookup is
-- one indexed read, never an object-store round trip.
CREATE TABLE manifests (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    artifact_type TEXT,
    subject TEXT,
    annotations TEXT,
    size BIGINT NOT NULL,
    body BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repository_id, subject);

-- What each manifest references: blobs (config, layers) and child manifests (indexes).
-- GC marks from these rows; a blob with a row here is never collected.
CREATE TABLE manifest_references (
    repository_id BIGINT NOT NULL,
    manifest_digest TEXT NOT NULL,
    child_digest TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, child_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_references_child ON manifest_references(child_digest);

CREATE TABLE tags (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_digest ON tags(repository_id, digest);

-- Upload sessions: received length, the running hash state (so any process can resume
-- hashing where the last one stopped) and the storage backend's own state.
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    size BIGINT NOT NULL,
    hash_state BYTEA NOT NULL,
    backend_state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX uploads_updated ON uploads(updated_at);

-- Objects whose database rows are gone, waiting to be deleted from storage (GC and
-- aborted uploads): deleting in the database first and the objects afterwards means an
-- interrupted sweep is simply resumed.
CREATE TABLE pending_deletes (
    location TEXT PRIMARY KEY,
    queued_at BIGINT NOT NULL
);
