-- One index per shared entity: the primary key's column, with every column a
-- sharing check reads carried in the index (crmtasks.sharing.entities lists
-- the criteria fields). accounts' also serves the account-owner lookup of
-- contacts' and deals' checks.
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_sharing_check_idx ON leads (id) INCLUDE (owner_id, status, industry, source, rating);
CREATE INDEX CONCURRENTLY IF NOT EXISTS deals_sharing_check_idx ON deals (id) INCLUDE (owner_id, stage, account_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_sharing_check_idx ON accounts (id) INCLUDE (owner_id, industry, region);
CREATE INDEX CONCURRENTLY IF NOT EXISTS contacts_sharing_check_idx ON contacts (id) INCLUDE (owner_id, lead_source, account_id);
