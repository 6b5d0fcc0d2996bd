-- Fold account images (sign +1 or -1) into report_account_segments; see report_fold_deals.sql.
WITH images AS (
    {images}
),
grouped AS (
    SELECT owner_id, industry, region, count(*) AS images_read, sum(sign) AS account_count
    FROM images
    GROUP BY 1, 2, 3
),
segments AS (
    INSERT INTO report_account_segments AS stored (all_owners, owner_id, industry, region, account_count)
    SELECT scopes.all_owners, CASE WHEN scopes.all_owners THEN NULL ELSE grouped.owner_id END,
           grouped.industry, grouped.region, sum(account_count)
    FROM grouped
    CROSS JOIN (VALUES (false), (true)) AS scopes (all_owners)
    GROUP BY 1, 2, 3, 4
    HAVING sum(account_count) <> 0
    ON CONFLICT ON CONSTRAINT report_account_segments_key DO UPDATE SET
        account_count = stored.account_count + excluded.account_count
    RETURNING 1
)
SELECT (SELECT coalesce(sum(images_read), 0) FROM grouped) AS images_read,
       (SELECT count(*) FROM segments) AS rows_written,
       NULL::date[] AS months
