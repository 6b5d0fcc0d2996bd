-- The role tree, ids as RoleTree (crmtasks/demo/people.py) describes them:
-- the fixed leadership roles, one Regional Sales Director per region, then per
-- sales team a Sales Manager, an Account Executive and a Sales Development Rep
-- role, each under the one before. Teams are spread round-robin over the regions.
INSERT INTO roles (id, name, parent_id)
SELECT id, name, parent_id FROM (
    VALUES (1, 'CEO', NULL::bigint), (2, 'VP Sales', 1), (3, 'VP Marketing', 1),
           (4, 'VP Customer Success', 1),
           (%(demand_gen_role)s, 'Director of Demand Generation', 3),
           (%(success_director_role)s, 'Customer Success Director', 4),
           (%(marketing_role)s, 'Marketing Specialist', %(demand_gen_role)s),
           (%(success_role)s, 'Customer Success Manager', %(success_director_role)s)
) AS fixed (id, name, parent_id)
UNION ALL
SELECT 4 + g, 'Regional Sales Director, ' || (%(region_names)s::text[])[g], 2
FROM generate_series(1, %(regions_used)s) AS g
UNION ALL
SELECT %(leadership)s + layer * %(teams)s + t,
       (ARRAY['Sales Manager', 'Account Executive', 'Sales Development Rep'])[layer + 1] || ', '
           || (%(region_names)s::text[])[1 + (t - 1) %% %(regions_used)s]
           || ' Team ' || (1 + (t - 1) / %(regions_used)s),
       CASE WHEN layer = 0 THEN 5 + (t - 1) %% %(regions_used)s
            ELSE %(leadership)s + (layer - 1) * %(teams)s + t END
FROM generate_series(1, %(teams)s) AS t, generate_series(0, 2) AS layer
