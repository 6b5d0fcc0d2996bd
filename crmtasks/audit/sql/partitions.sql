-- Every partition of audit_log with its REAL bounds, read from the catalog
-- (pg_class.relpartbound), never inferred from its name. Bounds come out as
-- timestamptz (the bound literal carries its UTC offset, so the session time
-- zone does not matter); MINVALUE/MAXVALUE come out as NULL.
WITH parts AS (
    SELECT c.oid,
           c.relname,
           i.inhdetachpending AS detach_pending,
           pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'audit_log'::regclass
), parsed AS (
    SELECT oid, relname, detach_pending, bound,
           regexp_match(bound, '^FOR VALUES FROM \((.*)\) TO \((.*)\)$') AS range
    FROM parts
)
SELECT relname,
       CASE WHEN range IS NULL OR range[1] = 'MINVALUE' THEN NULL ELSE btrim(range[1], '''')::timestamptz END AS range_start,
       CASE WHEN range IS NULL OR range[2] = 'MAXVALUE' THEN NULL ELSE btrim(range[2], '''')::timestamptz END AS range_end,
       bound = 'DEFAULT' AS is_default,
       detach_pending,
       pg_total_relation_size(oid) AS total_bytes
FROM parsed
ORDER BY range_start NULLS FIRST, relname
