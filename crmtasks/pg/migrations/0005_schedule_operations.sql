-- Schedules you can see and steer: a durable record of every schedule slot,
-- and pauses that the scheduler and the workers honour.

-- One row per (job, slot): claimed by the scheduler that enqueues it (the
-- primary key makes two schedulers enqueue a slot exactly once), then
-- updated by the worker that runs or skips it.
CREATE TABLE schedule_slots (
    task        text NOT NULL,
    slot_at     timestamptz NOT NULL,
    state       text NOT NULL CHECK (state IN ('enqueued', 'ran', 'skipped')),
    reason      text CHECK (reason IN ('overlap', 'stale', 'missed', 'paused', 'catch_up')),
    message_id  text,
    run_id      bigint REFERENCES task_runs (id) ON DELETE SET NULL,
    scheduler   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, slot_at)
);
CREATE INDEX schedule_slots_slot_at_idx ON schedule_slots (slot_at DESC);

CREATE TABLE job_pauses (
    task        text PRIMARY KEY,
    note        text NOT NULL DEFAULT '',
    paused_at   timestamptz NOT NULL DEFAULT now()
);
