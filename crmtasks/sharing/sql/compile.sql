-- The compiled visibility of one user (crmtasks.sharing.compile), in ONE
-- statement so that everything, the epoch included, comes from one snapshot:
-- the result is exactly the sharing state at that epoch.
--
-- Parameter: %(user_id)s. One row:
--   epoch, token        the sharing_epoch row this was compiled at
--   is_active           NULL when the user does not exist
--   hierarchy_owners    the user and every user (active or not) in a role strictly below theirs
--   defaults            {entity: access} of sharing_defaults
--   rules               the rules granted to the user: their entity, access, criteria or owner ids
--
-- Recursive parts use UNION (not UNION ALL): they stop even if the roles
-- ever formed a cycle (the roles_refuse_cycle trigger refuses one).
WITH RECURSIVE
me AS (
    SELECT u.id, u.role_id, u.is_active FROM users AS u WHERE u.id = %(user_id)s
),
roles_above AS (        -- the user's own role and every role above it
    SELECT r.id, r.parent_id FROM roles AS r JOIN me ON r.id = me.role_id
    UNION
    SELECT r.id, r.parent_id FROM roles AS r JOIN roles_above AS a ON r.id = a.parent_id
),
roles_below AS (        -- every role strictly below the user's role
    SELECT r.id FROM roles AS r JOIN me ON r.parent_id = me.role_id
    UNION
    SELECT r.id FROM roles AS r JOIN roles_below AS b ON r.parent_id = b.id
),
hierarchy_owners AS (
    SELECT me.id FROM me
    UNION
    SELECT u.id FROM users AS u JOIN roles_below AS b ON u.role_id = b.id
),
my_rules AS (           -- granted to the user's role, or to a role above it with its subordinates
    SELECT s.id, s.entity, s.kind, s.access, s.field, s.value, s.owner_role_id, s.owner_include_subordinates
    FROM sharing_rules AS s
    JOIN roles_above AS a ON a.id = s.grantee_role_id
    JOIN me ON true
    WHERE s.grantee_role_id = me.role_id OR s.grantee_include_subordinates
),
rule_owner_roles AS (   -- per owner-based rule: the owners' role, and every role below it when asked
    SELECT s.id AS rule_id, s.owner_role_id AS role_id, s.owner_include_subordinates AS deep
    FROM my_rules AS s WHERE s.kind = 'owner'
    UNION
    SELECT o.rule_id, r.id, o.deep FROM roles AS r JOIN rule_owner_roles AS o ON r.parent_id = o.role_id WHERE o.deep
),
rule_owners AS (
    SELECT o.rule_id, array_agg(DISTINCT u.id) AS owner_ids
    FROM rule_owner_roles AS o JOIN users AS u ON u.role_id = o.role_id
    GROUP BY o.rule_id
)
SELECT e.epoch,
       e.token::text,
       (SELECT me.is_active FROM me),
       (SELECT coalesce(array_agg(h.id), '{}') FROM hierarchy_owners AS h),
       (SELECT coalesce(jsonb_object_agg(d.entity, d.access), '{}') FROM sharing_defaults AS d),
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'entity', s.entity, 'kind', s.kind, 'access', s.access, 'field', s.field, 'value', s.value,
                   'owner_ids', coalesce(o.owner_ids, '{}'))), '[]')
        FROM my_rules AS s LEFT JOIN rule_owners AS o ON o.rule_id = s.id)
FROM sharing_epoch AS e
