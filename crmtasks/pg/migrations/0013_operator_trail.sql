-- The operator trail: a manual run's task_runs row says who started it
-- ("ops (dashboard)", "alice@host-1 (cli)"); NULL for scheduled runs and for
-- runs recorded before this column existed. The trail itself lives in
-- audit_log (crmtasks.runs.trail): no table of its own.
-- A nullable column without a default: a catalog change only, no table rewrite.
ALTER TABLE task_runs ADD COLUMN IF NOT EXISTS started_by text;
