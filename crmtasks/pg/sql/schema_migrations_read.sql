-- version -> complete. Read through to_jsonb so that a ledger older than the
-- column (every row of it complete) reads the same without being altered.
SELECT m.version, coalesce((to_jsonb(m) ->> 'complete')::boolean, true)
FROM schema_migrations AS m
