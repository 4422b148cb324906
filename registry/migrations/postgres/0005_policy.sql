-- Signed-image policy (spec 4.8): one policy per scope (the global default, a
-- namespace, a repository; the most specific wins), a global version bumped by every
-- change (replicas poll it), the history of changes, the binding of signing keys to
-- users, and the audit trail of decisions. Times are Unix seconds; policies are JSON.

CREATE TABLE policy_state (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO policy_state (id, version) VALUES (1, 0);

-- kind: global | namespace | repository; name: '' for global.
CREATE TABLE policies (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);

-- One row per change (the version it produced); body NULL for a deletion.
CREATE TABLE policy_history (
    version BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    body TEXT,
    previous TEXT,
    changed_by TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX policy_history_scope ON policy_history(kind, name, version);

-- Who owns which signing key of a repository (key ids as Notary lists them). Users are
-- kept by name: a binding of a deleted user matches no team.
CREATE TABLE signer_keys (
    repository TEXT NOT NULL,
    key_id TEXT NOT NULL,
    gun TEXT NOT NULL,
    role TEXT NOT NULL,
    user_name TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (repository, key_id)
);
CREATE INDEX signer_keys_user ON signer_keys(user_name);

CREATE TABLE policy_audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    gate TEXT NOT NULL,
    operation TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag TEXT,
    digest TEXT,
    user_name TEXT,
    allowed BOOLEAN NOT NULL,
    warned BOOLEAN NOT NULL,
    reason TEXT NOT NULL,
    policy_version BIGINT NOT NULL
);
CREATE INDEX policy_audit_repository ON policy_audit(repository, id);
CREATE INDEX policy_audit_at ON policy_audit(at);
