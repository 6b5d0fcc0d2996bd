-- The lead part of a run's statement; see fold_deals.sql. A lead's period is its created_at month in UTC.
lead_images AS (
    {images}
),
deltas_report_lead_periods AS (
    SELECT 'month'::text AS grain, period_start, GROUPING(owner_id) = 1 AS all_owners, owner_id, source,
           sum(sign) AS lead_count,
           sum(CASE WHEN report_lead_converted(status) THEN sign ELSE 0 END) AS converted_count
    FROM (
        SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS period_start, owner_id, source, sign, status
        FROM lead_images
    ) AS dated
    GROUP BY GROUPING SETS ((period_start, source, owner_id), (period_start, source))
    HAVING sum(sign) <> 0 OR sum(CASE WHEN report_lead_converted(status) THEN sign ELSE 0 END) <> 0
)
