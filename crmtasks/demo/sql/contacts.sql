-- Contacts (salts 3xx). 10%% without account, 12%% without e-mail; the owner is
-- usually the account's; addresses use the account's domain.
INSERT INTO contacts (id, name, email, account_id, owner_id, lead_source, created_at, updated_at)
SELECT g.n,
       pg_temp.crmtasks_demo_person(300, g.n),
       CASE WHEN pg_temp.crmtasks_demo_rand(320, g.n) >= 0.12
            THEN pg_temp.crmtasks_demo_handle(300, g.n) || '@'
                 || CASE WHEN g.account_id IS NULL
                         THEN pg_temp.crmtasks_demo_pick(%(personal_domains)s::text[], 321, g.n)
                         ELSE pg_temp.crmtasks_demo_domain(200, g.account_id) END
       END,
       g.account_id,
       CASE WHEN a.owner_id IS NOT NULL AND pg_temp.crmtasks_demo_rand(330, g.n) < 0.85 THEN a.owner_id
            ELSE pg_temp.crmtasks_demo_pick_skewed(%(owners)s::bigint[], 331, g.n) END,
       CASE WHEN pg_temp.crmtasks_demo_rand(340, g.n) >= 0.20
            THEN pg_temp.crmtasks_demo_pick(%(sources)s::text[], 341, g.n) END,
       pg_temp.crmtasks_demo_at(g.age),
       pg_temp.crmtasks_demo_at(pg_temp.crmtasks_demo_last_touch(360, g.n, g.age))
FROM (
    SELECT n,
           CASE WHEN pg_temp.crmtasks_demo_rand(310, n) >= 0.10
                THEN pg_temp.crmtasks_demo_earlier_id(311, n, %(contacts)s, %(accounts)s) END AS account_id,
           pg_temp.crmtasks_demo_age(350, n, %(contacts)s) AS age
    FROM generate_series(1, %(contacts)s) AS n
    OFFSET 0
) g
LEFT JOIN accounts a ON a.id = g.account_id
