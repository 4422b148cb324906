-- Signed-image policy (spec 4.8): one policy per scope (the global default, a
-- namespace, a repository; the most specific wins), a global version bumped by every
-- change (replicas poll it), the history of changes, the binding of signing keys to
-- users, and the audit trail of decisions. Times are Unix seconds; policies are JSON.

CREATE TABLE policy_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO policy_state (id, version) VALUES (1, 0);

-- kind: global | namespace | repository; name: '' for global.
CREATE TABLE policies (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);

-- One row per change (the version it produced); body NULL for a deletion.
CREATE TABLE policy_history (
    version INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    body TEXT,
    previous TEXT,
    changed_by TEXT NOT NULL,
    changed_at INTEGER NOT NULL
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
    added_at INTEGER NOT NULL,
    PRIMARY KEY (repository, key_id)
);
CREATE INDEX signer_keys_user ON signer_keys(user_name);

CREATE TABLE policy_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    gate TEXT NOT NULL,
    operation TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag TEXT,
    digest TEXT,
    user_name TEXT,
    allowed INTEGER NOT NULL,
    warned INTEGER NOT NULL,
    reason TEXT NOT NULL,
    policy_version INTEGER NOT NULL
);
CREATE INDEX policy_audit_repository ON policy_audit(repository, id);
CREATE INDEX policy_audit_at ON policy_audit(at);
