-- Search facets: the tables analytics.precompute_facets publishes into. The
-- indexes faceted search reads through, on the CRM tables (which may already
-- hold millions of rows), are built without blocking writes by
-- 0002_search_facets.concurrent.sql, after this file commits.
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
