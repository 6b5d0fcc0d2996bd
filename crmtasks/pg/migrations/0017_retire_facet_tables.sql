-- Retire the facet-count tables of 0002 (facet_generations, facet_current,
-- facet_counts). Since the search index (0010, crmtasks.search.index_store)
-- searches count from search_index_parts; nothing reads or writes these any
-- more, and no model describes them.
--
-- Not blocking writers: DROP TABLE locks only the tables dropped (facet_current
-- references facet_generations, and nothing else references any of the three),
-- so inserts and updates of every other table go on. A process of an older
-- release still reading them would make the drop wait: the lock_timeout fails
-- the migration instead of queueing other sessions behind it for long (the
-- migration is one transaction: re-run it later, nothing is left half done).
SET LOCAL lock_timeout = '10s';
DROP TABLE IF EXISTS facet_counts, facet_current, facet_generations;
