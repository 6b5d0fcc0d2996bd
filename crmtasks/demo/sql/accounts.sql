-- Accounts (salts 2xx): a company name, skewed industry and owner, a region;
-- industry blank for 5%%, region for 3%%. Ids grow with created_at.
INSERT INTO accounts (id, name, industry, region, owner_id, created_at, updated_at)
SELECT n,
       pg_temp.crmtasks_demo_company(200, n),
       CASE WHEN pg_temp.crmtasks_demo_rand(210, n) >= 0.05
            THEN pg_temp.crmtasks_demo_pick_skewed(%(industries)s::text[], 211, n) END,
       CASE WHEN pg_temp.crmtasks_demo_rand(220, n) >= 0.03
            THEN pg_temp.crmtasks_demo_pick(%(regions)s::text[], 221, n) END,
       pg_temp.crmtasks_demo_pick_skewed(%(owners)s::bigint[], 230, n),
       pg_temp.crmtasks_demo_at(age),
       pg_temp.crmtasks_demo_at(pg_temp.crmtasks_demo_last_touch(250, n, age))
FROM (
    SELECT n, pg_temp.crmtasks_demo_age(240, n, %(accounts)s) AS age
    FROM generate_series(1, %(accounts)s) AS n
    OFFSET 0
) g
