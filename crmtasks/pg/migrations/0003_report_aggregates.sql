-- Report aggregates, kept by analytics.precompute_aggregates (crmtasks/aggregates.py).
--
-- Three parts:
--   * aggregate tables holding sums and counts, at the grain the reports
--     read: per calendar month, quarter and year; per owner and for all owners
--     together. Averages and rates are STORED generated columns derived from
--     the row's own sums and counts (so a read does no arithmetic, like a
--     materialized view); roll-ups only ever add sums and counts. Per-owner
--     rows also carry the owner's name and active flag (kept by the job from
--     a log of user edits), so a read needs no join. Each table is
--     partitioned by what one report reads (grain, and all owners or per
--     owner); the key's columns are in report order, and rows are written in
--     that order with room to update in place (fillfactor 80): a read scans
--     one partition through its key index and never sorts. The run deletes
--     the row of a group that empties: no read wades through dead groups;
--   * change logs filled by statement-level triggers on deals, leads and
--     accounts: the old (-1) and new (+1) images of every row whose reported
--     columns changed, so a run folds exactly what changed since the last run,
--     deletions and moves between months, owners and stages included;
--   * one state row: as_of of the published aggregates, and whether the next
--     run must rebuild everything (after a TRUNCATE, or on first use).
-- Requires PostgreSQL 15+ (UNIQUE NULLS NOT DISTINCT: a NULL owner, source,
-- industry or region is a group of its own, as in GROUP BY).

