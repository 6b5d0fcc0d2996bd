-- Leads (salts 4xx). Blank fields where sales people leave them blank: company
-- 12%%, e-mail 7%%, industry 25%%, source 6%%, rating 40%%; 4%% are unassigned
-- (no owner).
INSERT INTO leads (id, name, company, email, status, industry, source, rating, owner_id,
                   created_at, updated_at)
SELECT n,
       pg_temp.crmtasks_demo_person(400, n),
       CASE WHEN has_company THEN pg_temp.crmtasks_demo_company(410, n) END,
       CASE WHEN pg_temp.crmtasks_demo_rand(420, n) >= 0.07
            THEN pg_temp.crmtasks_demo_handle(400, n) || '@'
                 || CASE WHEN has_company THEN pg_temp.crmtasks_demo_domain(410, n)
                         ELSE pg_temp.crmtasks_demo_pick(%(personal_domains)s::text[], 421, n) END
       END,
       pg_temp.crmtasks_demo_pick(%(statuses)s::text[], 430, n),
       CASE WHEN pg_temp.crmtasks_demo_rand(440, n) >= 0.25
            THEN pg_temp.crmtasks_demo_pick_skewed(%(industries)s::text[], 441, n) END,
       CASE WHEN pg_temp.crmtasks_demo_rand(450, n) >= 0.06
            THEN pg_temp.crmtasks_demo_pick(%(sources)s::text[], 451, n) END,
       CASE WHEN pg_temp.crmtasks_demo_rand(460, n) >= 0.40
            THEN pg_temp.crmtasks_demo_pick(%(ratings)s::text[], 461, n) END,
       CASE WHEN pg_temp.crmtasks_demo_rand(470, n) >= 0.04
            THEN pg_temp.crmtasks_demo_pick_skewed(%(owners)s::bigint[], 471, n) END,
       pg_temp.crmtasks_demo_at(age),
       pg_temp.crmtasks_demo_at(pg_temp.crmtasks_demo_last_touch(490, n, age))
FROM (
    SELECT n,
           pg_temp.crmtasks_demo_rand(405, n) >= 0.12 AS has_company,
           pg_temp.crmtasks_demo_age(480, n, %(leads)s) AS age
    FROM generate_series(1, %(leads)s) AS n
    OFFSET 0
) g
