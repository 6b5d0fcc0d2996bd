-- The kept counts of months from %(since)s on, for partitions still attached
-- to audit_log: counts of a table since detached (archived) or replaced (a
-- restore creates a new table, with a new OID) are never read.
SELECT c.month, c.counts
FROM audit_month_counts c
JOIN pg_inherits i ON i.inhrelid = c.partition_oid AND i.inhparent = 'audit_log'::regclass
WHERE c.month >= %(since)s
