-- Sharing checks read each record's id, owner, criteria fields and account
-- (crmtasks/sharing/records.py). Covering indexes let PostgreSQL answer them
-- from the index alone, without visiting the table: at 1M leads the table
-- does not fit in shared_buffers, its narrow index does far better. They are
-- built concurrently, from 0016_sharing_check_indexes.concurrent.sql: the
-- tables already hold rows and writers must not wait.
SELECT 1;
