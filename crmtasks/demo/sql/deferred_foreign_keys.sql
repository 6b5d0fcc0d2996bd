-- The foreign keys of the given tables, as (schema, table, name, definition):
-- dropped for the demo data load and added back after it.
SELECT n.nspname, t.relname, c.conname, pg_get_constraintdef(c.oid)
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE c.contype = 'f' AND c.conrelid = ANY (%(tables)s::regclass[])
ORDER BY t.relname, c.conname
