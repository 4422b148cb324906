-- The GUN and role each key of a remote signer was created for: the server signs a GUN's
-- timestamp/snapshot only with keys created for that GUN and role (Go's signer does not
-- report the GUN of a key, so the server records it).
CREATE TABLE IF NOT EXISTS remote_key_scopes (
    key_id      TEXT    PRIMARY KEY,
    gun         TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);
