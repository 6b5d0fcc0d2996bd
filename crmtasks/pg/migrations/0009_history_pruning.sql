-- Bounded history: the daily maintenance deletes task_runs older than
-- CRMTASKS_HISTORY_DAYS. schedule_slots.run_id references task_runs with
-- ON DELETE SET NULL, so each deleted run makes PostgreSQL look up the
-- slots pointing at it: without this index, one full scan of
-- schedule_slots per deleted run.
CREATE INDEX schedule_slots_run_id_idx ON schedule_slots (run_id);
