-- The search index (crmtasks.search.index): analytics.precompute_facets
-- publishes it here, searching processes on any host load it from here.
--
-- A generation is either a base (a full build: every row of the four
-- entities, base_id NULL) or a delta on a base (the rows changed since the
-- base's snapshot, as of its own snapshot). Its parts are serialized arrays
-- (zstandard-compressed). Publishing inserts a generation and its parts,
-- points search_index_current at it and trims the change log, all in one
-- transaction: a killed build publishes nothing, and a reader's snapshot sees
-- either the old generation with the change log since it, or the new one
-- with the change log since it.

CREATE TABLE search_index_generations (
    id           bigserial PRIMARY KEY,
    base_id      bigint REFERENCES search_index_generations (id) ON DELETE CASCADE,
    -- The build's REPEATABLE READ snapshot: a change is in the generation
    -- exactly when its transaction is visible in it (pg_visible_in_snapshot).
    snapshot     pg_snapshot NOT NULL,
    as_of        timestamptz NOT NULL,
    published_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    stats        jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE search_index_parts (
    generation_id bigint NOT NULL REFERENCES search_index_generations (id) ON DELETE CASCADE,
    entity        text COLLATE "C" NOT NULL,
    part          text COLLATE "C" NOT NULL,
    data          bytea NOT NULL,
    PRIMARY KEY (generation_id, entity, part)
);
-- Already compressed: PostgreSQL would only waste time trying again.
ALTER TABLE search_index_parts ALTER COLUMN data SET STORAGE EXTERNAL;

-- The generation searches use; at most one row. full_requested: the next
-- run of the job builds from scratch (`crmtasks run --full`, a TRUNCATE).
CREATE TABLE search_index_current (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation_id  bigint REFERENCES search_index_generations (id),
    full_requested boolean NOT NULL DEFAULT false
);
INSERT INTO search_index_current DEFAULT VALUES;

-- Which records changed, by which transaction: append-only (writers never
-- contend on a row). record_id NULL: the whole table changed (TRUNCATE).
-- The job deletes the rows its published generation holds; what remains is
-- what changed since, which searches read back live.
CREATE TABLE search_changes (
    xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    entity    text COLLATE "C" NOT NULL,
    record_id bigint
);
CREATE INDEX search_changes_entity_xid_idx ON search_changes (entity, xid);

-- Statement-level triggers with transition tables: one INSERT ... SELECT per
-- statement, however many rows it touched. TG_ARGV[0] is the entity's name.
CREATE FUNCTION search_capture_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO search_changes (entity, record_id) SELECT TG_ARGV[0], id FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO search_changes (entity, record_id) SELECT TG_ARGV[0], id FROM old_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        -- an update that changes an id logs both ids
        INSERT INTO search_changes (entity, record_id)
        SELECT TG_ARGV[0], id FROM new_rows UNION SELECT TG_ARGV[0], id FROM old_rows;
    ELSE
        INSERT INTO search_changes (entity, record_id) VALUES (TG_ARGV[0], NULL);
        UPDATE search_index_current SET full_requested = true;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER search_leads_inserted AFTER INSERT ON leads
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('leads');
CREATE TRIGGER search_leads_updated AFTER UPDATE ON leads
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('leads');
CREATE TRIGGER search_leads_deleted AFTER DELETE ON leads
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('leads');
CREATE TRIGGER search_leads_truncated AFTER TRUNCATE ON leads
    FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('leads');

CREATE TRIGGER search_deals_inserted AFTER INSERT ON deals
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('deals');
CREATE TRIGGER search_deals_updated AFTER UPDATE ON deals
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('deals');
CREATE TRIGGER search_deals_deleted AFTER DELETE ON deals
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('deals');
CREATE TRIGGER search_deals_truncated AFTER TRUNCATE ON deals
    FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('deals');

CREATE TRIGGER search_accounts_inserted AFTER INSERT ON accounts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('accounts');
CREATE TRIGGER search_accounts_updated AFTER UPDATE ON accounts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('accounts');
CREATE TRIGGER search_accounts_deleted AFTER DELETE ON accounts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('accounts');
CREATE TRIGGER search_accounts_truncated AFTER TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('accounts');

CREATE TRIGGER search_contacts_inserted AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('contacts');
CREATE TRIGGER search_contacts_updated AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('contacts');
CREATE TRIGGER search_contacts_deleted AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('contacts');
CREATE TRIGGER search_contacts_truncated AFTER TRUNCATE ON contacts
    FOR EACH STATEMENT EXECUTE FUNCTION search_capture_changes('contacts');
