-- notary-signer schema (SQLite): the columns of Go notary-signer's private_keys table.
CREATE TABLE IF NOT EXISTS private_keys (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at       TEXT,
    updated_at       TEXT,
    deleted_at       TEXT,
    key_id           TEXT NOT NULL UNIQUE,
    encryption_alg   TEXT NOT NULL,
    keywrap_alg      TEXT NOT NULL,
    algorithm        TEXT NOT NULL,
    passphrase_alias TEXT NOT NULL,
    public           BLOB NOT NULL,
    private          BLOB NOT NULL,
    gun              TEXT NOT NULL,
    role             TEXT NOT NULL,
    last_used        TEXT,
    UNIQUE (key_id, algorithm)
);
CREATE INDEX IF NOT EXISTS private_keys_unused ON private_keys (gun, role, algorithm, last_used);
