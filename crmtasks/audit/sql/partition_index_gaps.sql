-- For every index ON ONLY audit_log that is not valid yet (not on every
-- partition), each attached partition that lacks a child of it: the parent
-- index, the partition, the access method and key (pg_get_indexdef after
-- "USING"), and the name of a leftover index of that name, if any (an
-- interrupted CREATE INDEX CONCURRENTLY leaves an invalid one behind).
SELECT parent.relname AS parent_index,
       part.relname AS partition,
       substring(pg_get_indexdef(pi.indexrelid) FROM ' USING (.*)$') AS method_and_key,
       left(part.relname || '_' || regexp_replace(parent.relname, '^audit_log_', ''), 63) AS child_name
FROM pg_index pi
JOIN pg_class parent ON parent.oid = pi.indexrelid
JOIN pg_inherits tables ON tables.inhparent = pi.indrelid
JOIN pg_class part ON part.oid = tables.inhrelid
WHERE pi.indrelid = 'audit_log'::regclass
  AND NOT pi.indisvalid
  AND NOT EXISTS (
      SELECT 1
      FROM pg_inherits children
      JOIN pg_index ci ON ci.indexrelid = children.inhrelid
      WHERE children.inhparent = pi.indexrelid AND ci.indrelid = part.oid)
ORDER BY parent.relname, part.relname
