-- The collation of each text column text search reads (crmtasks.search.text_case):
-- the in-memory path matches ILIKE only under the database's default collation (oid 100).
-- Parameters: %(table)s, %(columns)s (text[]). Rows: column name, collation oid.
SELECT a.attname::text, a.attcollation::bigint
FROM pg_attribute AS a
WHERE a.attrelid = to_regclass(%(table)s) AND a.attname = ANY(%(columns)s) AND NOT a.attisdropped
