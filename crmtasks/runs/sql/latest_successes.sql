-- The id of each job's latest successful run.
SELECT DISTINCT ON (task) id
FROM task_runs
WHERE status = 'succeeded'
ORDER BY task, started_at DESC, id DESC
