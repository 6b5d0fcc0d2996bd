-- The indexes of 0002_search_facets on the CRM tables, built by `crmtasks migrate`
-- one statement at a time, outside any transaction, after 0002_search_facets.sql
-- committed: CREATE INDEX CONCURRENTLY takes SHARE UPDATE EXCLUSIVE, so inserts,
-- updates and deletes go on during each build. A build cut short leaves an
-- invalid index, which the next `crmtasks migrate` drops and builds again.
-- Only CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS statements, one per ';'.

-- Text search (q): case-insensitive substring over these columns, served by
-- trigram GIN indexes (ILIKE '%text%' uses them from 3 characters up).
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_name_trgm_idx ON leads USING gin (name gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_company_trgm_idx ON leads USING gin (company gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_email_trgm_idx ON leads USING gin (email gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS deals_name_trgm_idx ON deals USING gin (name gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_name_trgm_idx ON accounts USING gin (name gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_name_trgm_idx ON contacts USING gin (name gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_email_trgm_idx ON contacts USING gin (email gin_trgm_ops);

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
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_status_id_idx ON leads (status, id) INCLUDE (industry, source, rating, owner_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_industry_id_idx ON leads (industry, id) INCLUDE (status, source, rating, owner_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_source_id_idx ON leads (source, id) INCLUDE (status, industry, rating, owner_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_rating_id_idx ON leads (rating, id) INCLUDE (status, industry, source, owner_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_owner_id_id_idx ON leads (owner_id, id) INCLUDE (status, industry, source, rating);
CREATE INDEX CONCURRENTLY IF NOT EXISTS deals_stage_id_idx ON deals (stage, id) INCLUDE (owner_id, close_date, amount);
CREATE INDEX CONCURRENTLY IF NOT EXISTS deals_owner_id_id_idx ON deals (owner_id, id) INCLUDE (stage, close_date, amount);
CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_industry_id_idx ON accounts (industry, id) INCLUDE (region, owner_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_region_id_idx ON accounts (region, id) INCLUDE (industry, owner_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_owner_id_id_idx ON accounts (owner_id, id) INCLUDE (industry, region);
CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_lead_source_id_idx ON contacts (lead_source, id) INCLUDE (owner_id, account_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_owner_id_id_idx ON contacts (owner_id, id) INCLUDE (lead_source, account_id);
