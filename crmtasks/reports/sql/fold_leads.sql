-- Fold lead images (sign +1 or -1) into report_lead_periods; see report_fold_deals.sql.
-- A lead's period is its created_at month in UTC.
WITH images AS (
    {images}
),
monthly AS (
    SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS month, owner_id, source,
           count(*) AS images_read,
           sum(sign) AS lead_count,
           coalesce(sum(sign) FILTER (WHERE report_lead_converted(status)), 0) AS converted_count
    FROM images
    GROUP BY 1, 2, 3
),
rolled_up AS (
    -- Months only, per owner and for all owners (see fold_deals.sql).
    SELECT 'month' AS grain, monthly.month AS period_start, scopes.all_owners,
           CASE WHEN scopes.all_owners THEN NULL ELSE monthly.owner_id END AS owner_id, monthly.source,
           sum(lead_count) AS lead_count, sum(converted_count) AS converted_count
    FROM monthly
    CROSS JOIN (VALUES (false), (true)) AS scopes (all_owners)
    GROUP BY 1, 2, 3, 4, 5
    HAVING sum(lead_count) <> 0 OR sum(converted_count) <> 0
),
periods AS (
    INSERT INTO report_lead_periods AS stored
        (grain, period_start, all_owners, owner_id, owner_name, owner_active, source, lead_count, converted_count)
    SELECT r.grain, r.period_start, r.all_owners, r.owner_id, owners.full_name, owners.is_active, r.source,
           r.lead_count, r.converted_count
    FROM rolled_up r
    LEFT JOIN users AS owners ON owners.id = r.owner_id
    ORDER BY r.period_start, r.source, r.owner_id, r.grain, r.all_owners
    {on_conflict_report_lead_periods}
    RETURNING stored.period_start, stored.source, stored.owner_id, stored.grain, stored.all_owners,
              stored.lead_count = 0 AS emptied
)
SELECT (SELECT coalesce(sum(images_read), 0) FROM monthly) AS images_read,
       (SELECT count(*) FROM periods) AS rows_written,
       (SELECT array_agg(DISTINCT month ORDER BY month) FROM monthly) AS months,
       json_build_object('report_lead_periods', (SELECT json_agg(json_build_object('period_start', period_start,
           'source', source, 'owner_id', owner_id, 'grain', grain, 'all_owners', all_owners))
           FROM periods WHERE emptied)) AS emptied
