-- Search facets: the tables analytics.precompute_facets publishes into, and the
-- indexes faceted search reads through.
--
-- Publishing is atomic: a run writes a new generation's rows, points
-- facet_current at it and deletes older generations, all in one transaction.
-- Readers join through facet_current in one statement, so they see one whole
-- generation, never a mix.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per published computation. as_of: the moment of the snapshot the
-- counts were taken from (they are exact as of then).
CREATE TABLE facet_generations (
    id            bigserial PRIMARY KEY,
    as_of         timestamptz NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    stats         jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- The generation readers use: at most one row. as_of is a copy of the
-- generation's, so a reader needs a single join.
CREATE TABLE facet_current (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation_id bigint NOT NULL REFERENCES facet_generations (id),
    as_of         timestamptz NOT NULL
);

-- Records per facet value, overall and among records with a given value of
-- a field: (entity, given_field = given_value, field = value) -> count.
--   given_field = '':         counts over all records (a search with no filter);
--   given_field = field:      the diagonal, records with that value;
--   given_field <> field:     pairwise counts, every pair stored in both directions.
-- So a search with no filter or one filter (a value or a list) reads one
-- index range. value and given_value hold the bucket key as text; NULL is
-- the bucket of records with no value. "C" collation: these are keys, not
-- prose, and byte order makes sorting and grouping them cheap.
-- No foreign key to facet_generations: checking it row by row would cost
-- more than counting; the job deletes a generation's rows with it.
CREATE TABLE facet_counts (
    generation_id bigint NOT NULL,
    entity        text COLLATE "C" NOT NULL,
    given_field   text COLLATE "C" NOT NULL,
    given_value   text COLLATE "C",
    field         text COLLATE "C" NOT NULL,
    value         text COLLATE "C",
    count         bigint NOT NULL CHECK (count > 0)
);
CREATE INDEX facet_counts_lookup_idx ON facet_counts (generation_id, entity, given_field, given_value);

-- Text search (q): case-insensitive substring over these columns, served by
-- trigram GIN indexes (ILIKE '%text%' uses them from 3 characters up).
CREATE INDEX leads_name_trgm_idx ON leads USING gin (name gin_trgm_ops);
CREATE INDEX leads_company_trgm_idx ON leads USING gin (company gin_trgm_ops);
CREATE INDEX leads_email_trgm_idx ON leads USING gin (email gin_trgm_ops);
CREATE INDEX deals_name_trgm_idx ON deals USING gin (name gin_trgm_ops);
CREATE INDEX accounts_name_trgm_idx ON accounts USING gin (name gin_trgm_ops);
CREATE INDEX contacts_name_trgm_idx ON contacts USING gin (name gin_trgm_ops);
CREATE INDEX contacts_email_trgm_idx ON contacts USING gin (email gin_trgm_ops);

-- One index per facet column, (field, id) plus the entity's other facet
-- columns as INCLUDE payload:
--   - the page of a one-filter search (WHERE field = x ORDER BY id DESC LIMIT n)
--     is read straight from (field, id) without sorting, however rare x is;
--   - a live count under two or more filters (WHERE a = x AND b = y) is an
--     index-only scan of the more selective filter's index: every facet value
--     it groups by is in the index, so no table page is read (on pages the
--     visibility map marks all-visible, i.e. once vacuumed).
-- Facet columns are each indexed anyway, so the payload does not cost any
-- update its HOT path. Contacts' account industry lives in accounts (a join).
CREATE INDEX leads_status_id_idx ON leads (status, id) INCLUDE (industry, source, rating, owner_id);
CREATE INDEX leads_industry_id_idx ON leads (industry, id) INCLUDE (status, source, rating, owner_id);
CREATE INDEX leads_source_id_idx ON leads (source, id) INCLUDE (status, industry, rating, owner_id);
CREATE INDEX leads_rating_id_idx ON leads (rating, id) INCLUDE (status, industry, source, owner_id);
CREATE INDEX leads_owner_id_id_idx ON leads (owner_id, id) INCLUDE (status, industry, source, rating);
CREATE INDEX deals_stage_id_idx ON deals (stage, id) INCLUDE (owner_id, close_date, amount);
CREATE INDEX deals_owner_id_id_idx ON deals (owner_id, id) INCLUDE (stage, close_date, amount);
CREATE INDEX accounts_industry_id_idx ON accounts (industry, id) INCLUDE (region, owner_id);
CREATE INDEX accounts_region_id_idx ON accounts (region, id) INCLUDE (industry, owner_id);
CREATE INDEX accounts_owner_id_id_idx ON accounts (owner_id, id) INCLUDE (industry, region);
CREATE INDEX contacts_lead_source_id_idx ON contacts (lead_source, id) INCLUDE (owner_id, account_id);
CREATE INDEX contacts_owner_id_id_idx ON contacts (owner_id, id) INCLUDE (lead_source, account_id);
