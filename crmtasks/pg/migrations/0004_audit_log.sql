-- The audit log: who did what to which record, when. The CRM's largest table,
-- so it is partitioned by month on occurred_at (RANGE, UTC month bounds) and
-- old months leave the database by whole partitions (archive or delete),
-- never by DELETE ... WHERE.
--
-- There is deliberately NO DEFAULT partition: PostgreSQL refuses
-- DETACH PARTITION ... CONCURRENTLY while one exists, and the archive path
-- depends on that non-blocking detach. The daily job creates partitions
-- ahead (current month + CRMTASKS_AUDIT_PREMAKE_MONTHS), and
-- crmtasks.audit.record() creates a missing month on demand when an insert
-- fails with "no partition of relation found for row".
--
-- The partitions themselves are created by code (crmtasks.audit.partitions),
-- not here: their names and bounds are computed from the month.

CREATE TABLE audit_log (
    id          bigserial,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor_id    bigint,                         -- users.id; NULL = the system. No FK: rows outlive users and move to archives.
    action      text NOT NULL,                  -- create, update, delete, view, export, login, ...
    entity      text NOT NULL,                  -- lead, deal, contact, account, user, ...
    entity_id   bigint NOT NULL,
    changes     jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip_address  inet,
    CONSTRAINT audit_log_pkey PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- history(entity, entity_id, since, until): one index range per pruned partition.
CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_id, occurred_at);
-- "what did this user do": the second most common audit question.
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, occurred_at);

-- The retention state machine, one row per month that retention has started
-- on. It is the intent log that lets a re-run after kill -9 resume: the
-- catalog says where a detach really is, the archive directory says whether
-- a verified archive exists, and this row says which month, which table and
-- which bounds (read from the catalog before the detach) the work is about.
--   detaching -> detached -> archived -> dropped    (policy archive)
--   detaching -> detached -> dropped                (policy delete)
--   restored: `crmtasks audit restore` re-attached the month.
CREATE TABLE audit_retention_ledger (
    month           date PRIMARY KEY CHECK (extract(day FROM month) = 1),
    partition_name  text NOT NULL,
    range_start     timestamptz NOT NULL,
    range_end       timestamptz NOT NULL CHECK (range_end > range_start),
    policy          text NOT NULL CHECK (policy IN ('archive', 'delete')),
    state           text NOT NULL CHECK (state IN ('detaching', 'detached', 'archived', 'dropped', 'restored')),
    row_count       bigint,
    min_id          bigint,
    max_id          bigint,
    data_file       text,
    file_sha256     text,
    rows_checksum   text,
    file_bytes      bigint,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
