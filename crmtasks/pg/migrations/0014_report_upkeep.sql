-- Cheaper upkeep of the report aggregates (issue 14).
--
-- The partial index on report_deal_periods (WHERE won_count > 0) made every
-- fold update of a closed-deal group a non-HOT update: won_count appears in
-- its predicate, so PostgreSQL counts it as an indexed column and writes a
-- new entry in both indexes for each of the thousands of rows a run touches.
-- Revenue reads its rows in key order through the key index instead
-- (filtering the lost-only rows), and most reads are served from the
-- per-generation cache (crmtasks.reports.payloads) anyway. Without it, the
-- run's updates of sums are HOT (the key never changes; fillfactor 80 leaves
-- room on the page).
DROP INDEX IF EXISTS report_deal_periods_won_idx;

-- Only months are stored: a quarter or a year is the sum of its months, summed
-- when a report is read (and shared per refresh generation, see
-- crmtasks/reports/payloads.py). A change then writes two rows (its month for
-- its owner and for all owners) instead of six, and a full rebuild a third
-- fewer. The averages and rates are computed from the summed sums and counts
-- at read time, so their generated columns go too (each cost every update).
DROP TABLE report_deal_periods_quarter, report_deal_periods_year,
    report_lead_periods_quarter, report_lead_periods_year;
ALTER TABLE report_deal_periods
    DROP COLUMN won_average_amount, DROP COLUMN win_rate, DROP COLUMN won_average_days,
    DROP COLUMN lost_average_days, DROP COLUMN closed_average_days;
ALTER TABLE report_lead_periods DROP COLUMN conversion_rate;
ALTER TABLE report_open_pipeline DROP COLUMN average_amount, DROP COLUMN weighted_amount;

-- Report payloads (crmtasks/reports/payloads.py): a report's rows as columns,
-- and its CLI bytes, kept per statement for the refresh generation (as_of)
-- they were read in, so the next call of the same report in that generation,
-- from any host, is one index lookup in the same round trip that reads which
-- generation is published. A cache: UNLOGGED (no WAL; emptied by a crash,
-- then refilled by the next readers), rows of older generations are never
-- served and are deleted by the job after each run. Text (JSON or CSV, fetched as raw
-- bytes: no hex encoding doubling the transfer), stored uncompressed
-- (EXTERNAL): a reader pays no decompression.
CREATE UNLOGGED TABLE report_payloads (
    digest   text NOT NULL,
    kind     text NOT NULL CHECK (kind IN ('columns', 'csv', 'json')),
    as_of    timestamptz NOT NULL,
    data     text NOT NULL,
    PRIMARY KEY (digest, kind)
);
ALTER TABLE report_payloads ALTER COLUMN data SET STORAGE EXTERNAL;
