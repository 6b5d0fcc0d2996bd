-- Fold deal images (sign +1 or -1) into report_deal_periods and report_open_pipeline.
-- The images placeholder is either the change log being consumed (DELETE ... RETURNING) or,
-- on a full rebuild, every deal as a +1 image. Sums and counts only: adding a
-- group's deltas to its stored row is exact, whatever order changes came in.
-- Only month rows are kept (quarters and years are summed when read). Per-owner
-- rows take the owner's name from users in this same snapshot. Rows are sent
-- in key order, so a full rebuild lays them out in the order reads want.
-- The on_conflict_<table> placeholders: on an incremental run, ON CONFLICT DO UPDATE adding
-- each sum and count to the stored row of the same group (crmtasks/aggregates.py
-- writes it from the table's list of sums); empty on a full rebuild, whose
-- tables start empty. Returns what it read and wrote, the months touched, and
-- the keys of groups that emptied (the run then deletes those rows).
WITH images AS (
    {images}
),
grouped AS (
    SELECT report_deal_outcome(stage) AS outcome,
           CASE WHEN report_deal_outcome(stage) IS NULL THEN stage END AS open_stage,
           CASE WHEN report_deal_outcome(stage) IS NOT NULL THEN date_trunc('month', close_date)::date END AS month,
           owner_id,
           count(*) AS images_read,
           sum(sign) AS deal_count,
           coalesce(sum(sign * amount), 0) AS amount_sum,
           coalesce(sum(sign) FILTER (WHERE amount IS NOT NULL), 0) AS amount_count,
           coalesce(sum(sign * amount * probability), 0) AS amount_probability_sum,
           coalesce(sum(sign * (close_date - (created_at AT TIME ZONE 'UTC')::date)), 0) AS cycle_days_sum
    FROM images
    GROUP BY 1, 2, 3, 4
),
monthly AS (
    -- Closed deals without a close_date have no month: no period report counts them.
    SELECT month, owner_id,
           coalesce(sum(deal_count) FILTER (WHERE outcome = 'won'), 0) AS won_count,
           coalesce(sum(amount_sum) FILTER (WHERE outcome = 'won'), 0) AS won_amount_sum,
           coalesce(sum(amount_count) FILTER (WHERE outcome = 'won'), 0) AS won_amount_count,
           coalesce(sum(cycle_days_sum) FILTER (WHERE outcome = 'won'), 0) AS won_cycle_days_sum,
           coalesce(sum(deal_count) FILTER (WHERE outcome = 'lost'), 0) AS lost_count,
           coalesce(sum(cycle_days_sum) FILTER (WHERE outcome = 'lost'), 0) AS lost_cycle_days_sum
    FROM grouped
    WHERE outcome IS NOT NULL AND month IS NOT NULL
    GROUP BY month, owner_id
),
rolled_up AS (
    -- Each month's deltas, per owner and for all owners. Only months are stored (migration 0014): a quarter or a
    -- year is summed from its months when read, so a change writes two rows, not six.
    SELECT 'month' AS grain, monthly.month AS period_start, scopes.all_owners,
           CASE WHEN scopes.all_owners THEN NULL ELSE monthly.owner_id END AS owner_id,
           sum(won_count) AS won_count, sum(won_amount_sum) AS won_amount_sum,
           sum(won_amount_count) AS won_amount_count, sum(won_cycle_days_sum) AS won_cycle_days_sum,
           sum(lost_count) AS lost_count, sum(lost_cycle_days_sum) AS lost_cycle_days_sum
    FROM monthly
    CROSS JOIN (VALUES (false), (true)) AS scopes (all_owners)
    GROUP BY 1, 2, 3, 4
    HAVING sum(won_count) <> 0 OR sum(won_amount_sum) <> 0 OR sum(won_amount_count) <> 0
        OR sum(won_cycle_days_sum) <> 0 OR sum(lost_count) <> 0 OR sum(lost_cycle_days_sum) <> 0
),
periods AS (
    INSERT INTO report_deal_periods AS stored
        (grain, period_start, all_owners, owner_id, owner_name, owner_active, won_count, won_amount_sum,
         won_amount_count, won_cycle_days_sum, lost_count, lost_cycle_days_sum)
    SELECT r.grain, r.period_start, r.all_owners, r.owner_id, owners.full_name, owners.is_active, r.won_count,
           r.won_amount_sum, r.won_amount_count, r.won_cycle_days_sum, r.lost_count, r.lost_cycle_days_sum
    FROM rolled_up r
    LEFT JOIN users AS owners ON owners.id = r.owner_id
    ORDER BY r.period_start, r.owner_id, r.grain, r.all_owners
    {on_conflict_report_deal_periods}
    RETURNING stored.period_start, stored.owner_id, stored.grain, stored.all_owners,
              stored.won_count = 0 AND stored.lost_count = 0 AS emptied
),
pipeline AS (
    INSERT INTO report_open_pipeline AS stored
        (all_owners, owner_id, owner_name, owner_active, stage, deal_count, amount_sum, amount_count,
         amount_probability_sum)
    SELECT p.all_owners, p.owner_id, owners.full_name, owners.is_active, p.stage, p.deal_count, p.amount_sum,
           p.amount_count, p.amount_probability_sum
    FROM (
        SELECT scopes.all_owners, CASE WHEN scopes.all_owners THEN NULL ELSE grouped.owner_id END AS owner_id,
               grouped.open_stage AS stage, sum(deal_count) AS deal_count, sum(amount_sum) AS amount_sum,
               sum(amount_count) AS amount_count, sum(amount_probability_sum) AS amount_probability_sum
        FROM grouped
        CROSS JOIN (VALUES (false), (true)) AS scopes (all_owners)
        WHERE grouped.outcome IS NULL
        GROUP BY 1, 2, 3
        HAVING sum(deal_count) <> 0 OR sum(amount_sum) <> 0 OR sum(amount_count) <> 0
            OR sum(amount_probability_sum) <> 0
    ) AS p
    LEFT JOIN users AS owners ON owners.id = p.owner_id
    ORDER BY p.owner_id, p.stage, p.all_owners
    {on_conflict_report_open_pipeline}
    RETURNING stored.owner_id, stored.stage, stored.all_owners, stored.deal_count = 0 AS emptied
)
SELECT (SELECT coalesce(sum(images_read), 0) FROM grouped) AS images_read,
       (SELECT count(*) FROM periods) + (SELECT count(*) FROM pipeline) AS rows_written,
       (SELECT array_agg(DISTINCT month ORDER BY month) FROM monthly) AS months,
       -- Groups whose every deal left: the run deletes these rows next.
       json_build_object(
           'report_deal_periods', (SELECT json_agg(json_build_object('period_start', period_start,
               'owner_id', owner_id, 'grain', grain, 'all_owners', all_owners)) FROM periods WHERE emptied),
           'report_open_pipeline', (SELECT json_agg(json_build_object('owner_id', owner_id, 'stage', stage,
               'all_owners', all_owners)) FROM pipeline WHERE emptied)
       ) AS emptied
