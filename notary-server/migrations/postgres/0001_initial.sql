-- notary-server schema (PostgreSQL): the shape of Go Notary's tuf_files and changefeed,
-- plus server_keys for the local trust service (private keys sealed).
CREATE TABLE IF NOT EXISTS tuf_files (
    id          BIGSERIAL PRIMARY KEY,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    gun         TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    data        BYTEA   NOT NULL,
    sha256      TEXT    NOT NULL,
    UNIQUE (gun, role, version)
);
CREATE INDEX IF NOT EXISTS tuf_files_sha256 ON tuf_files (gun, role, sha256);

CREATE TABLE IF NOT EXISTS changefeed (
    id          BIGSERIAL PRIMARY KEY,
    created_at  TEXT    NOT NULL,
    gun         TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    sha256      TEXT    NOT NULL DEFAULT '',
    category    TEXT    NOT NULL DEFAULT 'update' CHECK (category IN ('update', 'deletion'))
);
CREATE INDEX IF NOT EXISTS changefeed_gun ON changefeed (gun);

CREATE TABLE IF NOT EXISTS server_keys (
    key_id      TEXT    PRIMARY KEY,
    gun         TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    algorithm   TEXT    NOT NULL,
    public      BYTEA   NOT NULL,
    sealed      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    last_used   TEXT
);
CREATE INDEX IF NOT EXISTS server_keys_gun_role ON server_keys (gun, role, algorithm);
