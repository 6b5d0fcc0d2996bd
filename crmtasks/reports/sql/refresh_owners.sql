-- Copy the current name and active flag of the users logged in
-- report_owner_changes into their per-owner aggregate rows, consuming the log
-- rows this snapshot sees. Returns how many distinct owners were refreshed.
WITH changed AS (
    DELETE FROM report_owner_changes RETURNING owner_id
),
owners AS (
    SELECT users.id, users.full_name, users.is_active
    FROM users
    WHERE users.id IN (SELECT owner_id FROM changed)
),
deal_periods AS (
    UPDATE report_deal_periods AS t SET owner_name = owners.full_name, owner_active = owners.is_active
    FROM owners WHERE t.owner_id = owners.id AND NOT t.all_owners
    RETURNING 1
),
pipeline AS (
    UPDATE report_open_pipeline AS t SET owner_name = owners.full_name, owner_active = owners.is_active
    FROM owners WHERE t.owner_id = owners.id AND NOT t.all_owners
    RETURNING 1
),
lead_periods AS (
    UPDATE report_lead_periods AS t SET owner_name = owners.full_name, owner_active = owners.is_active
    FROM owners WHERE t.owner_id = owners.id AND NOT t.all_owners
    RETURNING 1
),
account_segments AS (
    UPDATE report_account_segments AS t SET owner_name = owners.full_name, owner_active = owners.is_active
    FROM owners WHERE t.owner_id = owners.id AND NOT t.all_owners
    RETURNING 1
)
SELECT (SELECT count(DISTINCT owner_id) FROM changed) AS owners_refreshed,
       (SELECT count(*) FROM deal_periods) + (SELECT count(*) FROM pipeline) + (SELECT count(*) FROM lead_periods)
       + (SELECT count(*) FROM account_segments) AS rows_written
