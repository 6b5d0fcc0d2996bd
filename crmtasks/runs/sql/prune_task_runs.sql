-- One batch of runs that started before the cutoff, oldest first, except
-- each job's latest success (``crmtasks check``, the overview and the
-- overdue alert judge a job by it). Rows a writer holds locked are
-- skipped, never waited for.
DELETE FROM task_runs AS r
USING (
    SELECT id FROM task_runs
    WHERE started_at < %(cutoff)s AND id <> ALL (%(keep)s)
    ORDER BY started_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
) AS doomed
WHERE r.id = doomed.id
