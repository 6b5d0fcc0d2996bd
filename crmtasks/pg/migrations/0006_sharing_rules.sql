-- Sharing: who may read or edit which CRM record (crmtasks.sharing).
--
-- Access to a record of leads, deals, accounts or contacts comes from:
--   * owning it (read and edit);
--   * the role hierarchy: a user reads and edits what users in the roles
--     below theirs own (roles.parent_id; peers in one role do not share);
--   * the organization-wide default of its entity (sharing_defaults);
--   * sharing rules (sharing_rules): owner-based (records owned by users in
--     a role, optionally with its subordinate roles) or criteria-based (records
--     whose facet field equals a value), granted to a role, optionally with
--     its subordinate roles, at level read or edit;
--   * for contacts and deals only, implicit child access: the owner of their
--     account, and the users above that owner in the role hierarchy, read
--     them (read only; access to the account from a default or a rule does
--     not reach its children).
-- Inactive users have no access at all; the records they own stay visible to
-- others through the hierarchy and the rules.
--
-- sharing_epoch is the "never wrong" guarantee of the visibility caches: a
-- statement-level trigger bumps it, in the same transaction, on every change
-- to what a user's compiled visibility is made of (roles, users' role and
-- active flag, rules, defaults). Record ownership is not compiled (it is read
-- live from the record's row on each check), so record writes bump nothing.

CREATE TABLE sharing_defaults (
    entity      text PRIMARY KEY CHECK (entity IN ('leads', 'deals', 'accounts', 'contacts')),
    access      text NOT NULL CHECK (access IN ('private', 'public_read', 'public_read_write')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Private until an administrator opens an entity up; a missing row also means private.
INSERT INTO sharing_defaults (entity, access)
VALUES ('leads', 'private'), ('deals', 'private'), ('accounts', 'private'), ('contacts', 'private');

CREATE TABLE sharing_rules (
    id                           bigserial PRIMARY KEY,
    name                         text NOT NULL,
    entity                       text NOT NULL CHECK (entity IN ('leads', 'deals', 'accounts', 'contacts')),
    kind                         text NOT NULL CHECK (kind IN ('owner', 'criteria')),
    -- owner-based: records owned by users in this role (and below it when asked)
    owner_role_id                bigint REFERENCES roles (id) ON DELETE CASCADE,
    owner_include_subordinates   boolean NOT NULL DEFAULT false,
    -- criteria-based: records whose field equals value (the facet fields)
    field                        text,
    value                        text,
    -- who is granted access: users in this role (and below it when asked)
    grantee_role_id              bigint NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    grantee_include_subordinates boolean NOT NULL DEFAULT false,
    access                       text NOT NULL CHECK (access IN ('read', 'edit')),
    created_at                   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sharing_rules_owner_or_criteria CHECK (
        (kind = 'owner' AND owner_role_id IS NOT NULL AND field IS NULL AND value IS NULL)
        OR (kind = 'criteria' AND owner_role_id IS NULL AND NOT owner_include_subordinates
            AND field IS NOT NULL AND value IS NOT NULL)
    ),
    CONSTRAINT sharing_rules_criteria_field CHECK (
        field IS NULL OR (entity, field) IN (
            ('leads', 'status'), ('leads', 'industry'), ('leads', 'source'), ('leads', 'rating'),
            ('deals', 'stage'), ('accounts', 'industry'), ('accounts', 'region'), ('contacts', 'lead_source')
        )
    )
);
CREATE INDEX sharing_rules_grantee_role_id_idx ON sharing_rules (grantee_role_id);
CREATE INDEX sharing_rules_owner_role_id_idx ON sharing_rules (owner_role_id);

-- One row. epoch counts changes (for people); token changes with every bump
-- and is what caches compare, so that entries written for another database
-- (a restored backup, a copy sharing the Redis prefix) never match.
CREATE TABLE sharing_epoch (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch       bigint NOT NULL,
    token       uuid NOT NULL,
    bumped_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO sharing_epoch (epoch, token) VALUES (1, gen_random_uuid());

-- Runs AFTER the statement, inside its transaction: readers see the new
-- epoch exactly when they see the change (both commit together). The row
-- lock also serializes concurrent changes to sharing inputs (rare, admin).
CREATE FUNCTION sharing_bump_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sharing_epoch SET epoch = epoch + 1, token = gen_random_uuid(), bumped_at = now();
    RETURN NULL;
END
$$;

CREATE TRIGGER roles_bump_sharing_epoch
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION sharing_bump_epoch();
-- Only the columns visibility depends on: a new user (managers now see what
-- they will own), a role change, (de)activation, a deletion.
CREATE TRIGGER users_bump_sharing_epoch
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF id, role_id, is_active ON users
    FOR EACH STATEMENT EXECUTE FUNCTION sharing_bump_epoch();
CREATE TRIGGER sharing_rules_bump_sharing_epoch
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sharing_rules
    FOR EACH STATEMENT EXECUTE FUNCTION sharing_bump_epoch();
CREATE TRIGGER sharing_defaults_bump_sharing_epoch
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sharing_defaults
    FOR EACH STATEMENT EXECUTE FUNCTION sharing_bump_epoch();

-- The hierarchy must stay a forest: a role may not be placed under itself or
-- under one of its own subordinates. The advisory lock serializes parent
-- changes, so two concurrent moves cannot close a cycle between them (each
-- statement of the check takes a fresh snapshot under READ COMMITTED).
CREATE FUNCTION roles_refuse_cycle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.parent_id IS NULL THEN
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('crmtasks.roles.parent_id'));
    IF EXISTS (
        WITH RECURSIVE above AS (
            SELECT r.id, r.parent_id FROM roles AS r WHERE r.id = NEW.parent_id
            UNION
            SELECT r.id, r.parent_id FROM roles AS r JOIN above AS a ON r.id = a.parent_id
        )
        SELECT 1 FROM above WHERE above.id = NEW.id
    ) THEN
        RAISE EXCEPTION 'role % cannot be placed under role %, which is one of its subordinates', NEW.id, NEW.parent_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER roles_refuse_cycle
    BEFORE INSERT OR UPDATE OF parent_id ON roles
    FOR EACH ROW EXECUTE FUNCTION roles_refuse_cycle();
