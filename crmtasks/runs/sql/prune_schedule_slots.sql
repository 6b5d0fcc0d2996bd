-- One batch of schedule slots older than the cutoff, oldest first. Rows a
-- writer holds locked are skipped (next batch or next day), never waited for.
DELETE FROM schedule_slots AS s
USING (
    SELECT task, slot_at FROM schedule_slots
    WHERE slot_at < %(cutoff)s
    ORDER BY slot_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
) AS doomed
WHERE s.task = doomed.task AND s.slot_at = doomed.slot_at
