-- The audit log's everyday questions, made cheap (issue 14, point 3).
--
-- 1. "All activity of the last day / week": a BRIN index on occurred_at.
--    Rows arrive in time order, so within a month's partition a block range
--    summary of a few bytes skips every block outside the window. The index
--    is created here ON ONLY the parent, which touches no partition and takes
--    no lock writers wait for; the daily maintenance
--    (crmtasks.audit.partition_indexes) then builds it on each existing
--    partition with CREATE INDEX CONCURRENTLY and attaches it. Partitions
--    created from now on get it when they are attached (on an empty table).
CREATE INDEX IF NOT EXISTS audit_log_occurred_at_brin ON ONLY audit_log USING brin (occurred_at);

-- 2. "Rows per month and entity": each month before the current one is
--    counted once by the daily maintenance (crmtasks.audit.month_counts) and
--    the counts kept here, keyed by the partition's OID so that a month that
--    was detached, archived or restored (a new table, a new OID) never
--    reuses counts of another table. A row is only valid while nothing in
--    its month changed: the statement triggers below delete a month's row in
--    the same transaction as any insert, update or delete of a row in that
--    month, so a reader's snapshot sees either a count that matches the rows
--    or no count at all (then the month is counted live).
CREATE TABLE audit_month_counts (
    month          date PRIMARY KEY CHECK (extract(day FROM month) = 1),
    partition_oid  oid NOT NULL,
    counts         jsonb NOT NULL,              -- {"lead": 123, "deal": 45, ...}; entities absent = 0
    counted_at     timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_month_counts_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        DELETE FROM audit_month_counts
        WHERE month IN (SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM new_rows);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM audit_month_counts
        WHERE month IN (SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM old_rows);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_month_counts_inserted AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION audit_month_counts_forget();
CREATE TRIGGER audit_month_counts_updated AFTER UPDATE ON audit_log
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION audit_month_counts_forget();
CREATE TRIGGER audit_month_counts_deleted AFTER DELETE ON audit_log
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION audit_month_counts_forget();
