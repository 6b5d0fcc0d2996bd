-- Schedules edited at runtime: one row per job whose schedule an operator
-- set (crmtasks schedule set, or the dashboard's form). No row means the
-- registry's default; CRMTASKS_SCHEDULE_<TASK> in a process's environment
-- wins over both. Every scheduler re-reads this table at each minute's tick.
CREATE TABLE job_schedules (
    task        text PRIMARY KEY,
    cron        text NOT NULL CHECK (cron <> '' AND length(cron) <= 200),
    zone        text NOT NULL DEFAULT 'UTC' CHECK (zone <> '' AND length(zone) <= 64),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL DEFAULT ''
);
