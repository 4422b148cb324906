-- Authentication and DTR-style RBAC. Times are Unix seconds. Access levels are stored
-- as integers so that "highest wins" is MAX(): 1 read-only, 2 read-write, 3 admin.

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- argon2id PHC string; never the password.
    password_hash TEXT NOT NULL,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

-- Organisations own the namespace of their name (a user and an organisation never share
-- a name: checked when either is created).
CREATE TABLE organizations (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Members of an organisation; owners manage its teams and repositories.
CREATE TABLE organization_members (
    org_id BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    owner BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX organization_members_user ON organization_members(user_id);

CREATE TABLE teams (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE team_members (
    team_id BIGINT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members(user_id);

-- Per-repository grants (a repository deleted takes its grants with it).
CREATE TABLE repository_user_access (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    level BIGINT NOT NULL CHECK (level BETWEEN 1 AND 3),
    PRIMARY KEY (repository_id, user_id)
);
CREATE INDEX repository_user_access_user ON repository_user_access(user_id);

CREATE TABLE repository_team_access (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    team_id BIGINT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    level BIGINT NOT NULL CHECK (level BETWEEN 1 AND 3),
    PRIMARY KEY (repository_id, team_id)
);
CREATE INDEX repository_team_access_team ON repository_team_access(team_id);

-- Namespace-wide team grants (DTR repositoryNamespaces/{ns}/teamAccess/{team}): apply to
-- every repository `ns/...`, existing or future; admin also lets the team create them.
CREATE TABLE namespace_team_access (
    namespace TEXT NOT NULL,
    team_id BIGINT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    level BIGINT NOT NULL CHECK (level BETWEEN 1 AND 3),
    PRIMARY KEY (namespace, team_id)
);
CREATE INDEX namespace_team_access_team ON namespace_team_access(team_id);

-- Descriptions set through the admin API.
CREATE TABLE repository_info (
    repository_id BIGINT PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    short_description TEXT NOT NULL DEFAULT '',
    long_description TEXT NOT NULL DEFAULT ''
);

-- Refresh (identity) tokens: only a SHA-256 of the token is stored.
CREATE TABLE refresh_tokens (
    id BIGSERIAL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens(expires_at);
