-- Notifications for the `notify` consistency of the sharing checks (crmtasks.sharing.listener).
--
-- In `notify` mode a process keeps compiled visibilities and the record
-- fields the rules read (owner, account, criteria fields) in memory and
-- answers warm checks without a round trip. What keeps that memory honest is
-- this migration: every change to those inputs sends a notification on the
-- channel `crmtasks_sharing`, in the transaction that makes the change, so it
-- is delivered exactly when (and only if) the change commits, in commit order.
--
-- Payloads (one line of text, under PostgreSQL's 8000-byte limit):
--   epoch <number> <token>          the sharing epoch was bumped (roles, users, rules, defaults)
--   records <entity> <id>,<id>,...  these records' owner, account or criteria fields changed, or they were deleted
--   flush <entity>                  too many records changed at once (or TRUNCATE): forget the whole entity
--   sync <token>                    sent by crmtasks.sharing.sync(), the read-your-writes fence
-- Inserts send nothing: a process never remembers that a record is missing.

-- The epoch bump of 0006 now also says so. Same statement, same transaction.
CREATE OR REPLACE FUNCTION sharing_bump_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bumped_epoch bigint;
    bumped_token uuid;
BEGIN
    UPDATE sharing_epoch SET epoch = epoch + 1, token = gen_random_uuid(), bumped_at = now()
    RETURNING epoch, token INTO bumped_epoch, bumped_token;
    PERFORM pg_notify('crmtasks_sharing', format('epoch %s %s', bumped_epoch, bumped_token));
    RETURN NULL;
END
$$;

-- Up to 3000 ids are named (300 per notification: 20 characters per id at most);
-- past that one `flush` costs the listeners less than the list would.
CREATE FUNCTION sharing_notify_records(entity text, ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    chunk constant int := 300;
    first int;
BEGIN
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(ids) > 3000 THEN
        PERFORM pg_notify('crmtasks_sharing', 'flush ' || entity);
        RETURN;
    END IF;
    FOR first IN 1 .. cardinality(ids) BY chunk LOOP
        PERFORM pg_notify('crmtasks_sharing',
                          format('records %s %s', entity, array_to_string(ids[first:first + chunk - 1], ',')));
    END LOOP;
END
$$;

-- Statement-level triggers with transition tables: one notification per
-- statement, not per row, and only for rows whose sharing fields changed
-- (a row whose id changed counts as deleted). An UPDATE trigger with
-- transition tables cannot name columns, hence the comparison inside.
CREATE FUNCTION sharing_notify_leads_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sharing_notify_records('leads', ARRAY(
        SELECT o.id FROM old_rows AS o LEFT JOIN new_rows AS n ON n.id = o.id
        WHERE n.id IS NULL
           OR (o.owner_id, o.status, o.industry, o.source, o.rating)
              IS DISTINCT FROM (n.owner_id, n.status, n.industry, n.source, n.rating)));
    RETURN NULL;
END
$$;

CREATE FUNCTION sharing_notify_deals_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sharing_notify_records('deals', ARRAY(
        SELECT o.id FROM old_rows AS o LEFT JOIN new_rows AS n ON n.id = o.id
        WHERE n.id IS NULL OR (o.owner_id, o.account_id, o.stage) IS DISTINCT FROM (n.owner_id, n.account_id, n.stage)));
    RETURN NULL;
END
$$;

CREATE FUNCTION sharing_notify_accounts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sharing_notify_records('accounts', ARRAY(
        SELECT o.id FROM old_rows AS o LEFT JOIN new_rows AS n ON n.id = o.id
        WHERE n.id IS NULL OR (o.owner_id, o.industry, o.region) IS DISTINCT FROM (n.owner_id, n.industry, n.region)));
    RETURN NULL;
END
$$;

CREATE FUNCTION sharing_notify_contacts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sharing_notify_records('contacts', ARRAY(
        SELECT o.id FROM old_rows AS o LEFT JOIN new_rows AS n ON n.id = o.id
        WHERE n.id IS NULL
           OR (o.owner_id, o.account_id, o.lead_source) IS DISTINCT FROM (n.owner_id, n.account_id, n.lead_source)));
    RETURN NULL;
END
$$;

-- The table's name is the entity's name (crmtasks.sharing.entities).
CREATE FUNCTION sharing_notify_records_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sharing_notify_records(TG_TABLE_NAME, ARRAY(SELECT o.id FROM old_rows AS o));
    RETURN NULL;
END
$$;

CREATE FUNCTION sharing_notify_records_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crmtasks_sharing', 'flush ' || TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER leads_sharing_notify_updated AFTER UPDATE ON leads
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_leads_updated();
CREATE TRIGGER deals_sharing_notify_updated AFTER UPDATE ON deals
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_deals_updated();
CREATE TRIGGER accounts_sharing_notify_updated AFTER UPDATE ON accounts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_accounts_updated();
CREATE TRIGGER contacts_sharing_notify_updated AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_contacts_updated();

CREATE TRIGGER leads_sharing_notify_deleted AFTER DELETE ON leads
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_records_deleted();
CREATE TRIGGER deals_sharing_notify_deleted AFTER DELETE ON deals
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_records_deleted();
CREATE TRIGGER accounts_sharing_notify_deleted AFTER DELETE ON accounts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_records_deleted();
CREATE TRIGGER contacts_sharing_notify_deleted AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_records_deleted();

CREATE TRIGGER leads_sharing_notify_truncated AFTER TRUNCATE ON leads
    FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_records_truncated();
CREATE TRIGGER deals_sharing_notify_truncated AFTER TRUNCATE ON deals
    FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_records_truncated();
CREATE TRIGGER accounts_sharing_notify_truncated AFTER TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_records_truncated();
CREATE TRIGGER contacts_sharing_notify_truncated AFTER TRUNCATE ON contacts
    FOR EACH STATEMENT EXECUTE FUNCTION sharing_notify_records_truncated();
