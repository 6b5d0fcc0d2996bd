-- "All activity of the last 24 hours" read three times the rows it returns (issue 14, point 3 (a)).
--
-- The BRIN index of 0011 summarises 128 pages per entry: the rows of a recent
-- window sit in the last ~60-100 pages of the current month, and the two
-- ranges they fall in made the scan read 167 pages and recheck 11,400 rows
-- to return 3,900 (1.5M-row bench). With 16 pages per entry it reads 71
-- pages and rechecks 300. The index stays tiny (a month's partition of 1,700
-- pages: 107 entries, under 3 pages), and an insert costs what it did.
--
-- Created ON ONLY audit_log: no partition is read or built here. The daily
-- maintenance builds it on every existing partition CONCURRENTLY and
-- attaches it (crmtasks.audit.partition_indexes); new partitions get it when
-- attached. Once it is valid, the maintenance retires the 0011 index
-- (crmtasks.audit.index_retirement): PostgreSQL can neither change a
-- partitioned index's pages_per_range nor drop it CONCURRENTLY.
--
-- Writers: CREATE INDEX ... ON ONLY still takes a SHARE lock on audit_log
-- itself (not its partitions) for the catalog change, so it waits for any
-- transaction that has written an audit row and not ended, and inserts
-- arriving meanwhile wait behind it. The lock_timeout bounds that: at most
-- 200 ms, then the migration fails (one transaction, nothing half done) and
-- is run again later, as 0017 does.
SET LOCAL lock_timeout = '200ms';
CREATE INDEX IF NOT EXISTS audit_log_occurred_at_brin16 ON ONLY audit_log
    USING brin (occurred_at) WITH (pages_per_range = 16);
