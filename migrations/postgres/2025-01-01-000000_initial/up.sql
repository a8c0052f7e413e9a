-- The initial llmur schema (PostgreSQL). Kept column for column in step with
-- migrations/sqlite so one diesel schema serves both backends: ids are TEXT (UUID strings,
-- collated "C" so they sort by byte, which is UUID order), timestamps BIGINT Unix
-- milliseconds, limits and prices TEXT (JSON), secrets BYTEA.

-- The catalog change counter: one row, bumped in the same transaction as every write to
-- connections, deployments, links, virtual keys or projects.
CREATE TABLE catalog_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 0);

CREATE TABLE users (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    -- the email, ASCII-lowercased: what uniqueness and look-ups compare
    email_key TEXT NOT NULL,
    role TEXT NOT NULL,
    blocked BOOLEAN NOT NULL,
    email_verified BOOLEAN NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email_key);

CREATE TABLE sessions (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL
);
CREATE UNIQUE INDEX sessions_token_hash ON sessions (token_hash);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE projects (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    limits TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    id TEXT COLLATE "C" PRIMARY KEY,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role TEXT NOT NULL
);
CREATE UNIQUE INDEX memberships_user_project ON memberships (user_id, project_id);
CREATE INDEX memberships_project_id ON memberships (project_id);

CREATE TABLE invites (
    id TEXT COLLATE "C" PRIMARY KEY,
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    code TEXT NOT NULL,
    role TEXT NOT NULL,
    valid_until BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX invites_code ON invites (code);
CREATE INDEX invites_project_id ON invites (project_id);

CREATE TABLE connections (
    id TEXT COLLATE "C" PRIMARY KEY,
    provider TEXT NOT NULL,
    api_endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    api_version TEXT,
    api_key_version INTEGER NOT NULL,
    api_key_nonce BYTEA NOT NULL,
    api_key_ciphertext BYTEA NOT NULL,
    price TEXT,
    limits TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE deployments (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    access TEXT NOT NULL,
    strategy TEXT NOT NULL,
    blocked BOOLEAN NOT NULL,
    limits TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX deployments_name ON deployments (name);

CREATE TABLE connection_deployments (
    id TEXT COLLATE "C" PRIMARY KEY,
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    deployment_id TEXT COLLATE "C" NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    weight INTEGER NOT NULL CHECK (weight BETWEEN 0 AND 100)
);
CREATE UNIQUE INDEX connection_deployments_pair
    ON connection_deployments (connection_id, deployment_id);
CREATE INDEX connection_deployments_deployment_id ON connection_deployments (deployment_id);

CREATE TABLE virtual_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    key_hash TEXT NOT NULL,
    alias TEXT NOT NULL,
    description TEXT,
    blocked BOOLEAN NOT NULL,
    limits TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX virtual_keys_key_hash ON virtual_keys (key_hash);
CREATE INDEX virtual_keys_project_id ON virtual_keys (project_id);

CREATE TABLE virtual_key_deployments (
    id TEXT COLLATE "C" PRIMARY KEY,
    virtual_key_id TEXT COLLATE "C" NOT NULL REFERENCES virtual_keys (id) ON DELETE CASCADE,
    deployment_id TEXT COLLATE "C" NOT NULL REFERENCES deployments (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX virtual_key_deployments_pair
    ON virtual_key_deployments (virtual_key_id, deployment_id);
CREATE INDEX virtual_key_deployments_deployment_id ON virtual_key_deployments (deployment_id);

-- One row per upstream attempt. No foreign keys: logs outlive the keys, projects and
-- deployments they name. `seq` orders rows by insertion (ties on started_at).
CREATE TABLE request_logs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL,
    request_id TEXT NOT NULL,
    virtual_key_id TEXT COLLATE "C" NOT NULL,
    project_id TEXT COLLATE "C" NOT NULL,
    deployment_id TEXT COLLATE "C" NOT NULL,
    deployment TEXT NOT NULL,
    connection_id TEXT COLLATE "C" NOT NULL,
    upstream_model TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    stream BOOLEAN NOT NULL,
    status INTEGER NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    usage_source TEXT NOT NULL,
    cost_usd DOUBLE PRECISION,
    -- Unix milliseconds
    started_at BIGINT NOT NULL,
    -- microseconds
    ttfb_us BIGINT,
    duration_us BIGINT NOT NULL,
    client_disconnected BOOLEAN NOT NULL,
    error TEXT
);
CREATE INDEX request_logs_key_started ON request_logs (virtual_key_id, started_at);
CREATE INDEX request_logs_started ON request_logs (started_at);
