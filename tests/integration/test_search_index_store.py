"""Loading a published generation is not bounded by the search's statement timeout, which is put back after."""

from __future__ import annotations

import threading

import psycopg2

from crmtasks.search.index_store import read_parts


def test_reading_parts_outlives_the_search_timeout_and_restores_it(migrated_database_url):
    reader = psycopg2.connect(migrated_database_url)
    locker = psycopg2.connect(migrated_database_url)
    release = threading.Timer(0.5, locker.rollback)
    try:
        with locker.cursor() as cur:  # the read waits for this lock ten times longer than the search timeout
            cur.execute("LOCK TABLE search_index_parts IN ACCESS EXCLUSIVE MODE")
        release.start()
        with reader.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 50")
            assert read_parts(cur, -1, "leads") == {}  # no such generation: the read itself is what is tested
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "50ms"
        reader.rollback()
    finally:
        release.join()
        reader.close()
        locker.close()
