-- The deal part of a run's statement (crmtasks/reports/fold.py): CTEs, no WITH, no final SELECT.
-- deal_images: the change log being consumed (DELETE ... RETURNING) or, on a full rebuild, every deal as a
-- +1 image. Each deltas_<table> CTE holds one row per group whose sums or counts change, with the change
-- (the sum of sign * value over its images): fold.py adds each to the stored row of its group, inserts the
-- groups that are new and deletes the groups that empty. Sums and counts only: adding a group's deltas is
-- exact, whatever order changes came in. One grouping pass per table: GROUPING SETS give the per-owner
-- groups and the all-owners ones (owner left out) together. Only months are stored (migration 0014).
-- Closed deals without a close_date have no month: no period report counts them.
deal_images AS (
    {images}
),
deltas_report_deal_periods AS (
    SELECT 'month'::text AS grain, period_start, GROUPING(owner_id) = 1 AS all_owners, owner_id,
           sum(CASE WHEN won THEN sign ELSE 0 END) AS won_count,
           coalesce(sum(sign * amount) FILTER (WHERE won), 0) AS won_amount_sum,
           sum(CASE WHEN won AND amount IS NOT NULL THEN sign ELSE 0 END) AS won_amount_count,
           coalesce(sum(sign * cycle_days) FILTER (WHERE won), 0) AS won_cycle_days_sum,
           sum(CASE WHEN won THEN 0 ELSE sign END) AS lost_count,
           coalesce(sum(sign * cycle_days) FILTER (WHERE NOT won), 0) AS lost_cycle_days_sum
    FROM (
        -- Truncated as a timestamp without time zone: date_trunc of a date goes through timestamptz and the
        -- session's time zone, for the same month.
        SELECT date_trunc('month', close_date::timestamp)::date AS period_start, owner_id, sign,
               report_deal_outcome(stage) = 'won' AS won, amount,
               close_date - (created_at AT TIME ZONE 'UTC')::date AS cycle_days
        FROM deal_images
        WHERE report_deal_outcome(stage) IS NOT NULL AND close_date IS NOT NULL
    ) AS closed
    GROUP BY GROUPING SETS ((period_start, owner_id), (period_start))
    HAVING sum(CASE WHEN won THEN sign ELSE 0 END) <> 0 OR sum(CASE WHEN won THEN 0 ELSE sign END) <> 0
        OR sum(sign * amount) FILTER (WHERE won) <> 0 OR sum(CASE WHEN won AND amount IS NOT NULL THEN sign ELSE 0 END) <> 0
        OR sum(sign * cycle_days) FILTER (WHERE won) <> 0 OR sum(sign * cycle_days) FILTER (WHERE NOT won) <> 0
),
-- Open deals (no outcome) per stage, whatever their close_date.
deltas_report_open_pipeline AS (
    SELECT GROUPING(owner_id) = 1 AS all_owners, owner_id, stage, sum(sign) AS deal_count,
           coalesce(sum(sign * amount), 0) AS amount_sum,
           sum(CASE WHEN amount IS NOT NULL THEN sign ELSE 0 END) AS amount_count,
           coalesce(sum(sign * amount * probability), 0) AS amount_probability_sum
    FROM deal_images
    WHERE report_deal_outcome(stage) IS NULL
    GROUP BY GROUPING SETS ((owner_id, stage), (stage))
    HAVING sum(sign) <> 0 OR sum(sign * amount) <> 0 OR sum(CASE WHEN amount IS NOT NULL THEN sign ELSE 0 END) <> 0
        OR sum(sign * amount * probability) <> 0
)
