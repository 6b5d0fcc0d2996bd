-- Whether the database's lower() maps one code point to one (crmtasks.search.text_case):
-- true for a UTF8 server encoding under a libc (or C) default collation, where
-- PostgreSQL lowers each code point with towlower; ICU's lower() depends on context.
-- One row: server_encoding, the default collation's provider ('c' = libc; PostgreSQL
-- before 15 has no such column and is always libc).
SELECT current_setting('server_encoding'),
       (SELECT coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') FROM pg_database AS d
        WHERE d.datname = current_database())
