-- Of the given index names, those that exist, with pg_index.indisvalid. An
-- index whose CREATE INDEX CONCURRENTLY was interrupted exists but is not
-- valid: the planner ignores it, while every write still maintains it.
SELECT c.relname, i.indisvalid
FROM unnest(%(names)s::text[]) AS wanted(name)
JOIN pg_class AS c ON c.oid = to_regclass(quote_ident(wanted.name))
JOIN pg_index AS i ON i.indexrelid = c.oid
ORDER BY c.relname
