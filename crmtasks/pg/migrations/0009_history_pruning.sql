-- Bounded history: the daily maintenance deletes task_runs older than
-- CRMTASKS_HISTORY_DAYS. The index it needs is built concurrently, from
-- 0009_history_pruning.concurrent.sql: schedule_slots already holds rows.
SELECT 1;
