-- Deals (salts 5xx). Stage and probability come from parallel bags with the
-- same salt, so they always match. Closed deals closed on their last update;
-- open ones mostly expect to close within 6 months, some are overdue, some
-- have no date. Amounts (whole hundreds, 1,000 to 2M, median ~50k) are often
-- blank in early stages.
INSERT INTO deals (id, name, account_id, owner_id, stage, amount, probability, close_date,
                   created_at, updated_at)
SELECT g.n,
       coalesce(a.name, pg_temp.crmtasks_demo_company(560, g.n)) || ' - '
           || pg_temp.crmtasks_demo_pick(%(deal_types)s::text[], 501, g.n),
       g.account_id,
       CASE WHEN a.owner_id IS NOT NULL AND pg_temp.crmtasks_demo_rand(530, g.n) < 0.80 THEN a.owner_id
            ELSE pg_temp.crmtasks_demo_pick_skewed(%(owners)s::bigint[], 531, g.n) END,
       g.stage,
       CASE WHEN pg_temp.crmtasks_demo_rand(520, g.n)
                 < CASE WHEN g.stage IN ('Prospecting', 'Qualification') THEN 0.35 ELSE 0.03 END
            THEN NULL
            ELSE ((10 + floor(20000 * pg_temp.crmtasks_demo_rand(521, g.n) * pg_temp.crmtasks_demo_rand(522, g.n)
                              * pg_temp.crmtasks_demo_rand(523, g.n) * pg_temp.crmtasks_demo_rand(524, g.n)))
                  * 100)::numeric(14, 2)
       END,
       g.probability,
       CASE WHEN g.stage IN ('Closed Won', 'Closed Lost')
                THEN (pg_temp.crmtasks_demo_at(pg_temp.crmtasks_demo_last_touch(590, g.n, g.age))
                      AT TIME ZONE 'UTC')::date
            WHEN pg_temp.crmtasks_demo_rand(550, g.n) < 0.60
                THEN %(anchor_date)s::date + 1 + floor(pg_temp.crmtasks_demo_rand(551, g.n) * 180)::int
            WHEN pg_temp.crmtasks_demo_rand(550, g.n) < 0.75
                THEN %(anchor_date)s::date - 1
                     - floor(pg_temp.crmtasks_demo_rand(551, g.n) * least(g.age / 86400, 90))::int
       END,
       pg_temp.crmtasks_demo_at(g.age),
       pg_temp.crmtasks_demo_at(pg_temp.crmtasks_demo_last_touch(590, g.n, g.age))
FROM (
    SELECT n,
           CASE WHEN pg_temp.crmtasks_demo_rand(510, n) >= 0.03
                THEN pg_temp.crmtasks_demo_earlier_id(511, n, %(deals)s, %(accounts)s) END AS account_id,
           pg_temp.crmtasks_demo_pick(%(stages)s::text[], 502, n) AS stage,
           pg_temp.crmtasks_demo_pick(%(probabilities)s::int[], 502, n) AS probability,
           pg_temp.crmtasks_demo_age(580, n, %(deals)s) AS age
    FROM generate_series(1, %(deals)s) AS n
    OFFSET 0
) g
LEFT JOIN accounts a ON a.id = g.account_id
