-- schedule_slots.run_id references task_runs with ON DELETE SET NULL, so each
-- deleted run makes PostgreSQL look up the slots pointing at it: without this
-- index, one full scan of schedule_slots per deleted run. Built concurrently,
-- outside any transaction: schedulers go on claiming slots during the build.
CREATE INDEX CONCURRENTLY IF NOT EXISTS schedule_slots_run_id_idx ON schedule_slots (run_id);
