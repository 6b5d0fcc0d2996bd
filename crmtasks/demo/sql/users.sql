-- Users (salts 1xx). The first users fill the leadership roles and one manager
-- per team, in role id order; the rest join a team (as account executive or
-- SDR) or marketing / customer success. About 5%% are inactive (never
-- leadership). A user name repeated by chance gets a number: john.smith2.
INSERT INTO users (id, username, full_name, email, role_id, is_active, created_at)
SELECT id, username, full_name, username || '@' || %(staff_domain)s, role_id, is_active, created_at
FROM (
    SELECT p.*,
           p.handle || CASE WHEN row_number() OVER same_handle = 1 THEN ''
                            ELSE (row_number() OVER same_handle)::text END AS username
    FROM (
        SELECT n AS id,
               pg_temp.crmtasks_demo_person(100, n) AS full_name,
               pg_temp.crmtasks_demo_handle(100, n) AS handle,
               CASE WHEN n <= %(managers_end)s THEN n
                    WHEN pg_temp.crmtasks_demo_rand(110, n) < 0.06 THEN %(marketing_role)s
                    WHEN pg_temp.crmtasks_demo_rand(110, n) < 0.12 THEN %(success_role)s
                    WHEN pg_temp.crmtasks_demo_rand(110, n) < 0.72
                        THEN %(ae_base)s + 1 + floor(pg_temp.crmtasks_demo_rand(111, n) * %(teams)s)::int
                    ELSE %(sdr_base)s + 1 + floor(pg_temp.crmtasks_demo_rand(111, n) * %(teams)s)::int
               END AS role_id,
               n <= %(leadership)s OR pg_temp.crmtasks_demo_rand(120, n) >= 0.05 AS is_active,
               pg_temp.crmtasks_demo_at(
                   %(history_seconds)s + floor(pg_temp.crmtasks_demo_rand(130, n) * 3 * 365 * 86400)::bigint
               ) AS created_at
        FROM generate_series(1, %(users)s) AS n
    ) p
    WINDOW same_handle AS (PARTITION BY p.handle ORDER BY p.id)
) u
