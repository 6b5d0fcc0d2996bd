-- The users who own records: everyone below the VPs (role_id > 4), front-line
-- sellers first (role ids after the managers), then in a seed-dependent order.
SELECT array_agg(id ORDER BY role_id <= %(managers_end)s, pg_temp.crmtasks_demo_rand(190, id), id)
FROM users
WHERE role_id > 4
