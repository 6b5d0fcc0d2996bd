-- Rows 1..rows were inserted with explicit ids: the next default id is rows + 1
-- (for an empty table: 1, the sequence not yet called).
SELECT setval(pg_get_serial_sequence(%(table)s, 'id'), greatest(%(rows)s, 1), %(rows)s > 0)