-- The CRM's closed stages: 'won', 'lost', or NULL for an open deal. The one
-- place they are named; after changing it, set rebuild_required (below).
CREATE FUNCTION report_deal_outcome(stage text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE stage WHEN 'Closed Won' THEN 'won' WHEN 'Closed Lost' THEN 'lost' END
$$;

-- A converted lead. Same rule: change it together with a rebuild.
CREATE FUNCTION report_lead_converted(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT status = 'Converted'
$$;

-- Closed deals per period (month, quarter, year) of their close_date.
-- all_owners rows are the sum over every owner (owner_id is then NULL);
-- the other rows are per owner, owner_id NULL meaning "no owner".
-- Cycle days: close_date minus the UTC date of created_at.
CREATE TABLE report_deal_periods (
    grain               text NOT NULL CHECK (grain IN ('month', 'quarter', 'year')),
    period_start        date NOT NULL,
    all_owners          boolean NOT NULL,
    owner_id            bigint,
    owner_name          text,
    owner_active        boolean,
    won_count           bigint NOT NULL,
    won_amount_sum      numeric NOT NULL,
    won_amount_count    bigint NOT NULL,
    won_cycle_days_sum  bigint NOT NULL,
    lost_count          bigint NOT NULL,
    lost_cycle_days_sum bigint NOT NULL,
    won_average_amount  numeric GENERATED ALWAYS AS (round(won_amount_sum / NULLIF(won_amount_count, 0), 2)) STORED,
    win_rate            numeric GENERATED ALWAYS AS (round(won_count::numeric / NULLIF(won_count + lost_count, 0), 4)) STORED,
    won_average_days    numeric GENERATED ALWAYS AS (round(won_cycle_days_sum::numeric / NULLIF(won_count, 0), 1)) STORED,
    lost_average_days   numeric GENERATED ALWAYS AS (round(lost_cycle_days_sum::numeric / NULLIF(lost_count, 0), 1)) STORED,
    closed_average_days numeric GENERATED ALWAYS AS
        (round((won_cycle_days_sum + lost_cycle_days_sum)::numeric / NULLIF(won_count + lost_count, 0), 1)) STORED,
    CONSTRAINT report_deal_periods_key UNIQUE NULLS NOT DISTINCT (period_start, owner_id, grain, all_owners),
    CONSTRAINT report_deal_periods_all_owners_have_no_owner CHECK (NOT all_owners OR owner_id IS NULL)
) PARTITION BY LIST (grain);
CREATE TABLE report_deal_periods_month PARTITION OF report_deal_periods FOR VALUES IN ('month') PARTITION BY LIST (all_owners);
CREATE TABLE report_deal_periods_quarter PARTITION OF report_deal_periods FOR VALUES IN ('quarter') PARTITION BY LIST (all_owners);
CREATE TABLE report_deal_periods_year PARTITION OF report_deal_periods FOR VALUES IN ('year') PARTITION BY LIST (all_owners);
CREATE TABLE report_deal_periods_month_all PARTITION OF report_deal_periods_month FOR VALUES IN (true) WITH (fillfactor = 80);
CREATE TABLE report_deal_periods_month_by_owner PARTITION OF report_deal_periods_month FOR VALUES IN (false) WITH (fillfactor = 80);
CREATE TABLE report_deal_periods_quarter_all PARTITION OF report_deal_periods_quarter FOR VALUES IN (true) WITH (fillfactor = 80);
CREATE TABLE report_deal_periods_quarter_by_owner PARTITION OF report_deal_periods_quarter FOR VALUES IN (false) WITH (fillfactor = 80);
CREATE TABLE report_deal_periods_year_all PARTITION OF report_deal_periods_year FOR VALUES IN (true) WITH (fillfactor = 80);
CREATE TABLE report_deal_periods_year_by_owner PARTITION OF report_deal_periods_year FOR VALUES IN (false) WITH (fillfactor = 80);
-- Revenue reads the rows with won deals only (the others exist for the win
-- rate): this index gives exactly those, in report order.
CREATE INDEX report_deal_periods_won_idx ON report_deal_periods (period_start, owner_id) WHERE won_count > 0;

-- Open deals (report_deal_outcome(stage) IS NULL) per stage, whatever their close_date.
-- Weighted amount = amount_probability_sum / 100.
CREATE TABLE report_open_pipeline (
    all_owners             boolean NOT NULL,
    owner_id               bigint,
    owner_name             text,
    owner_active           boolean,
    stage                  text NOT NULL,
    deal_count             bigint NOT NULL,
    amount_sum             numeric NOT NULL,
    amount_count           bigint NOT NULL,
    amount_probability_sum numeric NOT NULL,
    average_amount         numeric GENERATED ALWAYS AS (round(amount_sum / NULLIF(amount_count, 0), 2)) STORED,
    weighted_amount        numeric GENERATED ALWAYS AS (round(amount_probability_sum / 100, 2)) STORED,
    CONSTRAINT report_open_pipeline_key UNIQUE NULLS NOT DISTINCT (owner_id, stage, all_owners),
    CONSTRAINT report_open_pipeline_all_owners_have_no_owner CHECK (NOT all_owners OR owner_id IS NULL)
) PARTITION BY LIST (all_owners);
CREATE TABLE report_open_pipeline_all PARTITION OF report_open_pipeline FOR VALUES IN (true) WITH (fillfactor = 80);
CREATE TABLE report_open_pipeline_by_owner PARTITION OF report_open_pipeline FOR VALUES IN (false) WITH (fillfactor = 80);

-- Leads per source and period of their created_at (UTC calendar).
CREATE TABLE report_lead_periods (
    grain           text NOT NULL CHECK (grain IN ('month', 'quarter', 'year')),
    period_start    date NOT NULL,
    all_owners      boolean NOT NULL,
    owner_id        bigint,
    owner_name      text,
    owner_active    boolean,
    source          text,
    lead_count      bigint NOT NULL,
    converted_count bigint NOT NULL,
    conversion_rate numeric GENERATED ALWAYS AS (round(converted_count::numeric / NULLIF(lead_count, 0), 4)) STORED,
    CONSTRAINT report_lead_periods_key UNIQUE NULLS NOT DISTINCT (period_start, source, owner_id, grain, all_owners),
    CONSTRAINT report_lead_periods_all_owners_have_no_owner CHECK (NOT all_owners OR owner_id IS NULL)
) PARTITION BY LIST (grain);
CREATE TABLE report_lead_periods_month PARTITION OF report_lead_periods FOR VALUES IN ('month') PARTITION BY LIST (all_owners);
CREATE TABLE report_lead_periods_quarter PARTITION OF report_lead_periods FOR VALUES IN ('quarter') PARTITION BY LIST (all_owners);
CREATE TABLE report_lead_periods_year PARTITION OF report_lead_periods FOR VALUES IN ('year') PARTITION BY LIST (all_owners);
CREATE TABLE report_lead_periods_month_all PARTITION OF report_lead_periods_month FOR VALUES IN (true) WITH (fillfactor = 80);
CREATE TABLE report_lead_periods_month_by_owner PARTITION OF report_lead_periods_month FOR VALUES IN (false) WITH (fillfactor = 80);
CREATE TABLE report_lead_periods_quarter_all PARTITION OF report_lead_periods_quarter FOR VALUES IN (true) WITH (fillfactor = 80);
CREATE TABLE report_lead_periods_quarter_by_owner PARTITION OF report_lead_periods_quarter FOR VALUES IN (false) WITH (fillfactor = 80);
CREATE TABLE report_lead_periods_year_all PARTITION OF report_lead_periods_year FOR VALUES IN (true) WITH (fillfactor = 80);
CREATE TABLE report_lead_periods_year_by_owner PARTITION OF report_lead_periods_year FOR VALUES IN (false) WITH (fillfactor = 80);

-- Accounts per industry and region.
CREATE TABLE report_account_segments (
    all_owners    boolean NOT NULL,
    owner_id      bigint,
    owner_name    text,
    owner_active  boolean,
    industry      text,
    region        text,
    account_count bigint NOT NULL,
    CONSTRAINT report_account_segments_key UNIQUE NULLS NOT DISTINCT (owner_id, industry, region, all_owners),
    CONSTRAINT report_account_segments_all_owners_have_no_owner CHECK (NOT all_owners OR owner_id IS NULL)
) PARTITION BY LIST (all_owners);
CREATE TABLE report_account_segments_all PARTITION OF report_account_segments FOR VALUES IN (true) WITH (fillfactor = 80);
CREATE TABLE report_account_segments_by_owner PARTITION OF report_account_segments FOR VALUES IN (false) WITH (fillfactor = 80);

-- The published state. as_of: every change committed before it is in the
-- aggregates (the run's REPEATABLE READ snapshot was taken after it).
CREATE TABLE report_aggregate_state (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    as_of            timestamptz,
    rebuild_required boolean NOT NULL DEFAULT true,
    last_rebuild_at  timestamptz
);
INSERT INTO report_aggregate_state DEFAULT VALUES;

-- Change logs: append-only (writers never contend on a row), consumed and
-- deleted by the run that folds them, in the transaction that publishes.
CREATE TABLE report_deal_changes (
    sign        smallint NOT NULL CHECK (sign IN (-1, 1)),
    owner_id    bigint,
    stage       text NOT NULL,
    amount      numeric(14, 2),
    probability smallint,
    close_date  date,
    created_at  timestamptz NOT NULL
);

CREATE TABLE report_lead_changes (
    sign       smallint NOT NULL CHECK (sign IN (-1, 1)),
    owner_id   bigint,
    source     text,
    status     text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE report_account_changes (
    sign     smallint NOT NULL CHECK (sign IN (-1, 1)),
    owner_id bigint,
    industry text,
    region   text
);

-- Users whose name or active flag changed: the run copies them into the rows.
CREATE TABLE report_owner_changes (
    owner_id bigint NOT NULL
);

-- Statement-level triggers with transition tables: one INSERT ... SELECT per
-- statement, however many rows it touched. An UPDATE logs the multiset
-- difference of the reported columns (old EXCEPT ALL new as -1, new EXCEPT
-- ALL old as +1): an edit of other columns (a name) logs nothing, and a move
-- between months, owners or stages logs the old image (its month, owner and
-- stage) as well as the new one.
CREATE FUNCTION report_capture_deal_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO report_deal_changes (sign, owner_id, stage, amount, probability, close_date, created_at)
        SELECT 1, owner_id, stage, amount, probability, close_date, created_at FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO report_deal_changes (sign, owner_id, stage, amount, probability, close_date, created_at)
        SELECT -1, owner_id, stage, amount, probability, close_date, created_at FROM old_rows;
    ELSE
        INSERT INTO report_deal_changes (sign, owner_id, stage, amount, probability, close_date, created_at)
        SELECT -1, * FROM (
            SELECT owner_id, stage, amount, probability, close_date, created_at FROM old_rows
            EXCEPT ALL
            SELECT owner_id, stage, amount, probability, close_date, created_at FROM new_rows
        ) AS gone
        UNION ALL
        SELECT 1, * FROM (
            SELECT owner_id, stage, amount, probability, close_date, created_at FROM new_rows
            EXCEPT ALL
            SELECT owner_id, stage, amount, probability, close_date, created_at FROM old_rows
        ) AS came;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION report_capture_lead_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO report_lead_changes (sign, owner_id, source, status, created_at)
        SELECT 1, owner_id, source, status, created_at FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO report_lead_changes (sign, owner_id, source, status, created_at)
        SELECT -1, owner_id, source, status, created_at FROM old_rows;
    ELSE
        INSERT INTO report_lead_changes (sign, owner_id, source, status, created_at)
        SELECT -1, * FROM (
            SELECT owner_id, source, status, created_at FROM old_rows
            EXCEPT ALL
            SELECT owner_id, source, status, created_at FROM new_rows
        ) AS gone
        UNION ALL
        SELECT 1, * FROM (
            SELECT owner_id, source, status, created_at FROM new_rows
            EXCEPT ALL
            SELECT owner_id, source, status, created_at FROM old_rows
        ) AS came;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION report_capture_account_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO report_account_changes (sign, owner_id, industry, region)
        SELECT 1, owner_id, industry, region FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO report_account_changes (sign, owner_id, industry, region)
        SELECT -1, owner_id, industry, region FROM old_rows;
    ELSE
        INSERT INTO report_account_changes (sign, owner_id, industry, region)
        SELECT -1, * FROM (
            SELECT owner_id, industry, region FROM old_rows
            EXCEPT ALL
            SELECT owner_id, industry, region FROM new_rows
        ) AS gone
        UNION ALL
        SELECT 1, * FROM (
            SELECT owner_id, industry, region FROM new_rows
            EXCEPT ALL
            SELECT owner_id, industry, region FROM old_rows
        ) AS came;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION report_capture_owner_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_owner_changes (owner_id)
    SELECT new_rows.id FROM new_rows JOIN old_rows USING (id)
    WHERE (new_rows.full_name, new_rows.is_active) IS DISTINCT FROM (old_rows.full_name, old_rows.is_active);
    RETURN NULL;
END
$$;

-- TRUNCATE fires no row or DELETE trigger: it flags a full rebuild instead.
CREATE FUNCTION report_require_rebuild() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE report_aggregate_state SET rebuild_required = true;
    RETURN NULL;
END
$$;

CREATE TRIGGER report_users_updated AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_owner_changes();
CREATE TRIGGER report_users_truncated AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION report_require_rebuild();

CREATE TRIGGER report_deals_inserted AFTER INSERT ON deals
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_deal_changes();
CREATE TRIGGER report_deals_updated AFTER UPDATE ON deals
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_deal_changes();
CREATE TRIGGER report_deals_deleted AFTER DELETE ON deals
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_deal_changes();
CREATE TRIGGER report_deals_truncated AFTER TRUNCATE ON deals
    FOR EACH STATEMENT EXECUTE FUNCTION report_require_rebuild();

CREATE TRIGGER report_leads_inserted AFTER INSERT ON leads
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_lead_changes();
CREATE TRIGGER report_leads_updated AFTER UPDATE ON leads
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_lead_changes();
CREATE TRIGGER report_leads_deleted AFTER DELETE ON leads
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_lead_changes();
CREATE TRIGGER report_leads_truncated AFTER TRUNCATE ON leads
    FOR EACH STATEMENT EXECUTE FUNCTION report_require_rebuild();

CREATE TRIGGER report_accounts_inserted AFTER INSERT ON accounts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_account_changes();
CREATE TRIGGER report_accounts_updated AFTER UPDATE ON accounts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_account_changes();
CREATE TRIGGER report_accounts_deleted AFTER DELETE ON accounts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_account_changes();
CREATE TRIGGER report_accounts_truncated AFTER TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION report_require_rebuild();
