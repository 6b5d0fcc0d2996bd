-- The CRM core: roles, users and the four record types the jobs work on,
-- plus the run history every job writes to.
-- Foreign keys are named <name>_id so reporting tools can join without an ORM.

CREATE TABLE roles (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    parent_id   bigint REFERENCES roles (id) ON DELETE RESTRICT,
    CONSTRAINT roles_not_own_parent CHECK (parent_id IS DISTINCT FROM id)
);
CREATE INDEX roles_parent_id_idx ON roles (parent_id);

CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    username    text NOT NULL UNIQUE,
    full_name   text NOT NULL,
    email       text,
    role_id     bigint REFERENCES roles (id) ON DELETE SET NULL,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_role_id_idx ON users (role_id);

CREATE TABLE accounts (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    industry    text,
    region      text,
    owner_id    bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_owner_id_idx ON accounts (owner_id);
CREATE INDEX accounts_updated_at_idx ON accounts (updated_at);

CREATE TABLE contacts (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    email       text,
    account_id  bigint REFERENCES accounts (id) ON DELETE SET NULL,
    owner_id    bigint REFERENCES users (id) ON DELETE SET NULL,
    lead_source text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contacts_account_id_idx ON contacts (account_id);
CREATE INDEX contacts_owner_id_idx ON contacts (owner_id);
CREATE INDEX contacts_updated_at_idx ON contacts (updated_at);

CREATE TABLE leads (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    company     text,
    email       text,
    status      text NOT NULL,
    industry    text,
    source      text,
    rating      text,
    owner_id    bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leads_owner_id_idx ON leads (owner_id);
CREATE INDEX leads_created_at_idx ON leads (created_at);
CREATE INDEX leads_updated_at_idx ON leads (updated_at);

CREATE TABLE deals (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    account_id  bigint REFERENCES accounts (id) ON DELETE SET NULL,
    owner_id    bigint REFERENCES users (id) ON DELETE SET NULL,
    stage       text NOT NULL,
    amount      numeric(14, 2),
    probability smallint CHECK (probability BETWEEN 0 AND 100),
    close_date  date,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deals_account_id_idx ON deals (account_id);
CREATE INDEX deals_owner_id_idx ON deals (owner_id);
CREATE INDEX deals_close_date_idx ON deals (close_date);
CREATE INDEX deals_updated_at_idx ON deals (updated_at);

-- One row per job run, written by the run recorder (worker middleware and
-- the in-process runner alike). 'running' is the state between start and
-- finish; a run whose process was killed stays 'running' until reaped.
CREATE TABLE task_runs (
    id          bigserial PRIMARY KEY,
    task        text NOT NULL,
    trigger     text NOT NULL CHECK (trigger IN ('schedule', 'manual', 'retry')),
    message_id  text,
    status      text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    stats       jsonb NOT NULL DEFAULT '{}'::jsonb,
    error       text,
    host        text,
    pid         integer
);
CREATE INDEX task_runs_task_started_at_idx ON task_runs (task, started_at DESC);
CREATE INDEX task_runs_started_at_idx ON task_runs (started_at DESC);
