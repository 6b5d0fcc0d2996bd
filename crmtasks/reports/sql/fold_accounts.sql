-- The account part of a run's statement; see fold_deals.sql.
account_images AS (
    {images}
),
deltas_report_account_segments AS (
    SELECT GROUPING(owner_id) = 1 AS all_owners, owner_id, industry, region, sum(sign) AS account_count
    FROM account_images
    GROUP BY GROUPING SETS ((owner_id, industry, region), (industry, region))
    HAVING sum(sign) <> 0
)
