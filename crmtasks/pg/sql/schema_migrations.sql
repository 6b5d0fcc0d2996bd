-- The migration ledger: one row per migration whose transactional part committed.
-- complete is false while the migration's CREATE INDEX CONCURRENTLY statements
-- (its NNNN_name.concurrent.sql) are not all built and valid: a killed run
-- leaves it false and the next `crmtasks migrate` finishes them.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    complete   boolean NOT NULL DEFAULT true
);
-- A ledger written before concurrent index builds existed: every row of it is complete.
-- Checked first, so a current ledger is never locked by ALTER TABLE.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'schema_migrations'::regclass AND attname = 'complete' AND NOT attisdropped) THEN
        ALTER TABLE schema_migrations ADD COLUMN complete boolean NOT NULL DEFAULT true;
    END IF;
END
$$;
