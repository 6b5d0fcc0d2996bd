-- The accounts owned by any of %(owners)s (bigint[]): a user's hierarchy reads
-- these accounts' contacts and deals (crmtasks.search.visibility_index).
-- One row: the ids as an array. Uses accounts_owner_id_idx.
SELECT coalesce(array_agg(a.id), '{}') FROM accounts AS a WHERE a.owner_id = ANY(%(owners)s::bigint[])
