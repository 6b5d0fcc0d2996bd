-- How the database lower-cases text, for crmtasks.search.text_case: whether
-- lower() is one code point to one code point (UTF8 server encoding, libc or
-- C default collation), and every code point lower() changes.
--
-- One row: server_encoding, the default collation's provider ('c' = libc;
-- PostgreSQL before 15 has no column and is libc), the changed code points
-- as {code point: lower-cased text}.
SELECT current_setting('server_encoding'),
       (SELECT coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') FROM pg_database AS d
        WHERE d.datname = current_database()),
       (SELECT coalesce(jsonb_object_agg(cp, lower(chr(cp))), '{}')
        FROM generate_series(1, 1114111) AS cp
        WHERE (cp < 55296 OR cp > 57343) AND lower(chr(cp)) <> chr(cp)
          AND current_setting('server_encoding') = 'UTF8')
