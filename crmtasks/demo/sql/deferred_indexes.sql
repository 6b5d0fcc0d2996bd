-- The plain (non-unique, not backing a constraint) indexes of the given
-- tables, as (schema, name, CREATE INDEX statement): dropped for the demo data
-- load and built again after it.
SELECT n.nspname, ic.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
WHERE i.indrelid = ANY (%(tables)s::regclass[]) AND NOT i.indisunique
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY ic.relname
