-- notary-signer schema (PostgreSQL): exactly Go notary-signer's private_keys table, so a
-- database migrated by Go is used as-is and ours can be handed back to Go.
CREATE TABLE IF NOT EXISTS private_keys (
    id               SERIAL PRIMARY KEY,
    created_at       TIMESTAMP,
    updated_at       TIMESTAMP,
    deleted_at       TIMESTAMP,
    key_id           VARCHAR(255) NOT NULL,
    encryption_alg   VARCHAR(255) NOT NULL,
    keywrap_alg      VARCHAR(255) NOT NULL,
    algorithm        VARCHAR(50)  NOT NULL,
    passphrase_alias VARCHAR(50)  NOT NULL,
    public           BYTEA        NOT NULL,
    private          BYTEA        NOT NULL,
    gun              VARCHAR(255) NOT NULL,
    role             VARCHAR(255) NOT NULL,
    last_used        TIMESTAMP,
    CONSTRAINT key_id UNIQUE (key_id),
    CONSTRAINT key_id_2 UNIQUE (key_id, algorithm)
);
