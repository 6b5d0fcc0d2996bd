-- Fold account images (sign +1 or -1) into report_account_segments; see report_fold_deals.sql.
WITH images AS (
    {images}
),
grouped AS (
    SELECT owner_id, industry, region, count(*) AS images_read, sum(sign) AS account_count
    FROM images
    GROUP BY 1, 2, 3
),
rolled_up AS (
    SELECT scopes.all_owners, CASE WHEN scopes.all_owners THEN NULL ELSE grouped.owner_id END AS owner_id,
           grouped.industry, grouped.region, sum(account_count) AS account_count
    FROM grouped
    CROSS JOIN (VALUES (false), (true)) AS scopes (all_owners)
    GROUP BY 1, 2, 3, 4
    HAVING sum(account_count) <> 0
),
segments AS (
    INSERT INTO report_account_segments AS stored
        (all_owners, owner_id, owner_name, owner_active, industry, region, account_count)
    SELECT r.all_owners, r.owner_id, owners.full_name, owners.is_active, r.industry, r.region, r.account_count
    FROM rolled_up r
    LEFT JOIN users AS owners ON owners.id = r.owner_id
    ORDER BY r.owner_id, r.industry, r.region, r.all_owners
    {on_conflict_report_account_segments}
    RETURNING stored.owner_id, stored.industry, stored.region, stored.all_owners, stored.account_count = 0 AS emptied
)
SELECT (SELECT coalesce(sum(images_read), 0) FROM grouped) AS images_read,
       (SELECT count(*) FROM segments) AS rows_written,
       NULL::date[] AS months,
       json_build_object('report_account_segments', (SELECT json_agg(json_build_object('owner_id', owner_id,
           'industry', industry, 'region', region, 'all_owners', all_owners)) FROM segments WHERE emptied)) AS emptied
