-- Demo audit rows, set-based and deterministic: the same (seed, rows, today)
-- always gives the same rows, without random(): every "random" choice is a
-- 64-bit hash of (row number, purpose) keyed by the seed, scaled to [0, 1).
-- Rows spread over the 24 months before %(today)s, denser in recent months
-- (activity grows), mostly in office hours, ids increasing with time.
WITH bounds AS (
    SELECT (%(today)s::date - interval '24 months')::date AS first_day,
           %(today)s::date AS end_day,
           %(seed)s::bigint AS seed,
           greatest((SELECT max(id) FROM users), 0) AS users
), draws AS (
    SELECT g AS n, b.*,
           (hashtextextended(g::text || ':when', b.seed) & 2147483647)::float8 / 2147483648 AS u_day,
           (hashtextextended(g::text || ':hour', b.seed) & 2147483647)::float8 / 2147483648 AS u_time,
           (hashtextextended(g::text || ':office', b.seed) & 2147483647)::float8 / 2147483648 AS u_office,
           (hashtextextended(g::text || ':action', b.seed) & 2147483647)::float8 / 2147483648 AS u_action,
           (hashtextextended(g::text || ':entity', b.seed) & 2147483647)::float8 / 2147483648 AS u_entity,
           (hashtextextended(g::text || ':actor', b.seed) & 2147483647)::float8 / 2147483648 AS u_actor,
           hashtextextended(g::text || ':id', b.seed) & 2147483647 AS h_id,
           hashtextextended(g::text || ':field', b.seed) & 2147483647 AS h_field,
           hashtextextended(g::text || ':ip', b.seed) & 2147483647 AS h_ip
    FROM generate_series(1, %(rows)s::bigint) AS g, bounds b
), shaped AS (
    SELECT d.*,
           -- sqrt: twice the density at the recent end as at the old end
           d.first_day + floor(sqrt(d.u_day) * (d.end_day - d.first_day))::int AS day,
           CASE WHEN d.u_office < 0.85 THEN 8 * 3600 + d.u_time * 10 * 3600 ELSE d.u_time * 86400 END AS second_of_day,
           CASE WHEN d.u_action < 0.55 THEN 'update'
                WHEN d.u_action < 0.70 THEN 'create'
                WHEN d.u_action < 0.85 THEN 'view'
                WHEN d.u_action < 0.88 THEN 'delete'
                WHEN d.u_action < 0.92 THEN 'export'
                ELSE 'login' END AS action
    FROM draws d
), typed AS (
    SELECT s.*,
           CASE WHEN s.action = 'login' THEN 'user'
                WHEN s.u_entity < 0.35 THEN 'lead'
                WHEN s.u_entity < 0.60 THEN 'deal'
                WHEN s.u_entity < 0.85 THEN 'contact'
                ELSE 'account' END AS entity,
           CASE WHEN s.users = 0 OR s.u_actor < 0.05 THEN NULL  -- 5%% by the system (imports, workflows)
                ELSE 1 + floor((s.u_actor - 0.05) / 0.95 * s.users)::bigint END AS actor_id
    FROM shaped s
)
INSERT INTO audit_log (occurred_at, actor_id, action, entity, entity_id, changes, ip_address)
SELECT (t.day + make_interval(secs => t.second_of_day))::timestamp AT TIME ZONE 'UTC',
       CASE WHEN t.action = 'login' THEN coalesce(t.actor_id, 1) ELSE t.actor_id END,
       t.action,
       t.entity,
       CASE WHEN t.action = 'login' THEN coalesce(t.actor_id, 1) ELSE 1 + t.h_id %% 5000 END,
       CASE t.action
            WHEN 'update' THEN jsonb_build_object(
                'field', (ARRAY['status', 'stage', 'owner_id', 'amount', 'email', 'rating', 'industry'])[1 + t.h_field %% 7],
                'from', (ARRAY['new', 'contacted', 'qualified', 'proposal', 'negotiation', 'won', 'lost'])[1 + t.h_field %% 7],
                'to', (ARRAY['new', 'contacted', 'qualified', 'proposal', 'negotiation', 'won', 'lost'])[1 + (t.h_field / 7) %% 7])
            WHEN 'create' THEN jsonb_build_object('source', (ARRAY['web', 'import', 'api', 'manual'])[1 + t.h_field %% 4])
            WHEN 'export' THEN jsonb_build_object('format', (ARRAY['csv', 'xlsx'])[1 + t.h_field %% 2], 'records', 1 + t.h_field %% 500)
            ELSE '{}'::jsonb END,
       ('10.' || t.h_ip %% 256 || '.' || (t.h_ip / 256) %% 256 || '.' || (t.h_ip / 65536) %% 256)::inet
FROM typed t
ORDER BY 1, t.n
